//! `seclake ingest` through the real binary: sample data, re-ingest, quarantine, failures,
//! crash recovery, and the partition layout the query engine depends on.

use std::io::Write;

use arrow::array::AsArray;
use std::time::Duration;

use crate::util::{
    TestLake, copy_sample, kill_after, line, next_random, read_parquet, rows, sample_dir,
    scalar_i64, sql, walk,
};

/// Non-blank lines of the sample, counted independently of seclake.
fn sample_lines() -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(sample_dir()).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
                &mut s,
            )
            .unwrap();
            s
        } else {
            String::from_utf8(bytes).unwrap()
        };
        n += text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    }
    n
}

#[test]
fn ingests_the_sample_and_counts_add_up() {
    let t = TestLake::new();
    let out = t.ok(&["ingest", sample_dir().to_str().unwrap()]);
    let expected = sample_lines();
    assert_eq!(
        line(&out, "lines:"),
        format!(
            "lines: {expected} read = {} rows written + 2 quarantined",
            expected - 2
        )
    );
    assert_eq!(
        line(&out, "files:"),
        "files: 9 found, 9 ingested, 0 skipped (already ingested), 0 failed"
    );

    // Hive layout with unpadded partition values, nothing staged left behind.
    let files = t.files("panther_logs/aws_s3serveraccess/", ".parquet");
    assert!(
        files
            .iter()
            .any(|f| f.contains("/year=2020/month=5/day=12/")),
        "{files:?}"
    );
    assert!(files.iter().all(|f| !f.contains("month=05")));
    assert!(
        t.files("_seclake/staging", "").is_empty(),
        "{}",
        t.listing()
    );
    // Few files: one per day here, not one per input.
    assert!(files.len() <= 9, "{files:?}");

    let n = scalar_i64(&sql(
        &t.lake(),
        "SELECT count(*) FROM panther_logs.aws_s3serveraccess",
    ));
    assert_eq!(n as u64, expected - 2);
    let q = sql(
        &t.lake(),
        "SELECT line, reason, raw FROM panther_quarantine.aws_s3serveraccess ORDER BY reason",
    );
    assert_eq!(rows(&q), 2);
    let text = arrow::util::pretty::pretty_format_batches(&q)
        .unwrap()
        .to_string();
    assert!(
        text.contains("field httpstatus: invalid number \"OK\""),
        "{text}"
    );
    assert!(
        text.contains("this line is not an S3 access log line"),
        "{text}"
    );

    // The summary says where the quarantined lines are, with a query that finds them.
    let hint = line(&out, "why:");
    let query = hint.split('"').nth(1).expect("a quoted query");
    assert!(
        query.contains("panther_quarantine.aws_s3serveraccess"),
        "{hint}"
    );
    assert_eq!(t.csv(query).lines().count(), 3, "{hint}");

    let tables = t.ok(&["tables"]);
    assert!(tables.contains("aws_s3serveraccess"), "{tables}");
    assert!(tables.contains(&(expected - 2).to_string()), "{tables}");
}

#[test]
fn reingest_is_a_no_op() {
    let t = TestLake::new();
    let src = sample_dir();
    t.ok(&["ingest", src.to_str().unwrap()]);
    let before = t.listing();
    let out = t.ok(&["ingest", src.to_str().unwrap()]);
    assert_eq!(
        line(&out, "files:"),
        "files: 9 found, 0 ingested, 9 skipped (already ingested), 0 failed"
    );
    assert_eq!(
        line(&out, "lines:"),
        "lines: 0 read = 0 rows written + 0 quarantined"
    );
    assert_eq!(t.listing(), before);
}

#[test]
fn seed_query_shape_finds_rows_with_integer_partitions() {
    let t = TestLake::new();
    t.ok(&["ingest", sample_dir().to_str().unwrap()]);
    let seed = "SELECT DISTINCT requester, httpstatus, errorcode, COUNT(*) as err_count FROM \
                panther_logs.aws_s3serveraccess WHERE errorcode IS NOT NULL AND month=5 AND day>=10 AND \
                httpstatus IN (400, 403, 405) GROUP BY requester, httpstatus, errorcode ORDER BY err_count DESC";
    let got = sql(&t.lake(), seed);
    assert!(rows(&got) > 3, "seed query found {} rows", rows(&got));
    let check = "SELECT count(*) FROM panther_logs.aws_s3serveraccess WHERE errorcode IS NOT NULL \
                 AND p_event_time >= TIMESTAMP '2020-05-10 00:00:00' AND httpstatus IN (400, 403, 405)";
    let total: i64 = scalar_i64(&sql(&t.lake(), check));
    let sum = format!("SELECT sum(err_count) FROM ({seed})");
    assert_eq!(scalar_i64(&sql(&t.lake(), &sum)), total);
}

#[test]
fn globs_gzip_and_single_files() {
    let t = TestLake::new();
    let input = t.path("in");
    copy_sample(&input);
    let glob = format!("{}/2020-05-1*", input.display());
    let out = t.ok(&["ingest", &glob]);
    assert!(
        line(&out, "files:").starts_with("files: 4 found, 4 ingested"),
        "{out}"
    );
    let out = t.ok(&[
        "ingest",
        input
            .join("2020-05-05-23-59-59-80F5636AD37F0125")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        line(&out, "files:").starts_with("files: 1 found, 1 ingested"),
        "{out}"
    );
}

#[test]
fn unreadable_and_unrecognised_inputs_fail_by_name_and_the_rest_lands() {
    let t = TestLake::new();
    let input = t.path("in");
    copy_sample(&input);
    // A gzip file cut short, and a file that is not a log.
    let gz = std::fs::read(input.join("2020-05-12-02-59-59-4B75F435EF47C4A7.gz")).unwrap();
    std::fs::write(input.join("broken.gz"), &gz[..gz.len() / 2]).unwrap();
    std::fs::write(input.join("notes.txt"), "hello\nworld\n").unwrap();
    // Bytes that are not text at all (an image, a Parquet file) are named as such.
    let binary: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(input.join("photo.jpg"), &binary).unwrap();
    let out = t.run_code(&["ingest", input.to_str().unwrap()], 2);
    assert!(
        out.contains("files: 12 found, 9 ingested, 0 skipped (already ingested), 3 failed"),
        "{out}"
    );
    // Each failure names its file once, then the reason.
    let failed = |name: &str| {
        out.lines()
            .find(|l| l.starts_with("failed: ") && l.contains(name))
            .unwrap_or_else(|| panic!("no failure for {name}: {out}"))
    };
    assert_eq!(failed("broken.gz").matches("broken.gz").count(), 1, "{out}");
    assert!(
        failed("broken.gz").contains("damaged or cut-short gzip"),
        "{out}"
    );
    assert!(failed("notes.txt").contains("cannot tell the log type (first line starts \"hello\")"));
    assert!(
        failed("photo.jpg").contains("the content is binary, neither text nor gzip"),
        "{out}"
    );
    let n = scalar_i64(&sql(
        &t.lake(),
        "SELECT count(*) FROM panther_logs.aws_s3serveraccess",
    ));
    assert_eq!(n as u64, sample_lines() - 2);
}

#[test]
fn an_empty_folder_is_nothing_to_do_and_says_so() {
    let t = TestLake::new();
    let empty = t.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = t.run(&["ingest", "--no-progress", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing to ingest: no files under") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn an_empty_file_is_ingested_once_and_names_no_table() {
    let t = TestLake::new();
    let dir = t.path("in");
    copy_sample(&dir);
    std::fs::write(dir.join("empty.log"), "").unwrap();
    let out = t.ok(&[
        "ingest",
        "--no-progress",
        "--no-rules",
        dir.to_str().unwrap(),
    ]);
    let found = std::fs::read_dir(sample_dir()).unwrap().count() + 1;
    assert!(
        out.contains(&format!(
            "files: {found} found, {found} ingested, 0 skipped"
        )),
        "{out}"
    );
    // Only the table rows went to: the empty file is recorded, not given a table line.
    let tables: Vec<&str> = out.lines().filter(|l| l.contains(" rows, ")).collect();
    assert_eq!(tables.len(), 1, "{out}");
    assert!(
        tables[0].contains("panther_logs.aws_s3serveraccess"),
        "{out}"
    );
    let again = t.ok(&[
        "ingest",
        "--no-progress",
        "--no-rules",
        dir.to_str().unwrap(),
    ]);
    assert!(
        again.contains(&format!("0 ingested, {found} skipped (already ingested)")),
        "{again}"
    );
}

#[test]
fn missing_input_is_a_clear_error() {
    let t = TestLake::new();
    let out = t.run(&["ingest", "/no/such/file.log"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/no/such/file.log") && err.contains("no such file"),
        "{err}"
    );
}

/// Write `files` inputs of `lines_per_file` lines each, built from the sample's lines with
/// times spread over several days, and return the total line count.
pub fn make_inputs(dir: &std::path::Path, files: usize, lines_per_file: usize) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let base =
        std::fs::read_to_string(sample_dir().join("2020-05-05-23-59-59-80F5636AD37F0125")).unwrap();
    let lines: Vec<&str> = base.lines().collect();
    let mut total = 0;
    for f in 0..files {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("part-{f:03}.log"))).unwrap(),
        );
        for i in 0..lines_per_file {
            let l = lines[(f * 7 + i) % lines.len()];
            let day = 6 + (i % 5);
            let l = with_day(l, day);
            writeln!(w, "{l}").unwrap();
            total += 1;
        }
    }
    total
}

fn with_day(line: &str, day: usize) -> String {
    // Replace the day of month in `[dd/May/2020:` with `day`.
    match line.find("/May/2020:") {
        Some(p) if p >= 2 => format!("{}{:02}{}", &line[..p - 2], day, &line[p..]),
        _ => line.to_string(),
    }
}

#[test]
fn crash_at_random_points_then_rerun_leaves_every_line_exactly_once() {
    let t = TestLake::new();
    let input = t.path("big");
    let total = make_inputs(&input, 12, 6000);
    crash_then_rerun(&t, input.to_str().unwrap(), total, 14);
}

/// Kill `seclake ingest <input>` (12 files of `total` lines) at spread-out moments `rounds`
/// times, checking after each that every visible file reads; then run it to the end and check
/// that every line is in the lake exactly once, with alert state to match. Any lake, any
/// source.
pub fn crash_then_rerun(t: &TestLake, input: &str, total: u64, rounds: u64) {
    let count = |sql: &str| -> i64 { t.csv(sql).lines().nth(1).unwrap().parse().unwrap() };
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut killed = 0;
    for round in 0..rounds {
        let delay = Duration::from_millis(20 + next_random(&mut seed) % (200 + 100 * round));
        let cmd = t.cmd(&["ingest", "--no-progress", "--txn-bytes", "400000", input]);
        if kill_after(cmd, delay) {
            killed += 1;
        }
        // Readers never see a partial file: every visible Parquet file opens.
        if t.lake().join("panther_logs").exists() {
            count("SELECT count(*) FROM panther_logs.aws_s3serveraccess");
        }
    }
    assert!(killed > 3, "only {killed} runs were killed mid-way");
    t.ok(&["ingest", "--no-progress", input]);
    let n = count("SELECT count(*) FROM panther_logs.aws_s3serveraccess");
    let distinct = count("SELECT count(DISTINCT p_row_id) FROM panther_logs.aws_s3serveraccess");
    assert_eq!(
        n as u64,
        total,
        "rows in lake vs lines in input\n{}",
        t.listing()
    );
    assert_eq!(distinct, n, "duplicate rows after crashes");
    assert!(
        t.files("_seclake/staging", "").is_empty(),
        "{}",
        t.listing()
    );
    let again = t.ok(&["ingest", "--no-progress", input]);
    assert!(again.contains("0 ingested, 12 skipped"), "{again}");
    // Alert state commits with the data: after the kills, every stored match is counted in its
    // alert exactly once, and no match is stored twice.
    let counts = t.csv("SELECT (SELECT sum(event_count) FROM panther_views.alerts) AS counted, \
                (SELECT count(*) FROM panther_rule_matches.aws_s3serveraccess) AS matches, \
                (SELECT count(DISTINCT p_row_id || p_rule_id) FROM panther_rule_matches.aws_s3serveraccess) AS distinct_matches");
    let v: Vec<&str> = counts.lines().nth(1).unwrap().split(',').collect();
    assert!(v[1] != "0", "rules ran: {counts}");
    assert_eq!(v[0], v[1], "{counts}");
    assert_eq!(v[1], v[2], "{counts}");
}

/// The lake is plain Hive-partitioned Parquet: DuckDB reads it as is, with integer partition
/// columns, and sees the same rows. Needs python3 with duckdb (`.ci/run` installs it); skipped
/// with a note elsewhere, failed under CI.
#[test]
fn duckdb_reads_the_lake_as_is() {
    let has_duckdb = std::process::Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_duckdb {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have python3 with duckdb"
        );
        eprintln!("skipped: python3 -c 'import duckdb' failed");
        return;
    }
    let t = TestLake::new();
    t.ok(&["ingest", "--no-progress", sample_dir().to_str().unwrap()]);
    let script = format!(
        "import duckdb\nprint(duckdb.connect().execute(\"SELECT count(*), count(DISTINCT p_row_id), \
         sum(CASE WHEN month = 5 AND day >= 10 THEN 1 ELSE 0 END), typeof(any_value(month)), \
         sum(length(hostid)), count(DISTINCT requestid), sum(objectsize), sum(bytessent) \
         FROM read_parquet('{}/panther_logs/aws_s3serveraccess/**/*.parquet', hive_partitioning=true)\").fetchone())",
        t.lake().display()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let n = sample_lines() - 2;
    let recent = scalar_i64(&sql(
        &t.lake(),
        "SELECT count(*) FROM panther_logs.aws_s3serveraccess WHERE month = 5 AND day >= 10",
    ));
    // Id columns are DELTA_LENGTH_BYTE_ARRAY, sizes DELTA_BINARY_PACKED (lake::writer): DuckDB
    // reads their values too.
    let ids = sql(
        &t.lake(),
        "SELECT sum(length(hostid)), count(DISTINCT requestid), sum(objectsize), sum(bytessent) \
         FROM panther_logs.aws_s3serveraccess",
    );
    let v: Vec<i64> = (0..4)
        .map(|i| {
            ids[0]
                .column(i)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0)
        })
        .collect();
    assert_eq!(
        text.trim(),
        format!(
            "({n}, {n}, {recent}, 'BIGINT', {}, {}, {}, {})",
            v[0], v[1], v[2], v[3]
        ),
        "duckdb saw: {text}"
    );
    let file = &t.files("panther_logs/aws_s3serveraccess/", ".parquet")[0];
    let r = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(t.lake().join(file)).unwrap(),
    )
    .unwrap();
    use parquet::file::reader::FileReader;
    let rg = r.metadata().row_group(0);
    let column = |name: &str| {
        rg.columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap()
    };
    let hostid = column("hostid");
    assert!(
        hostid
            .encodings()
            .any(|e| e == parquet::basic::Encoding::DELTA_LENGTH_BYTE_ARRAY),
        "{:?}",
        hostid.encodings().collect::<Vec<_>>()
    );
    let size = column("objectsize");
    assert!(
        size.encodings()
            .any(|e| e == parquet::basic::Encoding::DELTA_BINARY_PACKED),
        "{:?}",
        size.encodings().collect::<Vec<_>>()
    );
    assert_eq!(
        size.compression(),
        parquet::basic::Compression::UNCOMPRESSED
    );
    // `compressed: false` in the schema: stored as it is; other columns zstd.
    for (name, compressed) in [("httpstatus", false), ("errorcode", false), ("key", true)] {
        let c = column(name).compression();
        assert_eq!(
            matches!(c, parquet::basic::Compression::ZSTD(_)),
            compressed,
            "{name}: {c:?}"
        );
    }
}

#[test]
fn many_distinct_values_stay_dictionary_encoded() {
    // 30,000 distinct 90-byte keys: about 2.7 MB of dictionary in one row group, past
    // parquet's default 1 MiB limit, where the writer would switch the rest of the column to
    // plain pages, which queries (reading the column as a dictionary) would have to re-hash.
    let t = TestLake::new();
    let mut log = String::new();
    for i in 0..30_000 {
        let key = format!("uploads/{i:08}/{}", "k".repeat(70));
        log.push_str(&format!(
            "8d116ece1738f7d93d9c172411e20b8f6b0d549b6f03675a1600a35a099950d8 bucket-a \
             [06/May/2020:00:{:02}:{:02} +0000] 192.0.2.1 - ABCD{i:012} REST.GET.OBJECT {key} \
             \"GET /{key} HTTP/1.1\" 200 - 10 10 1 1 \"-\" \"curl/7.68.0\" - hostid SigV4 \
             ECDHE-RSA-AES128-GCM-SHA256 AuthHeader bucket-a.s3.amazonaws.com TLSv1.3 - -\n",
            (i / 60) % 60,
            i % 60
        ));
    }
    let input = t.path("big.log");
    std::fs::write(&input, log).unwrap();
    t.ok(&["ingest", "--no-progress", input.to_str().unwrap()]);
    let files = t.files("panther_logs/aws_s3serveraccess/", ".parquet");
    assert_eq!(files.len(), 1, "{files:?}");
    let r = parquet::file::reader::SerializedFileReader::new_with_options(
        std::fs::File::open(t.lake().join(&files[0])).unwrap(),
        parquet::file::serialized_reader::ReadOptionsBuilder::new()
            .with_encoding_stats_as_mask(false)
            .build(),
    )
    .unwrap();
    use parquet::file::reader::FileReader;
    for rg in r.metadata().row_groups() {
        let key = rg
            .columns()
            .iter()
            .find(|c| c.column_path().string() == "key")
            .unwrap();
        let data_pages: Vec<_> = key
            .page_encoding_stats()
            .expect("page encoding stats")
            .iter()
            .filter(|s| s.page_type != parquet::basic::PageType::DICTIONARY_PAGE)
            .map(|s| s.encoding)
            .collect();
        assert!(!data_pages.is_empty());
        assert!(
            data_pages
                .iter()
                .all(|e| *e == parquet::basic::Encoding::RLE_DICTIONARY),
            "{data_pages:?}"
        );
    }
}

#[test]
fn chunk_size_does_not_change_what_lands() {
    // Input is cut into chunks at line ends, reading into buffers the parsers hand back; lines
    // across a cut, lines longer than a chunk (64 bytes), a last line without a newline and an
    // input that ends exactly at a chunk's end must all land as with the default chunks.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestLake::new();
    let input = t.path("in");
    copy_sample(&input);
    let mut last = std::fs::OpenOptions::new()
        .append(true)
        .open(input.join("2020-05-06-20-59-59-60550194C8C0B243"))
        .unwrap();
    let tail =
        std::fs::read_to_string(sample_dir().join("2020-05-07-17-59-59-B878EC1710AD514D")).unwrap();
    // Another file's first line, without its newline, at the end of this one.
    last.write_all(tail.lines().next().unwrap().as_bytes())
        .unwrap();
    drop(last);
    let exact = input.join("exact.log");
    let line = format!("{}\n", tail.lines().nth(1).unwrap());
    std::fs::write(&exact, line.repeat(4)).unwrap();
    // A file over 1 MiB is read as mapped windows, not packed with small ones: cut at other
    // places, and its last line has no newline either.
    let big = tail.repeat((1 << 20) / tail.len() + 2);
    std::fs::write(input.join("big.log"), big.trim_end()).unwrap();
    let rows = |chunk_bytes: usize| {
        let lake_dir = t.path(&format!("lake-{chunk_bytes}"));
        let lake = seclake::lake::Lake::open(lake_dir.to_str().unwrap()).unwrap();
        let reg = seclake::schema::Registry::builtin().unwrap();
        let opts = seclake::ingest::IngestOptions {
            chunk_bytes,
            progress: false,
            threads: 2,
            ..Default::default()
        };
        rt.block_on(async {
            seclake::ingest::ingest(&lake, &reg, &[input.to_str().unwrap().to_string()], &opts)
                .await
                .unwrap();
            let engine = crate::util::engine(&lake_dir).await;
            let batches = engine
                .sql(
                    "SELECT p_row_id, requestid, key, useragent FROM aws_s3serveraccess \
                     ORDER BY p_row_id",
                )
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let quarantined = engine
                .sql("SELECT count(*) FROM panther_quarantine.aws_s3serveraccess")
                .await
                .map(|df| df.collect());
            let q = match quarantined {
                Ok(f) => scalar_i64(&f.await.unwrap()),
                Err(_) => 0,
            };
            (
                arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap(),
                q,
            )
        })
    };
    let (want, want_q) = rows(4 << 20);
    assert!(want.num_rows() > 1000);
    // `line` is a chunk of 4 lines exactly; 64 bytes is shorter than every line.
    for chunk in [64, line.len() * 4, 4096] {
        let (got, q) = rows(chunk);
        assert_eq!(got, want, "chunk_bytes {chunk}");
        assert_eq!(q, want_q, "chunk_bytes {chunk}");
    }
}

#[test]
fn parser_threads_do_not_change_the_order_rows_land_in() {
    // 3000 requests in the same second, cut into ~250 chunks that two parser threads race
    // through: rows of one time keep the order of the input, on every run.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = TestLake::new();
    let input = t.path("same-second.log");
    let lines: String = (0..3000)
        .map(|i| {
            format!(
                "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be bucket1 \
                 [06/May/2020:00:00:38 +0000] 192.0.2.3 - REQ{i:06} REST.GET.OBJECT k{i} \
                 \"GET /bucket1/k{i} HTTP/1.1\" 200 - 113 113 7 - \"-\" \"S3Console/0.4\" - \
                 s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= \
                 SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader bucket1.s3.us-west-1.amazonaws.com \
                 TLSv1.2 - -\n"
            )
        })
        .collect();
    std::fs::write(&input, lines).unwrap();
    let want: Vec<String> = (0..3000).map(|i| format!("REQ{i:06}")).collect();
    for round in 0..3 {
        let lake_dir = t.path(&format!("lake-{round}"));
        let lake = seclake::lake::Lake::open(lake_dir.to_str().unwrap()).unwrap();
        let reg = seclake::schema::Registry::builtin().unwrap();
        let opts = seclake::ingest::IngestOptions {
            chunk_bytes: 4096,
            progress: false,
            threads: 2,
            ..Default::default()
        };
        rt.block_on(seclake::ingest::ingest(
            &lake,
            &reg,
            &[input.to_str().unwrap().to_string()],
            &opts,
        ))
        .unwrap();
        let day = lake_dir.join("panther_logs/aws_s3serveraccess/year=2020/month=5/day=6");
        let mut files = Vec::new();
        walk(&day, &day, &mut files);
        files.retain(|f| f.ends_with(".parquet"));
        assert_eq!(files.len(), 1, "{files:?}");
        let mut got = Vec::new();
        for b in read_parquet(&day.join(&files[0])) {
            let ids = b.column_by_name("requestid").unwrap().as_string::<i32>();
            got.extend(ids.iter().map(|s| s.unwrap().to_string()));
        }
        assert!(got == want, "round {round}: rows out of input order");
    }
}

/// Small files are parsed in chunks of several files (`read_sources`): each row and each
/// quarantined line must still name its own file and line, and rows of files whose times
/// overlap come out in time order.
#[test]
fn small_files_read_together_keep_their_own_sources_lines_and_time_order() {
    let t = TestLake::new();
    let dir = t.path("in");
    std::fs::create_dir_all(&dir).unwrap();
    let base =
        std::fs::read_to_string(sample_dir().join("2020-05-05-23-59-59-80F5636AD37F0125")).unwrap();
    let lines: Vec<&str> = base.lines().collect();
    // Five files of 100 lines, taken round-robin so their times overlap; file k has a bad
    // line at line k + 2.
    for k in 0..5 {
        let mut text = String::new();
        for (n, l) in lines.iter().skip(k).step_by(5).enumerate() {
            if n == k + 1 {
                text.push_str("not an access log line\n");
            }
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(dir.join(format!("part-{k}")), text).unwrap();
    }
    let out = t.ok(&[
        "ingest",
        "--no-progress",
        "--no-rules",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.contains("lines: 505 read = 500 rows written + 5 quarantined"),
        "{out}"
    );
    let q = t.csv(
        "SELECT p_source_label, line FROM panther_quarantine.aws_s3serveraccess \
         ORDER BY p_source_label",
    );
    let want: String = (0..5)
        .map(|k| format!("{},{}\n", dir.join(format!("part-{k}")).display(), k + 2))
        .collect();
    assert_eq!(q, format!("p_source_label,line\n{want}"));
    let per_file = t.csv(
        "SELECT count(*) AS n, count(DISTINCT p_row_id) AS ids FROM panther_logs.aws_s3serveraccess \
         GROUP BY p_source_label ORDER BY p_source_label",
    );
    assert_eq!(per_file, format!("n,ids\n{}", "100,100\n".repeat(5)));
    for f in t.files("panther_logs/aws_s3serveraccess/", ".parquet") {
        let mut last = i64::MIN;
        for b in read_parquet(&t.lake().join(&f)) {
            let times = b.column_by_name("p_event_time").unwrap();
            let times = times.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
            for &v in times.values() {
                assert!(v >= last, "{f}: rows out of time order");
                last = v;
            }
        }
    }
}

/// A lake whose every ingest folds the ledger into its index (which must keep where files
/// stopped), and the lines of one sample access log, to write logs that grow and rotate.
fn growing_logs() -> (TestLake, Vec<String>) {
    let mut t = TestLake::new();
    t.set_env("SECLAKE_LEDGER_COMPACT_AT", "1");
    let sample =
        std::fs::read_to_string(sample_dir().join("2020-05-06-20-59-59-60550194C8C0B243")).unwrap();
    (t, sample.lines().map(String::from).collect())
}

/// `lines[range]`, each ended by a newline.
fn text_of(lines: &[String], range: std::ops::Range<usize>) -> String {
    lines[range].iter().map(|l| format!("{l}\n")).collect()
}

/// Rows and distinct request ids in the access-log table (equal when no line landed twice).
fn rows_and_ids(t: &TestLake) -> String {
    t.csv("SELECT count(*) AS n, count(DISTINCT requestid) AS ids FROM aws_s3serveraccess")
}

fn append(path: &std::path::Path, s: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

/// A local log that grows between ingests (a server appending to it, a cron job ingesting it)
/// lands each line once: an ingest reads on from the last whole line the one before stored,
/// numbering lines on, as long as the file still starts with what was read; a file replaced by
/// other content is read whole again, and says so.
#[test]
fn an_appended_file_is_ingested_from_where_the_last_ingest_stopped() {
    let (t, lines) = growing_logs();
    let sample = text_of(&lines, 0..lines.len());
    let text = |range| text_of(&lines, range);
    let count = rows_and_ids;

    // A small file, read whole and packed with others.
    let log = t.path("app.log");
    let log_s = log.to_str().unwrap();
    std::fs::write(&log, text(0..100)).unwrap();
    t.ok(&["ingest", "--no-progress", "--no-rules", log_s]);
    append(&log, &text(100..150));
    // A line cut short (a writer mid-line): stored now, then read again once it is whole.
    append(&log, &lines[150][..40]);
    let out = t.ok(&["ingest", "--no-progress", "--no-rules", log_s]);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 51 read = 50 rows written + 1 quarantined"
    );
    assert!(
        out.contains(&format!(
            "note: {}: grew since it was ingested: reading on from line 101",
            log.canonicalize().unwrap().display()
        )),
        "{out}"
    );
    assert_eq!(count(&t), "n,ids\n150,150\n");
    append(&log, &format!("{}\nnot a log line\n", &lines[150][40..]));
    let out = t.ok(&["ingest", "--no-progress", "--no-rules", log_s]);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 2 read = 1 rows written + 1 quarantined"
    );
    assert!(out.contains("reading on from line 151"), "{out}");
    assert_eq!(count(&t), "n,ids\n151,151\n");
    // Quarantined lines keep the file's line numbers: the cut line, and line 152.
    assert_eq!(
        t.csv("SELECT line, length(raw) AS len FROM panther_quarantine.aws_s3serveraccess ORDER BY line, len"),
        "line,len\n151,40\n152,14\n"
    );
    // Nothing new: skipped by identity, as before.
    let out = t.ok(&["ingest", "--no-progress", "--no-rules", log_s]);
    assert_eq!(
        line(&out, "files:"),
        "files: 1 found, 0 ingested, 1 skipped (already ingested), 0 failed"
    );

    // Written again with the same bytes (a new modification time): nothing to read.
    std::thread::sleep(Duration::from_millis(10));
    std::fs::write(&log, std::fs::read(&log).unwrap()).unwrap();
    let out = t.ok(&["ingest", "--no-progress", "--no-rules", log_s]);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 0 read = 0 rows written + 0 quarantined"
    );
    assert!(
        out.contains("touched since it was ingested, not changed: nothing new"),
        "{out}"
    );
    assert_eq!(count(&t), "n,ids\n151,151\n");

    // Replaced by other content, longer than before (rotated, then written to): read whole.
    std::fs::write(&log, text(0..10) + &text(0..160)).unwrap();
    let out = t.ok(&["ingest", "--no-progress", "--no-rules", log_s]);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 170 read = 170 rows written + 0 quarantined"
    );
    assert!(
        out.contains("changed since it was ingested (not by appending): ingested again whole"),
        "{out}"
    );

    // A file over 1 MiB, read in mapped windows, resumed in the middle of one.
    let big = t.path("big.log");
    let big_s = big.to_str().unwrap();
    let reps = (1 << 20) / sample.len() + 2;
    std::fs::write(&big, sample.repeat(reps)).unwrap();
    let total = |t: &TestLake| -> usize {
        let csv = t.csv("SELECT count(*) AS n FROM aws_s3serveraccess");
        csv.lines().nth(1).unwrap().parse().unwrap()
    };
    let before = total(&t);
    t.ok(&["ingest", "--no-progress", "--no-rules", big_s]);
    append(&big, &sample);
    let out = t.ok(&["ingest", "--no-progress", "--no-rules", big_s]);
    let n = lines.len();
    assert_eq!(
        line(&out, "lines:"),
        format!("lines: {n} read = {n} rows written + 0 quarantined")
    );
    assert!(
        out.contains(&format!("reading on from line {}", n * reps + 1)),
        "{out}"
    );
    // The input counted is what was read this time.
    let read = format!("input: {:.1} MiB in ", sample.len() as f64 / 1048576.0);
    assert!(line(&out, "input:").starts_with(&read), "{out}");
    assert_eq!(total(&t) - before, n * (reps + 1));
}

/// A log rotated the way logrotate does it (`app.log` renamed `app.log.1`, later gzipped as
/// `app.log.2.gz`, a new `app.log` begun), with a cron job ingesting the whole folder: every
/// line lands once. A copy is recognised by its first line and the fingerprint of what was
/// stored, and read on from where its original stopped.
#[test]
fn a_rotated_log_is_not_ingested_twice() {
    let (t, lines) = growing_logs();
    let text = |range| text_of(&lines, range);
    let dir = t.path("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let (live, one, two) = (
        dir.join("app.log"),
        dir.join("app.log.1"),
        dir.join("app.log.2.gz"),
    );
    let ingest = |t: &TestLake| {
        t.ok(&[
            "ingest",
            "--no-progress",
            "--no-rules",
            dir.to_str().unwrap(),
        ])
    };
    let count = rows_and_ids;
    let canonical = |p: &std::path::Path| p.canonicalize().unwrap().display().to_string();

    std::fs::write(&live, text(0..100)).unwrap();
    ingest(&t);
    let first = canonical(&live);
    // Written to, rotated, and a new file begun.
    append(&live, &text(100..120));
    std::fs::rename(&live, &one).unwrap();
    std::fs::write(&live, text(200..205)).unwrap();
    let out = ingest(&t);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 25 read = 25 rows written + 0 quarantined"
    );
    assert!(
        out.contains(&format!(
            "note: {}: holds the lines of {first} ingested before: reading on from line 101",
            canonical(&one)
        )),
        "{out}"
    );
    assert!(
        out.contains("changed since it was ingested (not by appending)"),
        "{out}"
    );
    assert_eq!(count(&t), "n,ids\n125,125\n");

    // Rotated again: the old copy gzipped under the next name, the live file renamed.
    append(&live, &text(205..208));
    crate::util::gzip(&two, &std::fs::read_to_string(&one).unwrap());
    std::fs::rename(&live, &one).unwrap();
    std::fs::write(&live, text(300..302)).unwrap();
    let out = ingest(&t);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 5 read = 5 rows written + 0 quarantined"
    );
    assert!(
        out.contains(&format!("note: {}: holds the lines of", canonical(&two))),
        "{out}"
    );
    assert!(out.contains("reading on from line 121"), "{out}");
    assert!(out.contains("reading on from line 6"), "{out}");
    assert_eq!(count(&t), "n,ids\n130,130\n");
    // Nothing new anywhere: nothing read.
    let out = ingest(&t);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 0 read = 0 rows written + 0 quarantined"
    );
}
