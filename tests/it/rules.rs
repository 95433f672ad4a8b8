//! Detection through the real binary: rules on ingest, thresholds and dedup windows, alert
//! storage, webhook delivery (including a failing destination), replay, invalid rule files.

use std::sync::atomic::Ordering;

use crate::util::{HookServer, TestLake, rules_per_file, sample_dir};

/// An access-log line at `May 12 2020, hh:mm` UTC.
fn line(hh: u32, mm: u32, bucket: &str, op: &str, status: u16, n: u32) -> String {
    format!(
        "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be {bucket} \
         [12/May/2020:{hh:02}:{mm:02}:00 +0000] 10.1.2.3 arn:aws:iam::123456789012:user/alice \
         REQ{n:012} {op} k/{n} \"GET /{bucket}/k HTTP/1.1\" {status} - 10 10 5 4 \"-\" \
         \"aws-cli/2\" - HOSTID{n}= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader \
         {bucket}.s3.amazonaws.com TLSv1.2 - -\n"
    )
}

const FORBIDDEN_RULE: &str = r#"
RuleID: Test.Forbidden
LogTypes: [AWS.S3ServerAccess]
Severity: High
Threshold: 3
DedupPeriodMinutes: 10
Condition: httpstatus = 403
Title: concat('403 on ', bucket)
AlertContext: [bucket, httpstatus]
Tags: [test]
Tests:
  - Name: hit
    ExpectedResult: true
    Log: {httpstatus: 403, bucket: b}
"#;

fn setup_rules(t: &TestLake) -> String {
    let dir = t.path("rules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("forbidden.yml"), FORBIDDEN_RULE).unwrap();
    dir.to_str().unwrap().to_string()
}

fn write(t: &TestLake, name: &str, lines: &[String]) -> String {
    let p = t.path(name);
    std::fs::write(&p, lines.concat()).unwrap();
    p.to_str().unwrap().to_string()
}

fn csv(t: &TestLake, rules: &str, sql: &str) -> String {
    t.ok(&["--rules", rules, "query", "--format", "csv", sql])
}

#[test]
fn threshold_and_dedup_windows_raise_each_alert_once() {
    let t = TestLake::new();
    let rules = setup_rules(&t);
    // Window [10:00, 10:10): two events; window [10:10, 10:20): one.
    let a = write(
        &t,
        "a.log",
        &[
            line(10, 0, "b1", "REST.GET.OBJECT", 403, 1),
            line(10, 5, "b1", "REST.GET.OBJECT", 403, 2),
            line(10, 12, "b1", "REST.GET.OBJECT", 403, 3),
            line(10, 6, "b1", "REST.GET.OBJECT", 200, 4),
        ],
    );
    let out = t.ok(&["--rules", &rules, "ingest", "--no-progress", &a]);
    assert!(out.contains("detections:"), "{out}");
    let raised = |t: &TestLake| {
        csv(
            t,
            &rules,
            "SELECT event_count, raised FROM panther_views.alerts \
             WHERE detection_id = 'Test.Forbidden' ORDER BY window_start",
        )
    };
    assert_eq!(raised(&t), "event_count,raised\n2,false\n1,false\n");
    let listed = t.ok(&[
        "--rules",
        &rules,
        "alerts",
        "--rule",
        "Test.Forbidden",
        "--format",
        "csv",
    ]);
    assert_eq!(
        listed.lines().count(),
        1,
        "below threshold: not listed\n{listed}"
    );

    // A later file adds the third event of the first window: raised now, and only now.
    let b = write(&t, "b.log", &[line(10, 7, "b1", "REST.GET.OBJECT", 403, 5)]);
    t.ok(&["--rules", &rules, "ingest", "--no-progress", &b]);
    assert_eq!(raised(&t), "event_count,raised\n3,true\n1,false\n");
    let raised_at = |t: &TestLake| {
        csv(
            t,
            &rules,
            "SELECT raised_at, version FROM panther_views.alerts \
             WHERE detection_id = 'Test.Forbidden' AND raised",
        )
    };
    let before = raised_at(&t);
    let c = write(&t, "c.log", &[line(10, 8, "b1", "REST.GET.OBJECT", 403, 6)]);
    t.ok(&["--rules", &rules, "ingest", "--no-progress", &c]);
    assert_eq!(raised(&t), "event_count,raised\n4,true\n1,false\n");
    let after = raised_at(&t);
    assert_eq!(
        before.lines().nth(1).unwrap().split(',').next(),
        after.lines().nth(1).unwrap().split(',').next(),
        "raised once: {before} vs {after}"
    );
    assert!(
        before.ends_with(",2\n") && after.ends_with(",3\n"),
        "{before} {after}"
    );

    // Re-ingesting everything changes nothing.
    let dir = t.path("all");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["a.log", "b.log", "c.log"] {
        std::fs::rename(t.path(f), dir.join(f)).unwrap();
    }
    let out = t.ok(&[
        "--rules",
        &rules,
        "ingest",
        "--no-progress",
        dir.to_str().unwrap(),
    ]);
    // Moved files are new sources (new paths), recognised as the files ingested before (first
    // line and fingerprint): nothing of them is read again, no event counts twice.
    assert!(out.contains("3 ingested"), "{out}");
    assert!(
        out.contains("lines: 0 read") && out.contains("holds the lines of"),
        "{out}"
    );
    assert!(!out.contains("detections:"), "{out}");
    // A plain re-run of the same paths is skipped entirely:
    let again = t.ok(&[
        "--rules",
        &rules,
        "ingest",
        "--no-progress",
        dir.to_str().unwrap(),
    ]);
    assert!(again.contains("0 ingested, 3 skipped"), "{again}");
    assert!(!again.contains("detections:"), "{again}");

    // Matches carry the rule and alert columns; one alert id per window.
    let m = csv(
        &t,
        &rules,
        "SELECT count(*) AS n, count(DISTINCT p_alert_id) AS alerts, min(p_rule_severity) AS sev, \
         min(array_to_string(p_rule_tags, ',')) AS tags, min(p_alert_context) AS ctx \
         FROM panther_rule_matches.aws_s3serveraccess WHERE p_rule_id = 'Test.Forbidden'",
    );
    assert_eq!(
        m,
        "n,alerts,sev,tags,ctx\n5,2,HIGH,test,\"{\"\"bucket\"\":\"\"b1\"\",\"\"httpstatus\"\":403}\"\n"
    );
}

#[test]
fn webhook_failures_stay_pending_and_are_retried_without_leaking_the_url() {
    let t = TestLake::new();
    let rules = setup_rules(&t);
    let hook = HookServer::start("/hook/SECRET-TOKEN-123");
    hook.status.store(503, Ordering::SeqCst);
    std::fs::create_dir_all(t.lake()).unwrap();
    std::fs::write(
        t.lake().join("seclake.yml"),
        format!(
            "destinations:\n  - name: soc\n    type: webhook\n    url: {}\n    retries: 1\n    timeout_secs: 5\n  - name: archive\n    type: file\n    path: {}\n",
            hook.url,
            t.path("alerts.jsonl").display()
        ),
    )
    .unwrap();
    let events: Vec<String> = (0..3)
        .map(|i| line(11, i, "secret-bucket", "REST.GET.OBJECT", 403, i))
        .collect();
    let a = write(&t, "a.log", &events);
    let out = t.run(&["--rules", &rules, "ingest", "--no-progress", &a]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("HTTP 503"), "{text}");
    assert!(!text.contains("SECRET-TOKEN"), "secret leaked:\n{text}");
    assert!(text.contains("pending"), "{text}");
    assert_eq!(
        hook.bodies.lock().unwrap().len(),
        2,
        "first try plus one retry"
    );
    // The file destination got it; only the webhook is pending.
    let archived = std::fs::read_to_string(t.path("alerts.jsonl")).unwrap();
    assert!(
        archived.contains("\"detection_id\":\"Test.Forbidden\""),
        "{archived}"
    );
    assert_eq!(
        t.files("_seclake/outbox", ".json").len(),
        1,
        "{}",
        t.listing()
    );
    let item =
        std::fs::read_to_string(t.lake().join(&t.files("_seclake/outbox", ".json")[0])).unwrap();
    assert!(
        item.contains("\"soc\"") && !item.contains("\"archive\""),
        "{item}"
    );

    // The destination recovers: the next run delivers, once.
    hook.status.store(200, Ordering::SeqCst);
    let out = t.ok(&["--rules", &rules, "alerts", "--deliver", "--format", "csv"]);
    assert!(out.contains("403 on secret-bucket"), "{out}");
    assert!(t.files("_seclake/outbox", "").is_empty(), "{}", t.listing());
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    let body: serde_json::Value = serde_json::from_str(&bodies[2]).unwrap();
    assert_eq!(body["detection_id"], "Test.Forbidden");
    assert_eq!(body["event_count"], 3);
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("[HIGH] Test.Forbidden: 403 on secret-bucket")
    );
    t.ok(&["--rules", &rules, "alerts", "--deliver"]);
    assert_eq!(hook.bodies.lock().unwrap().len(), 3, "delivered once");
    let archived = std::fs::read_to_string(t.path("alerts.jsonl")).unwrap();
    assert_eq!(archived.lines().count(), 1, "file destination not repeated");
}

#[test]
fn replay_finds_the_alerts_ingest_would_have_raised_and_only_once() {
    let with = TestLake::new();
    with.ok(&["ingest", "--no-progress", sample_dir().to_str().unwrap()]);
    let without = TestLake::new();
    let out = without.ok(&[
        "ingest",
        "--no-progress",
        "--no-rules",
        sample_dir().to_str().unwrap(),
    ]);
    assert!(!out.contains("detections"), "{out}");
    let ids = |t: &TestLake| {
        t.csv("SELECT detection_id, count(*) AS n, sum(event_count) AS events, sum(CAST(raised AS INT)) AS raised \
             FROM panther_views.alerts GROUP BY 1 ORDER BY 1")
    };
    assert_eq!(ids(&without), "detection_id,n,events,raised\n");
    let out = without.ok(&["detect", "--since", "2020-05-01"]);
    assert!(out.contains("events: 4006"), "{out}");
    let expected = ids(&with);
    assert!(expected.lines().count() > 2, "{expected}");
    assert_eq!(ids(&without), expected);
    let same = |sql: &str| assert_eq!(with.csv(sql), without.csv(sql));
    same("SELECT alert_id, event_count FROM panther_views.alerts ORDER BY 1");
    same(
        "SELECT p_row_id, p_rule_id, p_alert_id FROM panther_rule_matches.aws_s3serveraccess ORDER BY 1, 2",
    );
    // Ingest and replay alike write each rule's matches to files of their own.
    for t in [&with, &without] {
        let per_file = rules_per_file(t);
        assert!(per_file.len() > 1, "{per_file:?}");
        assert!(per_file.iter().all(|(_, n)| *n == 1), "{per_file:?}");
    }
    // Twice: nothing new, and a replay over data that raised alerts on ingest adds nothing.
    let out = without.ok(&["detect", "--since", "2020-05-01"]);
    assert!(
        out.contains("new rule matches: 0; alerts: 0 raised, 0 created"),
        "{out}"
    );
    let out = with.ok(&["detect", "--since", "2020-05-01"]);
    assert!(out.contains("new rule matches: 0"), "{out}");
    // A range with no events.
    let out = without.ok(&["detect", "--since", "2021-01-01"]);
    assert!(out.contains("events: 0"), "{out}");
}

#[test]
fn invalid_rules_are_clear_errors_and_stop_ingest_before_it_writes() {
    let t = TestLake::new();
    let dir = t.path("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let case = |body: &str, expect: &[&str]| {
        std::fs::write(dir.join("r.yml"), body).unwrap();
        let out = t.run(&["--rules", d, "rules", "list"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        for e in expect {
            assert!(err.contains(e), "expected {e:?} in: {err}");
        }
    };
    let head = "RuleID: Bad.Rule\nLogTypes: [AWS.S3ServerAccess]\nSeverity: Low\n";
    case(
        &format!("{head}Condition: 'true'\nTreshold: 2\n"),
        &["r.yml", "unknown field `Treshold`"],
    );
    case(
        &format!("{head}Condition: bucket\n"),
        &["Bad.Rule", "r.yml", "Condition", "must be a boolean"],
    );
    case(
        &format!("{head}Condition: buckett = 'x'\n"),
        &["Bad.Rule", "buckett"],
    );
    case(
        &format!("{head}Condition: \"cidr_contains('10.0.0.0/33', remoteip)\"\n"),
        &["Bad.Rule", "invalid CIDR"],
    );
    case(
        &format!("{head}Condition: bucket IN (${{buckets}})\n"),
        &["Bad.Rule", "unknown parameter ${buckets}"],
    );
    case(
        "RuleID: Bad.Rule\nLogTypes: [AWS.Nope]\nSeverity: Low\nCondition: 'true'\n",
        &["Bad.Rule", "unknown log type \"AWS.Nope\""],
    );
    let out = t.run(&[
        "--rules",
        d,
        "ingest",
        "--no-progress",
        sample_dir().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(t.files("panther_logs", "").is_empty(), "{}", t.listing());
}

#[test]
fn rule_tests_and_eval_through_the_binary() {
    let t = TestLake::new();
    let out = t.ok(&["rules", "test"]);
    assert!(out.contains(" 0 failed"), "{out}");
    let rules = setup_rules(&t);
    std::fs::write(
        t.path("rules/forbidden.yml"),
        FORBIDDEN_RULE.replace("ExpectedResult: true", "ExpectedResult: false"),
    )
    .unwrap();
    let out = t.run_code(
        &[
            "--rules",
            &rules,
            "rules",
            "test",
            "--rule",
            "Test.Forbidden",
        ],
        2,
    );
    assert!(
        out.contains("FAIL  Test.Forbidden / hit: expected false, got true"),
        "{out}"
    );

    let events = t.path("events.jsonl");
    // (Starting with a byte-order mark, as Windows tools save text.)
    std::fs::write(
        &events,
        "\u{feff}{\"bucket\": \"b\", \"httpStatus\": 403, \"operation\": \"REST.GET.OBJECT\", \"ciphersuite\": \"x\", \"tlsVersion\": \"TLSv1.2\", \"remoteip\": \"10.0.0.1\"}\n\
         \n\
         {\"bucket\": \"b\", \"httpstatus\": 200, \"remoteip\": \"10.0.0.1\", \"ciphersuite\": \"x\", \"tlsversion\": \"TLSv1.2\"}\n",
    )
    .unwrap();
    let out = t.run_code(&["rules", "eval", events.to_str().unwrap()], 1);
    assert_eq!(
        out,
        "line 1: AWS.S3.ServerAccess.Error [INFO] title=\"403 errors found to S3 Bucket [b]\" dedup=\"403 errors found to S3 Bucket [b]\"\n\
         line 3: no rule matched\n"
    );
    std::fs::write(&events, "{\"bucket\": \"b\"}\n\n{not json\n").unwrap();
    let out = t.run(&["rules", "eval", events.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("events.jsonl: line 3, column 2: not a JSON event: key must be a string")
            && !err.contains("at line"),
        "{err}"
    );
}

#[test]
fn a_rule_naming_its_log_type_in_another_spelling_runs_on_ingest() {
    // `rules test` and loading accept a log type case-insensitively or spelled like the rule
    // ids; ingest picks a batch's rules by the canonical name, so the rule must be stored under
    // it (it once passed every check and then never ran).
    let t = TestLake::new();
    let dir = t.path("rules");
    std::fs::create_dir_all(&dir).unwrap();
    for (id, spelling) in [
        ("Test.Lower", "aws.s3serveraccess"),
        ("Test.Dotted", "AWS.S3.ServerAccess"),
    ] {
        let rule = FORBIDDEN_RULE
            .replace("Test.Forbidden", id)
            .replace("[AWS.S3ServerAccess]", &format!("[{spelling}]"));
        std::fs::write(dir.join(format!("{id}.yml")), rule).unwrap();
    }
    let rules = dir.to_str().unwrap();
    let list = t.ok(&["--rules", rules, "rules", "list"]);
    let row = list.lines().find(|l| l.contains("Test.Dotted")).unwrap();
    assert!(row.contains("AWS.S3ServerAccess"), "{list}");
    let a = write(
        &t,
        "a.log",
        &[
            line(10, 0, "b1", "REST.GET.OBJECT", 403, 1),
            line(10, 1, "b1", "REST.GET.OBJECT", 200, 2),
        ],
    );
    t.ok(&[
        "--rules",
        rules,
        "ingest",
        "--no-progress",
        "--rule",
        "Test.Lower",
        "--rule",
        "Test.Dotted",
        &a,
    ]);
    assert_eq!(
        csv(
            &t,
            rules,
            "SELECT p_rule_id, count(*) AS n FROM panther_rule_matches.aws_s3serveraccess GROUP BY 1 ORDER BY 1"
        ),
        "p_rule_id,n\nTest.Dotted,1\nTest.Lower,1\n"
    );
}

#[test]
fn configuration_required_rules_are_off_unless_named() {
    // As in panther-analysis, IPWhitelist, UnknownRequester and Unauthenticated ship disabled:
    // plain ingest runs the others; `--rule` runs exactly the rules named, disabled or not.
    let t = TestLake::new();
    let list = t.ok(&["rules", "list"]);
    for id in [
        "AWS.S3.ServerAccess.IPWhitelist",
        "AWS.S3.ServerAccess.UnknownRequester",
        "AWS.S3.ServerAccess.Unauthenticated",
    ] {
        let row = list
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{list}"));
        assert!(row.contains(" no "), "{row}");
    }
    let sample = sample_dir();
    t.ok(&["ingest", "--no-progress", sample.to_str().unwrap()]);
    let per_rule = "SELECT p_rule_id, count(*) > 0 AS hit FROM \
                    panther_rule_matches.aws_s3serveraccess GROUP BY 1 ORDER BY 1";
    assert_eq!(
        t.csv(per_rule),
        "p_rule_id,hit\nAWS.S3.ServerAccess.Error,true\nAWS.S3.ServerAccess.Insecure,true\n"
    );

    let named = TestLake::new();
    named.ok(&[
        "ingest",
        "--no-progress",
        "--rule",
        // Ids as typed on a command line: letter case aside.
        "aws.s3.serveraccess.ipwhitelist",
        sample.to_str().unwrap(),
    ]);
    assert_eq!(
        named.csv(per_rule),
        "p_rule_id,hit\nAWS.S3.ServerAccess.IPWhitelist,true\n"
    );
    let out = named.run(&["ingest", "--rule", "No.Such.Rule", "x.log"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no rule with id \"No.Such.Rule\" (`seclake rules list` lists them)"),
        "{err}"
    );
}

#[test]
fn alert_version_files_are_merged_without_losing_a_version() {
    // Every ingest that changes alerts adds a version file; past SECLAKE_ALERTS_COMPACT_AT of
    // them the next ingest merges them into one. Alerts and their history read the same as on
    // a lake that never merged.
    let mut merged = TestLake::new();
    merged.set_env("SECLAKE_ALERTS_COMPACT_AT", "3");
    let plain = TestLake::new();
    let files = |t: &TestLake| t.files("_seclake/alerts", ".parquet").len();
    for t in [&merged, &plain] {
        let rules = setup_rules(t);
        for i in 0..7u32 {
            // Each file adds a hit to the 10:00 window and opens a window of its own.
            let f = write(
                t,
                &format!("f{i}.log"),
                &[
                    line(10, i, "b1", "REST.GET.OBJECT", 403, 2 * i),
                    line(11 + i, 0, "b1", "REST.GET.OBJECT", 403, 2 * i + 1),
                ],
            );
            t.ok(&["--rules", &rules, "ingest", "--no-progress", &f]);
            assert!(files(t) <= 4 || std::ptr::eq(t, &plain), "{}", files(t));
        }
    }
    assert_eq!(files(&plain), 7);
    assert!(files(&merged) <= 4, "{}", files(&merged));
    let rules = merged.path("rules");
    let rules = rules.to_str().unwrap();
    for sql in [
        "SELECT alert_id, event_count, raised, version, raised_at FROM panther_views.alerts \
         ORDER BY alert_id",
        "SELECT alert_id, version, event_count FROM panther_views.alert_versions \
         ORDER BY alert_id, version",
    ] {
        let (m, p) = (csv(&merged, rules, sql), csv(&plain, rules, sql));
        assert_eq!(m.lines().count(), p.lines().count(), "{sql}");
        // Alert ids and counts agree; raised_at is the wall clock of each lake's own ingest.
        let strip = |s: &str| -> Vec<String> {
            s.lines()
                .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
                .collect()
        };
        assert_eq!(strip(&m), strip(&p), "{sql}");
    }
    assert!(
        csv(
            &merged,
            rules,
            "SELECT event_count, raised FROM panther_views.alerts WHERE event_count = 7"
        )
        .ends_with("7,true\n")
    );
}

/// `seclake alerts` on the bundled sample: newest and most severe first, `--severity` keeps
/// that level and above, the table shows 50 unless `--limit` says otherwise (and says so),
/// machine formats show all.
#[test]
fn alerts_list_most_severe_first_with_limits() {
    let t = TestLake::new();
    let sample = crate::util::sample_dir();
    // Two severities: IPWhitelist (medium, shipped disabled, so named) and Insecure (low).
    t.ok(&[
        "ingest",
        "--no-progress",
        "--rule",
        "AWS.S3.ServerAccess.IPWhitelist",
        "--rule",
        "AWS.S3.ServerAccess.Insecure",
        sample.to_str().unwrap(),
    ]);
    let rank = |s: &str| {
        ["INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
            .iter()
            .position(|x| *x == s)
    };
    let severities = |out: &str| -> Vec<usize> {
        out.lines()
            .skip(1)
            .map(|l| rank(l.split(',').nth(1).unwrap()).expect("a severity"))
            .collect()
    };
    let all = t.ok(&["alerts", "--format", "csv"]);
    let listed = severities(&all);
    let raised: usize = t
        .csv("SELECT count(*) AS n FROM panther_views.alerts WHERE raised")
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        raised > 50,
        "the sample raises more alerts than a screen: {raised}"
    );
    assert_eq!(listed.len(), raised, "csv lists every raised alert");
    // One ingest updated them all: most severe first.
    assert!(listed.windows(2).all(|w| w[0] >= w[1]), "{all}");
    assert!(listed.first() > listed.last(), "more than one severity");

    let medium = severities(&t.ok(&["alerts", "--format", "csv", "--severity", "medium"]));
    assert_eq!(
        medium.len(),
        listed.iter().filter(|&&r| r >= 2).count(),
        "medium and above"
    );
    // Only IPWhitelist's alerts are medium; its id may be typed in any case.
    let one_rule = [
        "alerts",
        "--format",
        "csv",
        "--rule",
        "aws.s3.serveraccess.ipwhitelist",
    ];
    assert_eq!(severities(&t.ok(&one_rule)), medium);

    let out = t.run(&["alerts"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| ")).count(),
        51,
        "header + 50"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "showing 50 of {raised} alerts; --limit 0 shows all"
        )),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let two = t.ok(&["alerts", "--format", "csv", "--limit", "2"]);
    assert_eq!(two.lines().count(), 3, "{two}");
    assert_eq!(
        t.ok(&["alerts", "--limit", "0"])
            .lines()
            .filter(|l| l.starts_with("| "))
            .count(),
        raised + 1
    );
    let bad = t.run(&["alerts", "--severity", "urgent"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown severity \"urgent\""));
}
