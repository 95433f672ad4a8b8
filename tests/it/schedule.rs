//! Scheduled and saved queries through the real binary, with the clock set by `SECLAKE_NOW`:
//! run-due across missed slots, run records, thresholds, alerts once, locks, timeouts.

use crate::util::TestLake;

pub fn line(hh: u32, mm: u32, ip: &str, status: u16, n: u32) -> String {
    format!(
        "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be b1 \
         [12/May/2020:{hh:02}:{mm:02}:00 +0000] {ip} arn:aws:iam::123456789012:user/alice \
         REQ{n:012} REST.GET.OBJECT k/{n} \"GET /b1/k HTTP/1.1\" {status} AccessDenied 10 10 5 4 \
         \"-\" \"aws-cli/2\" - HOSTID{n}= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader \
         b1.s3.amazonaws.com TLSv1.2 - -\n"
    )
}

const DENIED: &str = r#"
QueryName: denied-by-ip
Schedule: {CronExpression: "0 * * * *", TimeoutMinutes: 1}
LookbackMinutes: 60
Query: |
  SELECT remoteip, COUNT(*) AS n FROM panther_logs.aws_s3serveraccess
  WHERE ${partitions} AND p_event_time >= ${window_start} AND p_event_time < ${window_end}
    AND httpstatus = 403
  GROUP BY remoteip ORDER BY remoteip
Threshold: {Condition: n > 2}
Severity: High
Title: concat('denied from ', remoteip)
Dedup: remoteip
DedupPeriodMinutes: 180
"#;

const SLOW: &str = r#"
QueryName: slow
Schedule: {RateMinutes: 60, TimeoutMinutes: 0.02}
Query: SELECT count(*) FROM generate_series(1, 100000000000) a
"#;

fn setup() -> (TestLake, String) {
    setup_in(TestLake::new())
}

/// Ingest the events the `denied-by-ip` query looks at into `t`'s lake and write the query
/// to a folder: the lake and that folder.
pub fn setup_in(t: TestLake) -> (TestLake, String) {
    let dir = t.path("queries");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("denied.yml"), DENIED).unwrap();
    let events: String = (0..4)
        .map(|i| line(12, 10 + i, "198.51.100.7", 403, i))
        .chain((0..2).map(|i| line(12, 20 + i, "198.51.100.8", 403, 10 + i)))
        .chain(std::iter::once(line(12, 30, "198.51.100.9", 200, 20)))
        .collect();
    std::fs::write(t.path("a.log"), events).unwrap();
    t.ok(&[
        "ingest",
        "--no-progress",
        "--no-rules",
        t.path("a.log").to_str().unwrap(),
    ]);
    (t, dir.to_str().unwrap().to_string())
}

pub fn at(t: &TestLake, now: &str, queries: &str, args: &[&str]) -> (Option<i32>, String) {
    run_at(t, now, &[&["--queries", queries][..], args].concat())
}

/// Run `args` with the clock at `now`: exit code and stdout followed by stderr.
fn run_at(t: &TestLake, now: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut c = t.cmd(args);
    c.env("SECLAKE_NOW", now);
    let out = c.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn ours(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("denied-by-ip"))
        .collect()
}

#[test]
fn run_due_runs_missed_slots_once_and_alerts_once() {
    let (t, q) = setup();
    let (code, out) = at(&t, "2020-05-12T10:30:00Z", &q, &["schedule", "run-due"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        ours(&out),
        [
            "denied-by-ip: ran for 2020-05-12T10:00:00+00:00: 0 rows, 0 over threshold, alerts 0 raised, 0 created or updated"
        ]
    );
    let (_, out) = at(&t, "2020-05-12T10:59:00Z", &q, &["schedule", "run-due"]);
    assert!(ours(&out).is_empty(), "not due again: {out}");
    // Down from 11:00 to 13:10: one run, for 13:00 (window 12:00-13:00).
    let (code, out) = at(&t, "2020-05-12T13:10:00Z", &q, &["schedule", "run-due"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        ours(&out),
        [
            "denied-by-ip: ran for 2020-05-12T13:00:00+00:00: 2 rows, 1 over threshold, alerts 1 raised, 1 created or updated"
        ]
    );
    assert_eq!(
        t.files("_seclake/schedule/runs/denied-by-ip/", ".json")
            .len(),
        2
    );
    let (_, out) = at(&t, "2020-05-12T13:20:00Z", &q, &["schedule", "run-due"]);
    assert!(ours(&out).is_empty(), "{out}");
    // Run by hand for the same slot: the alert is updated, not raised again.
    let (_, out) = at(
        &t,
        "2020-05-12T13:20:00Z",
        &q,
        &["schedule", "run", "denied-by-ip"],
    );
    assert!(
        out.contains("alerts 0 raised, 1 created or updated"),
        "{out}"
    );
    let alerts = t.csv("SELECT origin, severity, title, event_count FROM panther_views.alerts WHERE detection_id = 'denied-by-ip'");
    assert_eq!(
        alerts,
        "origin,severity,title,event_count\nscheduled_query,HIGH,denied from 198.51.100.7,2\n"
    );
    // The rows that alerted are kept with the alert id.
    let results = t.files("_seclake/schedule/results/denied-by-ip/", ".parquet");
    assert_eq!(results.len(), 1, "{}", t.listing());
    let f = std::fs::File::open(t.lake().join(&results[0])).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let types: Vec<_> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert!(
        !types.contains(&arrow::datatypes::DataType::Utf8View),
        "plain strings, as in the lake: {types:?}"
    );
    let (_, list) = at(&t, "2020-05-12T13:20:00Z", &q, &["schedule", "list"]);
    assert!(
        list.contains("2020-05-12T13:00:00+00:00") && list.contains("2020-05-12T14:00:00+00:00"),
        "{list}"
    );
}

#[test]
fn a_held_lock_skips_the_query_and_a_dead_holders_lock_does_not_block() {
    let (t, q) = setup();
    let lock = t.lake().join("_seclake/locks/schedule-denied-by-ip.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // Held by a live process (this test).
    std::fs::write(
        &lock,
        format!(
            r#"{{"pid":{},"host":"{}","since":"x"}}"#,
            std::process::id(),
            host.trim()
        ),
    )
    .unwrap();
    let (code, out) = at(&t, "2020-05-12T13:10:00Z", &q, &["schedule", "run-due"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(ours(&out)[0].contains("skipped, already running"), "{out}");
    assert!(
        t.files("_seclake/schedule/runs/denied-by-ip/", "")
            .is_empty()
    );
    // Held by a process that is gone (killed): taken over.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(
        &lock,
        format!(r#"{{"pid":{pid},"host":"{}","since":"x"}}"#, host.trim()),
    )
    .unwrap();
    let (_, out) = at(&t, "2020-05-12T13:10:00Z", &q, &["schedule", "run-due"]);
    assert!(ours(&out)[0].contains("ran for"), "{out}");
    assert!(!lock.exists());
}

#[test]
fn a_timed_out_query_is_cancelled_reported_and_does_not_stop_the_others() {
    let (t, q) = setup();
    std::fs::write(std::path::Path::new(&q).join("slow.yml"), SLOW).unwrap();
    let started = std::time::Instant::now();
    let (code, out) = at(&t, "2020-05-12T13:10:00Z", &q, &["schedule", "run-due"]);
    assert!(started.elapsed().as_secs() < 60, "cancelled at its timeout");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("slow: FAILED for 2020-05-12T13:00:00+00:00: timed out"),
        "{out}"
    );
    assert!(ours(&out)[0].contains("alerts 1 raised"), "{out}");
    // The failure is recorded; the next slot runs as usual.
    let rec = std::fs::read_to_string(
        t.lake()
            .join(&t.files("_seclake/schedule/runs/slow/", ".json")[0]),
    )
    .unwrap();
    assert!(rec.contains("timed out"), "{rec}");
}

#[test]
fn saved_queries_run_by_name_from_query_and_the_repl() {
    let (t, q) = setup();
    let (code, out) = at(
        &t,
        "2020-05-12T13:00:00Z",
        &q,
        &["query", "--saved", "denied-by-ip", "--format", "csv"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, "remoteip,n\n198.51.100.7,4\n198.51.100.8,2\n");
    let (code, out) = at(
        &t,
        "2020-05-12T13:00:00Z",
        &q,
        &["query", "--saved", "nope"],
    );
    assert_eq!(code, Some(2));
    assert!(
        out.contains("no saved query \"nope\"") && out.contains("s3-top-requesters"),
        "{out}"
    );
    let out = t.run_with_stdin(
        &["--queries", &q, "repl"],
        "\\format csv\n\\run s3-top-requesters\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The window ends now (the real clock), long after the 2020 events: a header, no rows.
    assert!(text.contains("requester,requests,errors,buckets"), "{text}");
}

#[test]
fn the_daemon_runs_due_queries_and_stops_cleanly_on_sigterm() {
    let (t, q) = setup();
    let mut c = t.cmd(&["--queries", &q, "schedule", "daemon"]);
    c.env("SECLAKE_NOW", "2020-05-12T13:10:00Z")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id().to_string();
    // Wait for the first round's run record, then ask it to stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while t
        .files("_seclake/schedule/runs/denied-by-ip/", ".json")
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no run: {}",
            t.listing()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("scheduler: stopped"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("denied-by-ip: ran for"));
    assert!(
        t.files("_seclake/locks", "").is_empty(),
        "locks released: {}",
        t.listing()
    );
}

#[test]
fn two_overlapping_run_due_processes_never_run_a_query_twice() {
    let (t, q) = setup();
    let spawn = || {
        let mut c = t.cmd(&["--queries", &q, "schedule", "run-due"]);
        c.env("SECLAKE_NOW", "2020-05-12T13:10:00Z")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let outs = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stdout),
        String::from_utf8_lossy(&b.stdout)
    );
    // Whichever way they interleave: one ran it; the other found it running or already done.
    let ran = ours(&outs).iter().filter(|l| l.contains("ran for")).count();
    assert_eq!(ran, 1, "{outs}");
    assert_eq!(
        t.files("_seclake/schedule/runs/denied-by-ip/", ".json")
            .len(),
        1,
        "{}",
        t.listing()
    );
    let alerts = t.csv("SELECT count(*) AS n, max(version) AS v FROM panther_views.alerts WHERE detection_id = 'denied-by-ip'");
    assert_eq!(alerts, "n,v\n1,1\n");
}

#[test]
fn a_lake_with_nothing_ingested_yet_answers_no_rows_instead_of_failing() {
    // Scheduled queries are often set up before the first ingest: every shipped one must run
    // on an empty lake, and plain queries over a known log type (its events or its quarantined
    // lines, which a clean ingest never writes) answer zero rows.
    let t = TestLake::new();
    let (code, text) = run_at(&t, "2020-05-12T10:30:00Z", &["schedule", "run-due"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
    assert!(text.contains("ran for"), "{text}");
    for table in [
        "panther_logs.aws_s3serveraccess",
        "panther_logs.aws_cloudtrail",
        "panther_views.all_logs",
        "panther_quarantine.aws_s3serveraccess",
        "panther_quarantine.aws_cloudtrail",
    ] {
        let out = t.csv(&format!("SELECT count(*) AS n FROM {table}"));
        assert_eq!(out.lines().nth(1), Some("0"), "{table}: {out}");
    }
}
