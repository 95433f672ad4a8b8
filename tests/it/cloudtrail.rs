//! CloudTrail and custom JSON log types through the real binary.

use std::path::{Path, PathBuf};

use crate::util::{TestLake, gzip, line};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Records in the bundled CloudTrail sample (the digest file holds none).
fn sample_records() -> u64 {
    records_per_file().iter().sum()
}

/// Records in each file of the bundled CloudTrail sample that holds any.
fn records_per_file() -> Vec<u64> {
    let mut counts = Vec::new();
    for f in walk(&repo("data/cloudtrail")) {
        let gz = std::fs::read(&f).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        counts.extend(v["Records"].as_array().map(|r| r.len() as u64));
    }
    counts
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn cloudtrail_sample_lands_with_structs_blocks_indicators_and_the_digest_noted() {
    let t = TestLake::new();
    let out = t.ok(&[
        "ingest",
        "--no-progress",
        repo("data/cloudtrail").to_str().unwrap(),
    ]);
    let n = sample_records();
    assert_eq!(
        line(&out, "lines:"),
        format!("lines: {n} read = {n} rows written + 0 quarantined")
    );
    assert!(
        out.contains("CloudTrail-Digest") && out.contains("holds no records"),
        "{out}"
    );
    let q = |sql: &str| t.csv(sql);
    // S3 events by name, from the example.
    let by_name = q(
        "SELECT eventname, count(*) FROM panther_logs.aws_cloudtrail \
                     WHERE eventsource = 's3.amazonaws.com' AND eventname LIKE 'Put%Policy' GROUP BY 1",
    );
    assert!(by_name.contains("PutBucketPolicy,"), "{by_name}");
    // The identity is a struct; the blocks are JSON text read with json_get_str.
    let change = q(
        "SELECT useridentity.type, useridentity.sessioncontext.sessionissuer.username, \
                    json_get_str(requestparameters, 'bucketName'), errorcode, \
                    array_to_string(p_any_aws_arns, ' ') \
                    FROM panther_logs.aws_cloudtrail WHERE eventname = 'PutBucketPolicy' \
                    AND useridentity.accountid = '123456789012' ORDER BY eventtime",
    );
    let rows: Vec<&str> = change.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{change}");
    assert!(
        rows[0].starts_with("AssumedRole,DevOps,payroll-exports,,"),
        "{change}"
    );
    assert!(
        rows[0].contains("arn:aws:s3:::payroll-exports/*"),
        "{change}"
    );
    assert!(rows[1].contains(",AccessDenied,"), "{change}");
    // AWSService identity: the source address is a service name, so a domain, not an IP.
    let svc = q("SELECT sourceipaddress, p_any_ip_addresses IS NULL, \
                 array_to_string(p_any_domain_names, ' ') FROM panther_logs.aws_cloudtrail \
                 WHERE eventid = '5d2e8c1a-1111-4000-8000-000000000001'");
    assert!(svc.contains("cloudtrail.amazonaws.com,true,"), "{svc}");
    // IP-like, instance and account keys inside the blocks are indicators too.
    let run = q("SELECT array_to_string(p_any_ip_addresses, ' '), \
                 array_to_string(p_any_aws_instance_ids, ' '), \
                 array_to_string(p_any_domain_names, ' ') \
                 FROM panther_logs.aws_cloudtrail WHERE eventname = 'RunInstances' AND requestid = 'RUN0001'");
    assert!(
        run.contains("198.51.100.23 10.0.12.34,i-0a1b2c3d4e5f60718,ip-10-0-12-34.ec2.internal"),
        "{run}"
    );
    // A field the schema does not know (userIdentity.onBehalfOf) is kept, not lost.
    let extra = q(
        "SELECT json_get_str(unknownfields, 'useridentity.onBehalfOf') IS NOT NULL, \
                   unknownfields FROM panther_logs.aws_cloudtrail WHERE eventname = 'DeletePublicAccessBlock' \
                   AND recipientaccountid = '123456789012'",
    );
    assert!(extra.contains("identitystore"), "{extra}");
    // Small deliveries are parsed several to a batch, each record keeping its own file's
    // row id: the file's id prefix and the record's number in it, from 1 (a file parsed as
    // lines would number its records `1 << 20 | k`).
    let ids = q(
        "SELECT count(DISTINCT p_row_id), min(substr(p_row_id, 17)), \
                 max(substr(p_row_id, 17)), count(DISTINCT p_source_id), \
                 bool_and(starts_with(p_source_id, substr(p_row_id, 1, 16))) \
                 FROM panther_logs.aws_cloudtrail",
    );
    let per_file = records_per_file();
    let (files, most) = (per_file.len(), per_file.iter().max().unwrap());
    assert_eq!(
        ids.lines().nth(1).unwrap(),
        format!("{n},00000001,{most:08x},{files},true"),
        "{ids}"
    );
    // The indicator search across all logs covers the new table.
    let all = q("SELECT count(*) FROM panther_views.all_logs \
                 WHERE array_has(p_any_aws_instance_ids, 'i-0a1b2c3d4e5f60718')");
    assert_eq!(all.lines().nth(1), Some("1"), "{all}");
    // Re-ingest is a no-op, digest included.
    let again = t.ok(&[
        "ingest",
        "--no-progress",
        repo("data/cloudtrail").to_str().unwrap(),
    ]);
    assert!(line(&again, "files:").contains("0 ingested"), "{again}");
}

#[test]
fn a_mixed_folder_goes_to_the_right_tables_and_log_type_overrides() {
    let t = TestLake::new();
    let dir = t.path("mixed");
    crate::util::copy_sample(&dir.join("s3"));
    let ct = walk(&repo("data/cloudtrail/AWSLogs/123456789012/CloudTrail"));
    std::fs::create_dir_all(dir.join("ct")).unwrap();
    std::fs::copy(&ct[0], dir.join("ct/trail.json.gz")).unwrap();
    // One record per line (as EventBridge delivers), plain text.
    std::fs::write(
        dir.join("ct/events.jsonl"),
        "{\"eventVersion\":\"1.08\",\"eventTime\":\"2020-05-12T11:00:00Z\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"GetObject\",\"sourceIPAddress\":\"192.0.2.1\"}\n",
    )
    .unwrap();
    // A plain delivery larger than a head as stored whose first record is longer than the
    // quick first read (a long request parameter): told from the whole head.
    let record = |key: &str| {
        format!(
            "{{\"eventVersion\":\"1.08\",\"eventTime\":\"2020-05-12T12:00:00Z\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"PutObject\",\"sourceIPAddress\":\"192.0.2.2\",\"requestParameters\":{{\"key\":\"{key}\"}}}}"
        )
    };
    let mut records = vec![record(&"k".repeat(20_000))];
    records.extend((0..400).map(|i| record(&format!("short-{i}"))));
    let long = format!("{{\"Records\":[{}]}}", records.join(","));
    assert!(long.len() > 64 << 10);
    std::fs::write(dir.join("ct/long-first-record.json"), long).unwrap();
    let out = t.ok(&["ingest", "--no-progress", dir.to_str().unwrap()]);
    assert!(
        line(&out, "panther_logs.aws_cloudtrail:").contains(" 0 quarantined"),
        "{out}"
    );
    let n = t.csv(
        "SELECT count(*), max(length(json_get_str(requestparameters, 'key'))) \
         FROM panther_logs.aws_cloudtrail WHERE sourceipaddress = '192.0.2.2'",
    );
    assert_eq!(n.lines().nth(1), Some("401,20000"), "{n}");
    assert!(
        line(&out, "panther_logs.aws_s3serveraccess:").contains("rows"),
        "{out}"
    );
    let n = t.csv(
        "SELECT count(*) FROM panther_logs.aws_cloudtrail WHERE sourceipaddress = '192.0.2.1'",
    );
    assert_eq!(n.lines().nth(1), Some("1"), "{n}");

    // --log-type forces a type: access-log lines read as CloudTrail are quarantined, not lost.
    let t2 = TestLake::new();
    let one = walk(&dir.join("s3"))
        .into_iter()
        .find(|p| p.extension().is_none())
        .unwrap();
    let out = t2.run_code(
        &[
            "ingest",
            "--no-progress",
            "--log-type",
            "AWS.CloudTrail",
            one.to_str().unwrap(),
        ],
        0,
    );
    assert!(line(&out, "lines:").contains("= 0 rows written"), "{out}");
}

#[test]
fn malformed_records_are_quarantined_and_the_rest_of_the_file_kept() {
    let t = TestLake::new();
    let good = |i: usize| {
        format!(
            "{{\"eventVersion\":\"1.08\",\"eventTime\":\"2020-05-12T10:{i:02}:00Z\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"GetObject\",\"requestID\":\"R{i}\"}}"
        )
    };
    let doc = format!(
        "{{\"Records\":[{},{{\"eventTime\":\"2020-05-12T10:00:00Z\",\"readOnly\":\"perhaps\"}},{},{{\"eventVersion\":1,,}},{}",
        good(1),
        good(2),
        good(3)
    );
    // Truncated mid-record, as a partial upload would be.
    let doc = format!("{doc},{{\"eventVersion\":\"1.0");
    gzip(&t.path("in/bad.json.gz"), &doc);
    // A good delivery next to it: small files are parsed together, and the bad one's
    // records must not spill into (or lose) its neighbour's.
    gzip(
        &t.path("in/good.json.gz"),
        &format!("{{\"Records\":[{},{}]}}", good(4), good(5)),
    );
    let out = t.ok(&["ingest", "--no-progress", t.path("in").to_str().unwrap()]);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 8 read = 5 rows written + 3 quarantined",
        "{out}"
    );
    let by_file = t.csv(
        "SELECT regexp_replace(p_source_label, '.*/', ''), count(*), \
         min(substr(p_row_id, 17)), max(substr(p_row_id, 17)) \
         FROM panther_logs.aws_cloudtrail GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(
        by_file.lines().skip(1).collect::<Vec<_>>(),
        [
            "bad.json.gz,3,00000001,00000005",
            "good.json.gz,2,00000001,00000002"
        ],
        "{by_file}"
    );
    let quarantined = t.csv(
        "SELECT DISTINCT regexp_replace(p_source_label, '.*/', '') \
         FROM panther_quarantine.aws_cloudtrail",
    );
    assert_eq!(
        quarantined.lines().nth(1),
        Some("bad.json.gz"),
        "{quarantined}"
    );
    assert_eq!(quarantined.lines().count(), 2, "{quarantined}");
    let q = t.csv("SELECT line, reason FROM panther_quarantine.aws_cloudtrail ORDER BY reason");
    assert!(
        q.contains("record 2 (line 1): field readonly: expected a boolean"),
        "{q}"
    );
    assert!(q.contains("record 4 (line 1): key must be a string"), "{q}");
    assert!(q.contains("malformed JSON"), "{q}");
}

#[test]
fn a_custom_schema_ingests_with_no_code_change() {
    let t = TestLake::new();
    let data = repo("data/minio-audit");
    // Without the schema the file's type is unknown: a clear failure naming it.
    let out = t.run_code(&["ingest", "--no-progress", data.to_str().unwrap()], 2);
    assert!(
        out.contains("cannot tell the log type")
            && out.contains("audit-2020-05-12.jsonl")
            && out.contains("--schemas DIR"),
        "{out}"
    );
    // Listed in the lake's config, the example schema is detected from the file's keys.
    std::fs::create_dir_all(t.lake()).unwrap();
    std::fs::write(
        t.lake().join("seclake.yml"),
        format!("schemas_dirs: [{}]\n", repo("schemas/examples").display()),
    )
    .unwrap();
    let out = t.ok(&["ingest", "--no-progress", data.to_str().unwrap()]);
    assert_eq!(
        line(&out, "lines:"),
        "lines: 26 read = 24 rows written + 2 quarantined",
        "{out}"
    );
    let q = t.csv(
        "SELECT api.name, count(*), count(DISTINCT parentuser) > 0 FROM panther_logs.minio_audit \
         WHERE api.statuscode = 403 GROUP BY 1",
    );
    assert!(
        q.starts_with("panther_logs.minio_audit.api[name],count(*)") || q.contains("GetObject"),
        "{q}"
    );
    assert!(q.contains("GetObject,"), "{q}");
    let why = t.csv("SELECT reason FROM panther_quarantine.minio_audit ORDER BY line");
    assert!(
        why.contains("field time: expected a timestamp, got \"\"yesterday\"\""),
        "{why}"
    );
    let users = t.csv(
        "SELECT count(*) FROM panther_views.all_logs WHERE array_has(p_any_usernames, 'mallory')",
    );
    assert_ne!(users.lines().nth(1), Some("0"), "{users}");
    // The undeclared keys are kept whole.
    let extra = t.csv("SELECT count(*) FROM panther_logs.minio_audit WHERE json_get_str(extra, 'trigger') IS NULL \
         AND json_get(extra, 'requestClaims.accessKey') IS NOT NULL");
    assert_eq!(extra.lines().nth(1), Some("24"), "{extra}");
}

#[test]
fn files_starting_with_a_byte_order_mark_are_read_as_text() {
    // Windows tools write a UTF-8 byte-order mark at the start of text files; AWS does not.
    // Such files are detected and read like any other, on every read path.
    const BOM: &str = "\u{feff}";
    let t = TestLake::new();
    // A request id of 64 scrambled hex digits: the gzip file below stays larger than a head.
    let record = |i: usize| {
        let id: String = (0..4u64)
            .map(|k| {
                format!(
                    "{:016x}",
                    (i as u64 * 4 + k).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                )
            })
            .collect();
        format!(
            "{{\"eventVersion\":\"1.08\",\"eventTime\":\"2020-05-12T10:{:02}:{:02}Z\",\"eventSource\":\"s3.amazonaws.com\",\"eventName\":\"GetObject\",\"requestID\":\"{id}\"}}",
            i / 60 % 60,
            i % 60
        )
    };
    // A small delivery (read whole, parsed with its neighbours).
    std::fs::create_dir_all(t.path("in")).unwrap();
    std::fs::write(
        t.path("in/small.json"),
        format!("{BOM}{{\"Records\":[{},{}]}}", record(0), record(1)),
    )
    .unwrap();
    // A gzip delivery larger than a head (decompressed whole on a parser thread).
    let many: Vec<String> = (2..3002).map(record).collect();
    gzip(
        &t.path("in/large.json.gz"),
        &format!("{BOM}{{\"Records\":[{}]}}", many.join(",")),
    );
    assert!(std::fs::metadata(t.path("in/large.json.gz")).unwrap().len() > 64 << 10);
    // JSON lines (one record per line).
    std::fs::write(
        t.path("in/events.jsonl"),
        format!("{BOM}{}\n{}\n", record(3002), record(3003)),
    )
    .unwrap();
    // An access log.
    let sample = repo("data/s3-access-logs/2020-05-05-23-59-59-80F5636AD37F0125");
    let log = std::fs::read_to_string(&sample).unwrap();
    std::fs::write(t.path("in/access.log"), format!("{BOM}{log}")).unwrap();
    // A bucket-configuration snapshot among the logs is set aside with a note, as without a
    // mark.
    let snapshot = std::fs::read_to_string(repo("data/resources/config-snapshot.json")).unwrap();
    std::fs::write(t.path("in/snapshot.json"), format!("{BOM}{snapshot}")).unwrap();
    let out = t.ok(&["ingest", "--no-progress", t.path("in").to_str().unwrap()]);
    assert!(out.contains("a resource snapshot"), "{out}");
    // And stored where the note says, mark and all.
    let stored = t.ok(&[
        "resources",
        "ingest",
        t.path("in/snapshot.json").to_str().unwrap(),
    ]);
    assert!(stored.contains("S3 buckets stored"), "{stored}");
    let lines = log.lines().count();
    assert_eq!(
        line(&out, "lines:"),
        format!(
            "lines: {} read = {} rows written + 0 quarantined",
            3004 + lines,
            3004 + lines
        ),
        "{out}"
    );
    let n = t.csv("SELECT count(DISTINCT requestid) FROM panther_logs.aws_cloudtrail");
    assert_eq!(n.lines().nth(1), Some("3004"), "{n}");
    // The first access-log line kept its first field whole.
    let first: Vec<&str> = log.lines().next().unwrap().split(' ').collect();
    let n = t.csv(&format!(
        "SELECT bucketowner FROM panther_logs.aws_s3serveraccess WHERE requestid = '{}'",
        first[6]
    ));
    assert_eq!(n.lines().nth(1), Some(first[0]), "{n}");
}
