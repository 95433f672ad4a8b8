//! The lake and its sources on S3, against a real S3-compatible server over loopback HTTP
//! ([`crate::s3server`]): ingest from a prefix into an S3 lake, the same answers as a local
//! lake, incremental re-runs that download nothing twice, scheduled queries, and faults
//! (503s, dropped connections) that are retried or leave the lake as it was.

use crate::s3server::{Fault, FaultKind, S3Server};
use crate::util::{TestLake, copy_sample, line, sample_dir};

const SOURCE: &str = "s3://access-logs/test-public-bucket/";

/// A server with the bundled sample uploaded under `access-logs/test-public-bucket/`, and an
/// empty lake bucket.
fn server_with_sample() -> S3Server {
    let s = S3Server::start(&["access-logs", "security-lake"]);
    for e in std::fs::read_dir(sample_dir()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        s.put(
            &format!("access-logs/test-public-bucket/{name}"),
            &std::fs::read(e.path()).unwrap(),
        );
    }
    s
}

fn sample_files() -> usize {
    std::fs::read_dir(sample_dir()).unwrap().count()
}

/// GETs of source objects (downloads), not listings.
fn downloads(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| l.starts_with("GET /access-logs/test-public-bucket/"))
        .collect()
}

/// The same sample ingested into a local lake, for comparing answers; and its summary.
fn local_lake() -> (TestLake, String) {
    let t = TestLake::new();
    copy_sample(&t.path("in"));
    let out = t.ok(&["ingest", "--no-progress", t.path("in").to_str().unwrap()]);
    (t, out)
}

#[test]
fn ingest_from_an_s3_prefix_into_an_s3_lake_answers_as_a_local_lake_does() {
    let s = server_with_sample();
    let t = TestLake::on_s3(&s, "security-lake/prod");
    let out = t.ok(&["ingest", "--no-progress", SOURCE]);
    let n = sample_files();
    assert!(
        line(&out, "files:").starts_with(&format!("files: {n} found, {n} ingested, 0 skipped")),
        "{out}"
    );
    let (local, local_out) = local_lake();
    assert_eq!(line(&out, "lines:"), line(&local_out, "lines:"));
    let sorted = |csv: String| {
        let mut l: Vec<String> = csv.lines().map(String::from).collect();
        l.sort();
        l
    };
    // The seed query orders by a count with ties: compare as sets of rows.
    assert_eq!(
        sorted(t.csv(crate::query::SEED)),
        sorted(local.csv(crate::query::SEED))
    );
    for sql in [
        "SELECT count(*), count(DISTINCT p_row_id), min(p_event_time), max(p_event_time) FROM panther_logs.aws_s3serveraccess",
        "SELECT count(*) FROM panther_quarantine.aws_s3serveraccess",
        "SELECT year, month, day, count(*) FROM panther_logs.aws_s3serveraccess WHERE year=2020 AND month=5 AND day=12 GROUP BY 1,2,3",
    ] {
        assert_eq!(t.csv(sql), local.csv(sql), "{sql}");
    }
    // Plain Parquet under the prefix, partitioned as on disk; nothing left in staging.
    let keys = s.keys("security-lake/prod");
    assert!(
        keys.iter().any(|k| k
            .starts_with("prod/panther_logs/aws_s3serveraccess/year=2020/month=5/day=12/")
            && k.ends_with(".parquet")),
        "{keys:#?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("_seclake/staging/")),
        "{keys:#?}"
    );
    let tables = t.ok(&["tables"]);
    assert!(tables.contains("aws_s3serveraccess"), "{tables}");
}

#[test]
fn re_ingesting_a_prefix_downloads_only_new_objects() {
    let s = server_with_sample();
    let mut t = TestLake::on_s3(&s, "security-lake/prod");
    t.set_env("SECLAKE_LEDGER_COMPACT_AT", "5");
    t.ok(&["ingest", "--no-progress", SOURCE]);
    let first = s.take_log();
    assert_eq!(
        downloads(&first).len(),
        sample_files(),
        "each object fetched once: {first:#?}"
    );

    let out = t.ok(&["ingest", "--no-progress", SOURCE]);
    let n = sample_files();
    assert!(
        line(&out, "files:").starts_with(&format!("files: {n} found, 0 ingested, {n} skipped")),
        "{out}"
    );
    let again = s.take_log();
    assert!(
        downloads(&again).is_empty(),
        "nothing downloaded twice: {again:#?}"
    );

    // The ledger was compacted (SECLAKE_LEDGER_COMPACT_AT=5 below) into one index object.
    let ledger = s.keys("security-lake/prod/_seclake/ledger");
    assert!(
        ledger.iter().any(|k| k.contains("ledger-index/")),
        "{ledger:#?}"
    );
    assert!(
        ledger.iter().filter(|k| k.contains("/ledger/")).count() < 5,
        "{ledger:#?}"
    );

    // A new object, and one overwritten in place (new ETag): only those two are fetched.
    let new_line = crate::schedule::line(23, 0, "203.0.113.50", 403, 900);
    s.put(
        "access-logs/test-public-bucket/2020-05-12-23-00-00-NEW",
        new_line.as_bytes(),
    );
    let rewritten = crate::schedule::line(23, 5, "203.0.113.52", 403, 901);
    s.put(
        "access-logs/test-public-bucket/2020-05-12-10-15-00-0DDCA5E5EXAMPLE",
        rewritten.as_bytes(),
    );
    let out = t.ok(&["ingest", "--no-progress", SOURCE]);
    assert!(line(&out, "files:").contains(" 2 ingested,"), "{out}");
    let third = s.take_log();
    assert_eq!(downloads(&third).len(), 2, "{third:#?}");
    assert_eq!(
        t.csv(
            "SELECT count(*) FROM panther_logs.aws_s3serveraccess WHERE remoteip = '203.0.113.52'"
        ),
        "count(*)\n1\n"
    );
    assert_eq!(
        t.csv(
            "SELECT count(*) FROM panther_logs.aws_s3serveraccess WHERE remoteip = '203.0.113.50'"
        ),
        "count(*)\n1\n"
    );
}

#[test]
fn single_objects_and_key_globs_are_sources_too() {
    let s = server_with_sample();
    let t = TestLake::on_s3(&s, "security-lake");
    let out = t.ok(&[
        "ingest",
        "--no-progress",
        "s3://access-logs/test-public-bucket/2020-05-12-10-15-00-0DDCA5E5EXAMPLE",
    ]);
    assert!(
        line(&out, "files:").starts_with("files: 1 found, 1 ingested"),
        "{out}"
    );
    let out = t.ok(&[
        "ingest",
        "--no-progress",
        "s3://access-logs/test-public-bucket/2020-05-0*",
    ]);
    assert!(
        line(&out, "files:").starts_with("files: 5 found, 5 ingested"),
        "{out}"
    );
    let missing = t.run(&["ingest", "--no-progress", "s3://access-logs/nothing-here/"]);
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("s3://access-logs/nothing-here/: no objects match"),
        "{err}"
    );
}

#[test]
fn scheduled_queries_run_against_an_s3_lake() {
    let s = S3Server::start(&["security-lake"]);
    let (t, q) = crate::schedule::setup_in(TestLake::on_s3(&s, "security-lake/prod"));
    let (code, out) = crate::schedule::at(&t, "2020-05-12T13:10:00Z", &q, &["schedule", "run-due"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("denied-by-ip: ran for 2020-05-12T13:00:00+00:00: 2 rows, 1 over threshold, alerts 1 raised"),
        "{out}"
    );
    assert_eq!(
        t.csv("SELECT detection_id, title FROM panther_views.alerts"),
        "detection_id,title\ndenied-by-ip,denied from 198.51.100.7\n"
    );
}

#[test]
fn transient_faults_are_retried_and_every_line_lands_once() {
    let s = server_with_sample();
    let t = TestLake::on_s3(&s, "security-lake/prod");
    let faults = [
        (
            "GET",
            "/access-logs/test-public-bucket/2020-05-12-10",
            FaultKind::Drop,
            2,
        ),
        (
            "GET",
            "/access-logs/test-public-bucket/2020-05-07",
            FaultKind::SlowDown,
            2,
        ),
        ("GET", "list-type=2", FaultKind::SlowDown, 1),
        (
            "PUT",
            "/security-lake/prod/_seclake/staging/",
            FaultKind::SlowDown,
            2,
        ),
        (
            "PUT",
            "/security-lake/prod/panther_logs/",
            FaultKind::Drop,
            1,
        ),
        (
            "PUT",
            "/security-lake/prod/_seclake/commits/",
            FaultKind::Drop,
            1,
        ),
        (
            "PUT",
            "/security-lake/prod/_seclake/ledger/",
            FaultKind::SlowDown,
            2,
        ),
    ];
    for (method, path, kind, times) in faults {
        s.fault(Fault {
            method,
            path: path.into(),
            kind,
            times,
        });
    }
    let out = t.ok(&["ingest", "--no-progress", SOURCE]);
    let n = sample_files();
    assert!(
        line(&out, "files:").contains(&format!(" {n} ingested,")),
        "{out}"
    );
    assert_eq!(s.faults_left(), 0, "every fault was met");
    let sql = "SELECT count(*), count(DISTINCT p_row_id) FROM panther_logs.aws_s3serveraccess";
    assert_eq!(t.csv(sql), local_lake().0.csv(sql));
    let again = t.ok(&["ingest", "--no-progress", SOURCE]);
    assert!(line(&again, "files:").contains(" 0 ingested,"), "{again}");
}

#[test]
fn a_run_that_keeps_failing_leaves_the_lake_as_it_was_and_names_the_object() {
    let s = server_with_sample();
    let mut t = TestLake::on_s3(&s, "security-lake/prod");
    t.set_env("SECLAKE_S3_RETRIES", "1");
    // An unreadable source: reported by name, the rest ingested.
    s.fault(Fault {
        method: "GET",
        path: "/access-logs/test-public-bucket/2020-05-08".into(),
        kind: FaultKind::SlowDown,
        times: usize::MAX,
    });
    let out = t.run_code(&["ingest", "--no-progress", SOURCE], 2);
    assert!(
        out.contains(
            "failed: s3://access-logs/test-public-bucket/2020-05-08-14-59-59-575954F3D06E9FE0:"
        ),
        "{out}"
    );
    s.heal();
    let before = t.csv("SELECT count(*) FROM panther_logs.aws_s3serveraccess");
    let keys_before = s.keys("security-lake/prod/panther_logs");

    // The commit point itself keeps failing: nothing new becomes visible.
    std::fs::remove_file(
        s.file("access-logs/test-public-bucket/2020-05-12-10-15-00-0DDCA5E5EXAMPLE"),
    )
    .unwrap();
    s.put(
        "access-logs/test-public-bucket/late.log",
        crate::schedule::line(23, 0, "203.0.113.51", 403, 901).as_bytes(),
    );
    s.fault(Fault {
        method: "PUT",
        path: "/security-lake/prod/_seclake/commits/".into(),
        kind: FaultKind::SlowDown,
        times: usize::MAX,
    });
    let failed = t.run(&["ingest", "--no-progress", SOURCE]);
    assert_eq!(failed.status.code(), Some(2));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("_seclake/commits/"),
        "the failing object is named: {err}"
    );
    assert!(!err.contains(crate::s3server::SECRET_KEY), "{err}");
    s.heal();
    assert_eq!(
        t.csv("SELECT count(*) FROM panther_logs.aws_s3serveraccess"),
        before
    );
    assert_eq!(s.keys("security-lake/prod/panther_logs"), keys_before);
    assert!(
        !s.keys("security-lake/prod/_seclake")
            .iter()
            .any(|k| k.contains("staging/")),
        "staged files removed"
    );

    // Healed: the re-run ingests exactly what is missing.
    let out = t.ok(&["ingest", "--no-progress", SOURCE]);
    assert!(line(&out, "files:").contains(" 2 ingested,"), "{out}");
    let sql = "SELECT count(*), count(DISTINCT p_row_id) FROM panther_logs.aws_s3serveraccess WHERE remoteip <> '203.0.113.51'";
    assert_eq!(t.csv(sql), local_lake().0.csv(sql));
}

#[test]
fn a_run_cut_after_its_commit_point_is_rolled_forward_by_the_next() {
    let s = server_with_sample();
    let mut t = TestLake::on_s3(&s, "security-lake/prod");
    t.set_env("SECLAKE_S3_RETRIES", "0");
    // Moving files out of staging (copy, then delete) fails after the commit record is
    // written: the deletes (S3's bulk delete) keep failing.
    s.fault(Fault {
        method: "POST",
        path: "/security-lake?delete".into(),
        kind: FaultKind::SlowDown,
        times: usize::MAX,
    });
    let failed = t.run(&["ingest", "--no-progress", SOURCE]);
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    s.heal();
    let out = t.ok(&["ingest", "--no-progress", SOURCE]);
    assert!(
        out.contains("recovered: 1 interrupted transaction(s) completed"),
        "{out}"
    );
    let sql = "SELECT count(*), count(DISTINCT p_row_id) FROM panther_logs.aws_s3serveraccess";
    assert_eq!(t.csv(sql), local_lake().0.csv(sql));
}

#[test]
fn compaction_on_an_s3_lake_keeps_every_row_and_leaves_fewer_objects() {
    let s = server_with_sample();
    let t = TestLake::on_s3(&s, "security-lake/prod");
    // One transaction per object: several files per day.
    t.ok(&["ingest", "--no-progress", "--txn-bytes", "1", SOURCE]);
    let parquet = |s: &S3Server| {
        s.keys("security-lake/prod")
            .into_iter()
            .filter(|k| k.contains("/panther_logs/") && k.ends_with(".parquet"))
            .count()
    };
    let before_files = parquet(&s);
    let sql = "SELECT p_row_id, p_event_time, requester, key, httpstatus FROM \
               panther_logs.aws_s3serveraccess ORDER BY p_row_id";
    let before = t.csv(sql);
    let out = t.ok(&["compact"]);
    assert!(out.contains("panther_logs.aws_s3serveraccess"), "{out}");
    let after_files = parquet(&s);
    assert!(
        after_files < before_files,
        "{before_files} -> {after_files}"
    );
    assert_eq!(t.csv(sql), before);
    let keys = s.keys("security-lake/prod");
    assert!(
        !keys.iter().any(|k| k.contains("_seclake/staging/")),
        "{keys:#?}"
    );
}

#[test]
fn a_session_lists_only_the_folders_a_query_needs_and_never_twice() {
    let s = server_with_sample();
    let t = TestLake::on_s3(&s, "security-lake/prod");
    t.ok(&["ingest", "--no-progress", "--no-rules", SOURCE]);
    s.take_log();
    let day12 = "SELECT count(*) FROM panther_logs.aws_s3serveraccess WHERE year=2020 AND month=5 AND day=12;\n";
    let seed = format!("{};\n", crate::query::SEED);
    let out = t.run_with_stdin(&["repl"], &format!("{day12}{day12}{seed}{seed}"));
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("| 577 "),
        "{out:?}"
    );
    // Each statement starts by checking the lake's version marker: split the log there.
    let log = s.take_log();
    let mut parts: Vec<Vec<&String>> = vec![vec![]];
    for l in &log {
        if l == "HEAD /security-lake/prod/_seclake/version" {
            parts.push(vec![]);
        } else {
            parts.last_mut().unwrap().push(l);
        }
    }
    let lists = |p: &[&String]| -> Vec<String> {
        p.iter()
            .filter(|l| l.contains("list-type=2"))
            .map(|l| l.to_string())
            .collect()
    };
    assert_eq!(parts.len(), 6, "open + 4 statements: {log:#?}");
    // The day's folder is the only one listed for `year=2020 AND month=5 AND day=12`.
    assert_eq!(
        lists(&parts[2]),
        [
            "GET /security-lake?list-type=2&prefix=prod%2Fpanther_logs%2Faws_s3serveraccess%2Fyear%3D2020%2Fmonth%3D5%2Fday%3D12%2F"
        ],
        "{log:#?}"
    );
    // The same query again: nothing but the version check (listing and footer cached).
    assert!(parts[3].is_empty(), "{log:#?}");
    // The seed query lists the table once; run again, it lists nothing.
    assert_eq!(lists(&parts[4]).len(), 1, "{log:#?}");
    assert!(lists(&parts[5]).is_empty(), "{log:#?}");
}

#[test]
fn crash_at_random_points_on_s3_then_rerun_leaves_every_line_exactly_once() {
    let s = S3Server::start(&["access-logs", "security-lake"]);
    let t = TestLake::on_s3(&s, "security-lake/prod");
    let total = crate::ingest::make_inputs(&t.path("big"), 12, 6000);
    for e in std::fs::read_dir(t.path("big")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        s.put(
            &format!("access-logs/big/{name}"),
            &std::fs::read(e.path()).unwrap(),
        );
    }
    crate::ingest::crash_then_rerun(&t, "s3://access-logs/big/", total, 10);
}

#[test]
fn endpoint_region_and_keys_come_from_an_aws_profile_or_the_flag() {
    let s = server_with_sample();
    let mut t = TestLake::on_s3(&s, "security-lake/prod");
    std::fs::write(
        t.path("config"),
        format!("[default]\nregion = eu-west-1\n\n[profile lab]\nregion = us-east-1\nendpoint_url = {}\n", s.endpoint),
    )
    .unwrap();
    std::fs::write(
        t.path("credentials"),
        format!(
            "[lab]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            crate::s3server::ACCESS_KEY,
            crate::s3server::SECRET_KEY
        ),
    )
    .unwrap();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", ""),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_REGION", ""),
        ("AWS_PROFILE", "lab"),
        ("AWS_CONFIG_FILE", t.path("config").to_str().unwrap()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            t.path("credentials").to_str().unwrap(),
        ),
    ] {
        t.set_env(k, v);
    }
    let out = t.ok(&["ingest", "--no-progress", "--no-rules", SOURCE]);
    assert!(line(&out, "files:").contains(" 0 failed"), "{out}");

    // A wrong secret: refused by the server, and the secret is not printed.
    std::fs::write(
        t.path("credentials"),
        "[lab]\naws_access_key_id = seclake-test-key\naws_secret_access_key = wrong-secret-value\n",
    )
    .unwrap();
    let bad = t.run(&["tables"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!err.contains("wrong-secret-value"), "{err}");
    assert!(
        err.contains("security-lake"),
        "names what it could not reach: {err}"
    );

    // `--s3-endpoint` wins over the environment.
    t.set_env("AWS_PROFILE", "");
    t.set_env("AWS_ACCESS_KEY_ID", crate::s3server::ACCESS_KEY);
    t.set_env("AWS_SECRET_ACCESS_KEY", crate::s3server::SECRET_KEY);
    t.set_env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
    let tables = t.ok(&["--s3-endpoint", &s.endpoint, "tables"]);
    assert!(tables.contains("aws_s3serveraccess"), "{tables}");

    // A profile that does not exist is named.
    t.set_env("AWS_PROFILE", "prod");
    let missing = t.run(&["tables"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("AWS_PROFILE=prod: no such profile"), "{err}");
}
