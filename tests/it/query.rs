//! `seclake query` and `seclake repl` through the real binary: formats, the seed query,
//! partition and statistics pruning, the all_logs view, security functions, read-only, and
//! freshness of an open session.

use std::sync::Arc;

use crate::util::{TestLake, sample_dir};

pub const SEED: &str = "SELECT DISTINCT requester, httpstatus, errorcode, COUNT(*) as err_count FROM \
    panther_logs.aws_s3serveraccess WHERE errorcode IS NOT NULL AND month=5 AND day>=10 AND \
    httpstatus IN (400, 403, 405) GROUP BY requester, httpstatus, errorcode ORDER BY err_count DESC";

fn sample_lake() -> TestLake {
    let t = TestLake::new();
    t.ok(&["ingest", "--no-progress", sample_dir().to_str().unwrap()]);
    t
}

#[test]
fn every_output_format() {
    let t = sample_lake();
    let q = "SELECT bucket, httpstatus, count(*) AS n, min(p_any_ip_addresses) AS ips \
             FROM aws_s3serveraccess WHERE day = 12 AND bucket LIKE 'backup%' \
             GROUP BY 1, 2 ORDER BY 1, 2";
    for format in ["table", "csv", "tsv", "json", "ndjson"] {
        let out = t.ok(&["query", "--format", format, q]);
        insta::assert_snapshot!(format!("format_{format}"), out);
    }
}

#[test]
fn output_files_by_extension() {
    let t = sample_lake();
    let pq = t.path("out.parquet");
    t.ok(&[
        "query",
        "--output",
        pq.to_str().unwrap(),
        "SELECT bucket, count(*) n FROM aws_s3serveraccess GROUP BY 1",
    ]);
    let f = std::fs::File::open(&pq).unwrap();
    let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
    use parquet::file::reader::FileReader;
    assert!(r.metadata().file_metadata().num_rows() > 5);
    // Strings as plain Utf8 (queries read them as views), like every file in the lake.
    let f = std::fs::File::open(&pq).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let bucket = b
        .schema()
        .field_with_name("bucket")
        .unwrap()
        .data_type()
        .clone();
    assert_eq!(bucket, arrow::datatypes::DataType::Utf8);
    let csv = t.path("out.csv");
    t.ok(&[
        "query",
        "-o",
        csv.to_str().unwrap(),
        "SELECT 1 AS a, 'x' AS b",
    ]);
    assert_eq!(std::fs::read_to_string(csv).unwrap(), "a,b\n1,x\n");
}

#[test]
fn seed_query_runs_verbatim_from_a_file() {
    let t = sample_lake();
    let f = t.path("hunt.sql");
    std::fs::write(&f, format!("{SEED};\n")).unwrap();
    let out = t.ok(&["query", "-f", f.to_str().unwrap(), "--format", "csv"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("requester,httpstatus,errorcode,err_count")
    );
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() > 3, "{out}");
    assert!(
        rows.iter().all(|r| r.contains(",403,AccessDenied,")
            || r.contains(",400,")
            || r.contains(",405,")),
        "{out}"
    );
    // Counts are descending.
    let counts: Vec<i64> = rows
        .iter()
        .map(|r| r.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
}

/// Data files the physical plan of `sql` reads.
fn files_scanned(t: &TestLake, sql: &str) -> Vec<String> {
    let plan = t.ok(&["query", "--format", "csv", &format!("EXPLAIN {sql}")]);
    let mut files: Vec<String> = plan
        .split(|c: char| c == '[' || c == ']' || c == ',' || c.is_whitespace())
        .filter(|w| w.ends_with(".parquet"))
        .map(|w| {
            let i = w.find("year=").expect("partition path");
            w[i..w.rfind('/').unwrap()].to_string()
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

#[test]
fn partition_filters_prune_folders() {
    let t = sample_lake();
    let all = files_scanned(
        &t,
        "SELECT count(*) FROM aws_s3serveraccess WHERE httpstatus > 0",
    );
    assert_eq!(all.len(), 8, "{all:?}");
    // Day 5's one line has no error code: its file's statistics (all NULL) rule it out.
    let errors = files_scanned(
        &t,
        "SELECT count(*) FROM aws_s3serveraccess WHERE errorcode IS NOT NULL",
    );
    let without_day_5: Vec<String> = all
        .iter()
        .filter(|d| !d.ends_with("day=5"))
        .cloned()
        .collect();
    assert_eq!(errors, without_day_5);
    assert_eq!(
        files_scanned(&t, SEED),
        vec![
            "year=2020/month=5/day=10",
            "year=2020/month=5/day=11",
            "year=2020/month=5/day=12"
        ]
    );
    assert_eq!(
        files_scanned(
            &t,
            "SELECT count(*) FROM aws_s3serveraccess WHERE year=2020 AND month=5 AND day=12 \
             AND errorcode IS NOT NULL"
        ),
        vec!["year=2020/month=5/day=12"]
    );
}

#[test]
fn time_ranges_prune_folders_then_row_groups() {
    let t = sample_lake();
    let sql = "SELECT count(*) FROM aws_s3serveraccess WHERE p_event_time >= TIMESTAMP '2020-05-11 06:00:00' \
               AND p_event_time < TIMESTAMP '2020-05-11 07:00:00'";
    // The range implies the folder: only day 11 is listed and opened, then row-group
    // statistics leave 1 row group.
    assert_eq!(files_scanned(&t, sql), vec!["year=2020/month=5/day=11"]);
    let plan = t.ok(&[
        "query",
        "--format",
        "tsv",
        &format!("EXPLAIN ANALYZE {sql}"),
    ]);
    assert!(plan.contains("files_opened=1,"), "{plan}");
    assert!(
        plan.contains("row_groups_pruned_statistics=1 total → 1 matched"),
        "{plan}"
    );
    let count = |sql: &str| -> i64 {
        t.ok(&["query", "--format", "csv", sql])
            .lines()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    let n = count(sql);
    assert!(n > 0);
    // The same rows as a filter the folder pruning cannot see through (inside an aggregate).
    let unpruned = "SELECT count(*) FILTER (WHERE p_event_time >= TIMESTAMP '2020-05-11 06:00:00' \
                    AND p_event_time < TIMESTAMP '2020-05-11 07:00:00') FROM aws_s3serveraccess";
    assert_eq!(n, count(unpruned));

    // Across a day boundary, with the literal on the left and BETWEEN; `< midnight` stops
    // before the next day's folder.
    for (sql, days) in [
        (
            "SELECT count(*) FROM aws_s3serveraccess \
             WHERE p_event_time BETWEEN '2020-05-10 23:00:00' AND '2020-05-12 01:00:00'",
            vec![10, 11, 12],
        ),
        (
            "SELECT count(*) FROM aws_s3serveraccess \
             WHERE TIMESTAMP '2020-05-12 00:00:00' > p_event_time AND p_event_time > '2020-05-10'",
            vec![10, 11],
        ),
        (
            "SELECT p_log_type, count(*) FROM panther_views.all_logs \
             WHERE p_event_time >= '2020-05-11' GROUP BY 1",
            vec![11, 12],
        ),
    ] {
        let want: Vec<String> = days
            .iter()
            .map(|d| format!("year=2020/month=5/day={d}"))
            .collect();
        assert_eq!(files_scanned(&t, sql), want, "{sql}");
    }
}

#[test]
fn strings_are_read_as_dictionaries_or_views_of_their_pages() {
    // Columns written with a dictionary are read as Arrow dictionaries, other strings as views,
    // so no value is copied out of its page one by one; what a query returns is unchanged.
    let t = sample_lake();
    let out = t.csv(
        "SELECT arrow_typeof(bucket) AS b, arrow_typeof(requestid) AS id, \
         arrow_typeof(p_any_ip_addresses) AS ips FROM aws_s3serveraccess LIMIT 1",
    );
    assert!(out.contains("Dictionary(Int32, Utf8)"), "{out}");
    assert!(out.contains("Utf8View"), "{out}");
    let n = t.csv("SELECT count(*) FROM aws_s3serveraccess WHERE bucket LIKE 'backup%'");
    assert_ne!(n.lines().nth(1), Some("0"), "{n}");
    // Filters, groups and distinct counts over the dictionaries answer as over plain strings.
    for (dict, plain) in [
        (
            "SELECT count(*) FROM aws_s3serveraccess WHERE key LIKE '%a%' OR operation NOT LIKE 'REST.GET%'",
            "SELECT count(*) FROM aws_s3serveraccess WHERE arrow_cast(key, 'Utf8') LIKE '%a%' \
             OR arrow_cast(operation, 'Utf8') NOT LIKE 'REST.GET%'",
        ),
        (
            "SELECT operation, bucket, count(*), count(DISTINCT requester) FROM aws_s3serveraccess \
             GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT arrow_cast(operation, 'Utf8') AS operation, arrow_cast(bucket, 'Utf8') AS bucket, \
             count(*), count(DISTINCT arrow_cast(requester, 'Utf8')) FROM aws_s3serveraccess \
             GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "SELECT count(*) FROM aws_s3serveraccess WHERE errorcode = 'AccessDenied' AND tlsversion IS NULL",
            "SELECT count(*) FROM aws_s3serveraccess \
             WHERE arrow_cast(errorcode, 'Utf8') = 'AccessDenied' AND arrow_cast(tlsversion, 'Utf8') IS NULL",
        ),
    ] {
        let (a, b) = (t.csv(dict), t.csv(plain));
        assert!(a.lines().count() > 1, "{dict}: {a}");
        // The header names the columns as written; compare the rows.
        assert_eq!(
            a.lines().skip(1).collect::<Vec<_>>(),
            b.lines().skip(1).collect::<Vec<_>>(),
            "{dict}"
        );
    }
}

#[test]
fn all_logs_view_searches_indicators() {
    let t = sample_lake();
    let out = t.csv(
        "SELECT p_log_type, count(*) AS n FROM panther_views.all_logs \
         WHERE array_has(p_any_aws_account_ids, '111122223333') GROUP BY 1",
    );
    assert_eq!(out, "p_log_type,n\nAWS.S3ServerAccess,3\n");
}

#[test]
fn security_functions() {
    let t = sample_lake();
    let q = |sql: &str| t.csv(sql);
    assert_eq!(
        q(
            "SELECT glob_match('panther-bootstrap-x', 'panther-bootstrap-*') a, glob_match(NULL, '*') b, \
           cidr_contains('10.0.0.0/8', '10.2.3.4') c, cidr_contains('2001:db8::/32', '2001:db8:85a3::1') d, \
           cidr_contains('10.0.0.0/8', 'not-an-ip') e, is_private_ip('192.168.0.1') f, is_public_ip('8.8.8.8') g, \
           arn_account('arn:aws:iam::111122223333:user/alice') h, arn_service('arn:aws:s3:::b') i, arn_region('arn:aws:s3:::b') j"
        ),
        "a,b,c,d,e,f,g,h,i,j\ntrue,,true,true,,true,true,111122223333,s3,\n"
    );
    // Over columns (arrays), including IPv6 addresses and NULL requesters.
    assert_eq!(
        q(
            "SELECT remoteip, cidr_contains('2001:db8::/32', remoteip) v6, arn_account(requester) acct \
           FROM aws_s3serveraccess WHERE requestid IN ('A1B2C3D4E5F60718', '7D1C9E2F4A6B8C0E') ORDER BY requestid"
        ),
        "remoteip,v6,acct\n203.0.113.9,false,\n2001:db8:85a3::8a2e:370:7334,true,111122223333\n"
    );
    assert_eq!(
        q("SELECT count(*) FROM aws_s3serveraccess WHERE glob_match(bucket, 'app-*') AND NOT glob_match(bucket, 'app-?-*')")
            .lines()
            .nth(1)
            .map(|n| n.parse::<i64>().unwrap() > 0),
        Some(true)
    );
    assert_eq!(
        q("SELECT json_get_str('{\"bucketName\": \"b1\"}', 'bucketName') AS b"),
        "b\nb1\n"
    );
    for (bad, needle) in [
        (
            "SELECT glob_match(bucket, '[z-a]') FROM aws_s3serveraccess",
            "glob_match: invalid pattern \"[z-a]\"",
        ),
        (
            "SELECT cidr_contains('10.0.0.0/33', remoteip) FROM aws_s3serveraccess",
            "cidr_contains: invalid CIDR \"10.0.0.0/33\"",
        ),
    ] {
        let out = t.run(&["query", bad]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.contains("planning"), "{err}");
    }
}

#[test]
fn read_only_refuses_writes() {
    let t = sample_lake();
    let target = t.path("leak.csv");
    for sql in [
        format!("COPY (SELECT 1) TO '{}'", target.display()),
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/'".to_string(),
        "CREATE TABLE y AS SELECT 1".to_string(),
    ] {
        let out = t.run(&["query", "--read-only", &sql]);
        assert_eq!(out.status.code(), Some(2), "{sql}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only session"), "{err}");
    }
    assert!(!target.exists());
    t.ok(&[
        "query",
        "--read-only",
        "SELECT count(*) FROM aws_s3serveraccess",
    ]);
}

#[test]
fn errors_exit_2_and_closed_pipes_do_not() {
    let t = sample_lake();
    let out = t.run(&["query", "SELEC 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SELEC"));
    let out = t.run(&["query", "SELECT * FROM no_such_table"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_table"));
    // `| head -1`: the reader goes away early.
    let mut child = t
        .cmd(&[
            "query",
            "--format",
            "csv",
            "SELECT * FROM aws_s3serveraccess",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn long_table_cells_are_cut_when_asked_and_whole_otherwise() {
    let t = sample_lake();
    let q = "SELECT requesturi, length(requesturi) AS len FROM aws_s3serveraccess \
             WHERE length(requesturi) > 40 ORDER BY p_row_id LIMIT 1";
    // Not a terminal: whole, as in files and pipes.
    let whole = t.ok(&["query", q]);
    let csv = t.csv(q);
    let uri = csv.lines().nth(1).unwrap().rsplit_once(',').unwrap().0;
    assert!(whole.contains(uri), "{whole}");
    let cut = t.ok(&["query", "--max-width", "20", q]);
    let shown = format!("| {}… |", uri.chars().take(19).collect::<String>());
    assert!(cut.contains(&shown) && !cut.contains(uri), "{cut}");
    // The REPL the same way, set by \maxwidth (or DuckDB's .maxwidth).
    let out = t.run_with_stdin(&["repl"], &format!("{q};\n.maxwidth 20\n{q};\n"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cell width limit: 20"), "{text}");
    assert_eq!(text.matches(uri).count(), 1, "{text}");
    assert!(text.contains(&shown), "{text}");
}

#[test]
fn a_lake_that_does_not_exist_is_an_error_not_an_empty_answer() {
    // A mistyped --lake must not answer "0 rows" (and leave an empty folder behind).
    let t = TestLake::new();
    for args in [
        &["query", "SELECT count(*) FROM aws_s3serveraccess"][..],
        &["tables"],
        &["alerts"],
        &["detect", "--since", "2020-05-01"],
    ] {
        let out = t.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "no lake at {}: nothing was ingested there",
                t.lake().display()
            )),
            "{err}"
        );
        assert!(!t.lake().exists(), "{args:?} created the lake");
    }
    // Cron jobs that may run before the first ingest, and commands that need no data, still
    // run there.
    t.ok(&["alerts", "--deliver"]);
    t.ok(&["compact"]);
    t.ok(&["rules", "list"]);
    t.ok(&["ingest", "--no-progress", sample_dir().to_str().unwrap()]);
    assert_eq!(
        t.csv("SELECT count(*) > 0 AS some FROM aws_s3serveraccess"),
        "some\ntrue\n"
    );
}

#[test]
fn repl_script_from_stdin() {
    let t = sample_lake();
    let script = "\\format csv\nSELECT count(*) AS n\n  FROM aws_s3serveraccess\n  WHERE day = 12;\nSELEC oops;\n.tables\n\\maxrows 2\nSELECT bucket FROM aws_s3serveraccess ORDER BY p_row_id;\n\\q\nSELECT 'never';\n";
    let out = t.run_with_stdin(&["repl"], script);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("format set to csv"), "{text}");
    assert!(text.contains("n\n5"), "count of day 12 rows:\n{text}");
    assert!(text.contains("1 row in "), "{text}");
    assert!(text.contains("error: syntax error"), "{text}");
    assert!(
        text.contains("panther_logs,aws_s3serveraccess,BASE TABLE"),
        "{text}"
    );
    assert!(text.contains("(showing the first 2;"), "{text}");
    assert!(!text.contains("never"), "{text}");
}

#[test]
fn open_session_sees_data_ingested_by_another_process() {
    let t = TestLake::new();
    let input = t.path("in");
    crate::util::copy_sample(&input);
    let first = input.join("2020-05-05-23-59-59-80F5636AD37F0125");
    t.ok(&["ingest", "--no-progress", first.to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = crate::util::engine(&t.lake()).await;
        let count = || async {
            engine.refresh().await.unwrap();
            let b = engine
                .sql("SELECT count(*) FROM aws_s3serveraccess")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            crate::util::scalar_i64(&b)
        };
        let before = count().await;
        t.ok(&["ingest", "--no-progress", input.to_str().unwrap()]);
        let after = count().await;
        assert!(after > before, "{before} -> {after}");
        // Quarantine appeared as a new table too.
        engine.refresh().await.unwrap();
        engine
            .sql("SELECT count(*) FROM panther_quarantine.aws_s3serveraccess")
            .await
            .unwrap();
    });
}

#[test]
fn like_in_filters_answers_as_the_kernel_does() {
    // Filters run LIKE through the memo (engine::like); aggregate FILTER clauses through
    // Arrow's kernel directly. Both must count the same rows.
    let t = sample_lake();
    for cond in [
        "key LIKE '%a%'",
        "key NOT LIKE '%.html'",
        "useragent ILIKE '%AWS-CLI%'",
        "operation LIKE 'REST.%.OBJECT'",
        "requester LIKE 'arn:aws:sts::_%:assumed-role/%'",
    ] {
        let sql = format!(
            "SELECT (SELECT count(*) FROM aws_s3serveraccess WHERE {cond}) AS filtered, \
             count(*) FILTER (WHERE {cond}) AS kernel FROM aws_s3serveraccess"
        );
        let out = t.csv(&sql);
        let row = out.lines().nth(1).unwrap();
        let (a, b) = row.split_once(',').unwrap();
        assert_eq!(a, b, "{cond}: {out}");
        assert_ne!(a, "0", "{cond} matches something in the sample");
    }
}

#[test]
fn distinct_counts_per_group_agree_with_distinct_rows() {
    // Two COUNT(DISTINCT) of strings by group run through engine::count_distinct; counting
    // the rows of SELECT DISTINCT does not. Short (inlined) and long values, NULLs, a FILTER.
    let t = sample_lake();
    let ours = t.csv(
        "SELECT bucket, count(DISTINCT requester) AS r, count(DISTINCT remoteip) AS i, \
         count(DISTINCT key) FILTER (WHERE httpstatus = 200) AS k \
         FROM aws_s3serveraccess GROUP BY bucket ORDER BY bucket",
    );
    let rows = t.csv(
        "SELECT b.bucket, \
         (SELECT count(*) FROM (SELECT DISTINCT requester FROM aws_s3serveraccess x \
           WHERE x.bucket = b.bucket AND requester IS NOT NULL)) AS r, \
         (SELECT count(*) FROM (SELECT DISTINCT remoteip FROM aws_s3serveraccess x \
           WHERE x.bucket = b.bucket AND remoteip IS NOT NULL)) AS i, \
         (SELECT count(*) FROM (SELECT DISTINCT key FROM aws_s3serveraccess x \
           WHERE x.bucket = b.bucket AND key IS NOT NULL AND httpstatus = 200)) AS k \
         FROM (SELECT DISTINCT bucket FROM aws_s3serveraccess) b ORDER BY b.bucket",
    );
    assert_eq!(ours, rows);
    assert!(ours.lines().count() > 2, "{ours}");
}

#[test]
fn panther_time_macros_run_and_prune() {
    let t = sample_lake();
    let count = |sql: &str| -> i64 { t.csv(sql).lines().nth(1).unwrap().parse().unwrap() };
    let hour = "SELECT count(*) FROM aws_s3serveraccess WHERE p_event_time >= TIMESTAMP '2020-05-11 06:00:00' \
                AND p_event_time <= TIMESTAMP '2020-05-11 07:00:00'";
    let between = "SELECT count(*) FROM aws_s3serveraccess \
                   WHERE p_occurs_between('2020-05-11 06:00:00', '2020-05-11 07:00:00')";
    let around = "SELECT count(*) FROM aws_s3serveraccess l \
                  WHERE p_occurs_around('2020-05-11 06:30:00', '30 m', l)";
    assert!(count(hour) > 0);
    assert_eq!(count(between), count(hour));
    assert_eq!(count(around), count(hour));
    assert_eq!(files_scanned(&t, between), vec!["year=2020/month=5/day=11"]);
    // Since far enough back: everything.
    assert_eq!(
        count("SELECT count(*) FROM aws_s3serveraccess WHERE p_occurs_since('100000 days')"),
        count("SELECT count(*) FROM aws_s3serveraccess")
    );
    let out = t.run(&[
        "query",
        "SELECT count(*) FROM aws_s3serveraccess WHERE p_occurs_since('1 fortnight')",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("p_occurs_since: cannot read '1 fortnight'"),
        "{err}"
    );
}

#[test]
fn datafusion_options_come_from_the_environment() {
    let mut t = sample_lake();
    t.set_env("DATAFUSION_EXECUTION_TARGET_PARTITIONS", "3");
    let out = t.csv(
        "SELECT value FROM information_schema.df_settings \
         WHERE name = 'datafusion.execution.target_partitions'",
    );
    assert_eq!(out.lines().nth(1), Some("3"), "{out}");
    // seclake's own settings win over the environment.
    t.set_env("DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS", "true");
    let out = t.csv(
        "SELECT value FROM information_schema.df_settings \
         WHERE name = 'datafusion.execution.parquet.pushdown_filters'",
    );
    assert_eq!(out.lines().nth(1), Some("false"), "{out}");
}

#[test]
fn files_are_pruned_by_statistics_at_planning_then_scanned_without_them() {
    use datafusion::datasource::physical_plan::ParquetSource;
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::physical_plan::ExecutionPlan;

    // Files of every scan in `plan` that carry column statistics, and files in all.
    fn files_with_statistics(plan: &Arc<dyn ExecutionPlan>) -> (usize, usize) {
        let mut counts = (0, 0);
        if let Some(ds) = plan.downcast_ref::<DataSourceExec>()
            && let Some((config, _)) = ds.downcast_to_file_source::<ParquetSource>()
        {
            for f in config.file_groups.iter().flat_map(|g| g.iter()) {
                counts.0 += usize::from(f.statistics.is_some());
                counts.1 += 1;
            }
        }
        for child in plan.children() {
            let (s, n) = files_with_statistics(child);
            counts = (counts.0 + s, counts.1 + n);
        }
        counts
    }

    let t = sample_lake();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = crate::util::engine(&t.lake()).await;
        let plan = |sql: &'static str| {
            let engine = &engine;
            async move {
                let df = engine.sql(sql).await.unwrap();
                let plan = df.clone().create_physical_plan().await.unwrap();
                let rows = crate::util::rows(&df.collect().await.unwrap());
                (files_with_statistics(&plan), rows)
            }
        };
        // A static predicate: planning prunes by the statistics, the files go without them.
        let ((with, all), rows) = plan(SEED).await;
        assert_eq!(all, 3, "one file a day, days 10-12");
        assert!(rows > 0);
        assert_eq!(with, 0, "{with} of {all} files keep statistics");
        // A request id below every file's smallest: no file is scanned, the answer is empty.
        let ((_, all), rows) =
            plan("SELECT requestid FROM aws_s3serveraccess WHERE requestid = '0'").await;
        assert_eq!((all, rows), (0, 0));
        // One that exists is found in the one file whose range holds it.
        let ((with, all), rows) =
            plan("SELECT requestid FROM aws_s3serveraccess WHERE requestid = 'ADD2FFEA715C45D2'")
                .await;
        assert_eq!((with, rows), (0, 1));
        assert!((1..8).contains(&all), "{all} files scanned");
        let count = plan(
            "SELECT count(*) FROM aws_s3serveraccess WHERE requestid = '0' AND httpstatus = 200",
        )
        .await;
        assert_eq!(count, ((0, 0), 1));
        // The newest events: TopK's dynamic filter may prune files as it narrows, by them.
        let ((with, all), rows) = plan(
            "SELECT p_event_time FROM aws_s3serveraccess WHERE httpstatus = 200 \
             ORDER BY p_event_time DESC LIMIT 3",
        )
        .await;
        assert_eq!(rows, 3);
        assert!(
            all > 0 && with == all,
            "{with} of {all} files keep statistics"
        );
    });
}

#[test]
fn unknown_tables_and_columns_name_what_the_lake_has() {
    let t = sample_lake();
    let err = |sql: &str| {
        let out = t.run(&["query", sql]);
        assert_eq!(out.status.code(), Some(2), "{sql}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err("SELECT * FROM panther_logs.aws_s3serveracess");
    assert!(
        e.contains("table panther_logs.aws_s3serveracess not found")
            && e.contains("panther_logs has aws_cloudtrail, aws_s3serveraccess"),
        "{e}"
    );
    let e = err("SELECT * FROM panther.aws_s3serveraccess");
    assert!(
        e.contains("no database \"panther\"") && e.contains("panther_logs, panther_quarantine"),
        "{e}"
    );
    // One table: its columns by name, not each prefixed with the table's full name.
    let e = err("SELECT requestr FROM panther_logs.aws_s3serveraccess");
    assert!(
        e.contains("Did you mean 'requester'?") && e.contains("are bucketowner, bucket, time"),
        "{e}"
    );
    assert!(!e.contains("aws_s3serveraccess.bucket"), "{e}");
}
