use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;

use super::*;
use crate::schema::Registry;

fn parser() -> JsonParser {
    JsonParser::new(Registry::builtin().unwrap().get("AWS.CloudTrail").unwrap()).unwrap()
}

fn src() -> SourceInfo {
    SourceInfo {
        id: "0123456789abcdef0123456789abcdef".into(),
        label: "test.json".into(),
    }
}

/// A PutBucketPolicy management event by an assumed role (shape from the CloudTrail guide).
const MGMT: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:alice","arn":"arn:aws:sts::123456789012:assumed-role/Admin/alice","accountId":"123456789012","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::123456789012:role/Admin","accountId":"123456789012","userName":"Admin"},"webIdFederationData":{},"attributes":{"creationDate":"2020-05-12T09:00:00Z","mfaAuthenticated":"true"}}},"eventTime":"2020-05-12T10:15:00Z","eventSource":"s3.amazonaws.com","eventName":"PutBucketPolicy","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"[S3Console/0.4]","requestParameters":{"bucketName":"payroll","bucketPolicy":{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::payroll/*"}]},"Host":"payroll.s3.us-east-1.amazonaws.com"},"responseElements":null,"requestID":"R1","eventID":"E1","readOnly":false,"resources":[{"accountId":"123456789012","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::payroll"}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"payroll.s3.us-east-1.amazonaws.com"}}"#;

/// A GetObject data event made by a service (source address is a name, not an IP), denied.
const DATA: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"cloudfront.amazonaws.com"},"eventTime":"2020-05-12T10:16:00.5Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"cloudfront.amazonaws.com","userAgent":"cloudfront.amazonaws.com","errorCode":"AccessDenied","errorMessage":"Access Denied","requestParameters":{"bucketName":"cdn","key":"a.gif"},"responseElements":null,"additionalEventData":{"bytesTransferredOut":0},"requestID":"R2","eventID":"E2","readOnly":true,"resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::cdn/a.gif"}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"123456789012","eventCategory":"Data","newFieldFromAws":{"x":1}}"#;

fn parse_doc(doc: &str) -> Parsed {
    parser().parse_document(doc.as_bytes(), &src(), 0).unwrap()
}

/// `doc` read in one pass as an envelope, when it goes through.
fn one_pass(p: &JsonParser, doc: &[u8]) -> Option<Batch> {
    let mut out = p.batch(doc.len());
    p.envelope(doc, &mut out).then_some(out)
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a dyn Array {
    b.column_by_name(name).unwrap().as_ref()
}

/// String column `name` (plain, or interned as a dictionary) as its values.
fn strs(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let plain = arrow::compute::cast(col(b, name), &arrow::datatypes::DataType::Utf8).unwrap();
    plain
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

fn lists(b: &RecordBatch, name: &str) -> Vec<Vec<String>> {
    let l = col(b, name).as_list::<i32>();
    (0..l.len())
        .map(|i| {
            if l.is_null(i) {
                return vec![];
            }
            let v = l.value(i);
            v.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn envelope_records_become_rows_with_every_field() {
    let p = parse_doc(&format!("{{\"Records\":[{MGMT},\n{DATA}]}}"));
    assert!(p.quarantined.is_empty(), "{:?}", p.quarantined);
    assert_eq!(p.lines, 2);
    let b = p.batch.unwrap();
    assert_eq!(b.num_rows(), 2);
    assert_eq!(
        strs(&b, "eventname"),
        [Some("PutBucketPolicy".into()), Some("GetObject".into())]
    );
    assert_eq!(strs(&b, "errorcode"), [None, Some("AccessDenied".into())]);
    let t = col(&b, "p_event_time").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(t.value(0), 1_589_278_500_000_000);
    assert_eq!(t.value(1), 1_589_278_560_500_000);
    // The identity is a struct, nested two levels deep.
    let ui = col(&b, "useridentity").as_struct();
    let arn = ui.column_by_name("arn").unwrap().as_string::<i32>();
    assert_eq!(
        arn.value(0),
        "arn:aws:sts::123456789012:assumed-role/Admin/alice"
    );
    assert!(arn.is_null(1));
    let sc = ui.column_by_name("sessioncontext").unwrap().as_struct();
    assert!(sc.is_valid(0) && sc.is_null(1));
    let attrs = sc.column_by_name("attributes").unwrap().as_struct();
    let mfa = attrs
        .column_by_name("mfaauthenticated")
        .unwrap()
        .as_boolean();
    assert!(mfa.value(0));
    // Free-form blocks are the record's exact text.
    assert_eq!(
        strs(&b, "resources")[0].as_deref(),
        Some(
            r#"[{"accountId":"123456789012","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::payroll"}]"#
        )
    );
    assert_eq!(strs(&b, "responseelements"), [None, None]);
    // A field AWS adds later is kept, under its own name.
    assert_eq!(
        strs(&b, "unknownfields"),
        [None, Some(r#"{"newFieldFromAws":{"x":1}}"#.into())]
    );
    let rows: Vec<_> = strs(&b, "p_row_id").into_iter().flatten().collect();
    assert_eq!(
        rows,
        ["0123456789abcdef00000001", "0123456789abcdef00000002"]
    );
}

#[test]
fn indicators_come_from_identity_and_blocks() {
    let b = parse_doc(&format!("{{\"Records\":[{MGMT},{DATA}]}}"))
        .batch
        .unwrap();
    assert_eq!(
        lists(&b, "p_any_ip_addresses"),
        [vec!["198.51.100.7".to_string()], vec![]]
    );
    assert_eq!(
        lists(&b, "p_any_aws_arns")[0],
        [
            "arn:aws:sts::123456789012:assumed-role/Admin/alice",
            "arn:aws:iam::123456789012:role/Admin",
            "arn:aws:s3:::payroll/*",
            "arn:aws:s3:::payroll",
        ]
    );
    assert_eq!(lists(&b, "p_any_aws_account_ids")[0], ["123456789012"]);
    assert_eq!(lists(&b, "p_any_usernames")[0], ["Admin"]);
    // The service name in sourceIPAddress is a domain, not an IP.
    assert_eq!(
        lists(&b, "p_any_domain_names")[1],
        ["cloudfront.amazonaws.com"]
    );
    assert_eq!(lists(&b, "p_any_aws_arns")[1], ["arn:aws:s3:::cdn/a.gif"]);
}

#[test]
fn a_malformed_record_is_quarantined_alone() {
    let bad = r#"{"eventVersion":"1.08","eventTime":"2020-05-12T10:15:00Z","readOnly":"maybe"}"#;
    let no_time = r#"{"eventVersion":"1.08","eventName":"X"}"#;
    let broken = r#"{"eventVersion":"1.08",,}"#;
    let p = parse_doc(&format!(
        "{{\"Records\":[{MGMT},{bad},{no_time},{broken},{DATA}]}}"
    ));
    assert_eq!(p.batch.unwrap().num_rows(), 2);
    assert_eq!(p.lines, 5);
    let reasons: Vec<_> = p.quarantined.iter().map(|q| q.reason.as_str()).collect();
    assert!(
        reasons[0].starts_with("record 2 (line 1): field readonly: expected a boolean"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("record 3") && reasons[1].contains("eventtime: missing"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("record 4") && reasons[2].contains("key must be a string"),
        "{reasons:?}"
    );
    assert_eq!(p.quarantined[0].raw, bad);
}

#[test]
fn a_truncated_file_keeps_the_records_before_the_break() {
    let doc = format!("{{\"Records\":[{MGMT},{DATA},{{\"eventVersion\":\"1.0");
    let p = parse_doc(&doc);
    assert_eq!(p.batch.unwrap().num_rows(), 2);
    assert_eq!(p.quarantined.len(), 1);
    assert!(
        p.quarantined[0].reason.contains("malformed JSON"),
        "{:?}",
        p.quarantined
    );
    assert_eq!(p.quarantined[0].raw, "{\"eventVersion\":\"1.0");
}

#[test]
fn envelopes_read_in_one_pass_as_the_careful_path_reads_them() {
    let p = parser();
    let escaped = r#"{"eventTime":"2020-05-12T10:15:00Z","eventName":"Get\"Object\u0041","eventName":"again","userIdentity":{"type":"Root","Type":"dup"}}"#;
    let docs = [
        format!("{{\"Records\":[{MGMT},\n{DATA}]}}"),
        format!(
            " {{\"other\":[1,{{\"Records\":2}}],\"Records\":[{DATA},{MGMT},{escaped}],\"tail\":\"x\"}}\n"
        ),
        "{\"Records\":[]}".to_string(),
    ];
    for doc in &docs {
        let fast = one_pass(&p, doc.as_bytes()).expect("read in one pass");
        let fast = p
            .finish(fast, doc.len(), RowSources::One(&src()), 7)
            .unwrap();
        let careful = p.careful(doc.as_bytes(), &src(), 7).unwrap();
        assert_eq!(fast.batch, careful.batch, "{doc}");
        assert_eq!(fast.lines, careful.lines);
        assert!(fast.quarantined.is_empty() && careful.quarantined.is_empty());
        assert_eq!(fast.notes, careful.notes);
    }
    // What the careful path has to sort out record by record is not read in one pass.
    let bad = r#"{"eventTime":"2020-05-12T10:15:00Z","readOnly":"maybe"}"#;
    let no_time = r#"{"eventName":"X"}"#;
    let digest =
        r#"{"awsAccountId":"123456789012","digestStartTime":"2020-05-12T09:00:00Z","logFiles":[]}"#;
    for doc in [
        format!("{{\"Records\":[{MGMT},{bad}]}}"),
        format!("{{\"Records\":[{no_time},{DATA}]}}"),
        format!("{{\"Records\":[{MGMT},{{\"eventVersion\":\"1.0"),
        format!("{{\"Records\":[{MGMT}]}} {{\"Records\":[]}}"),
        format!("{{\"Records\":[{MGMT}],\"Records\":[{DATA}]}}"),
        "{\"Records\":null}".to_string(),
        format!("{{\"Recor\\u0064s\":[{MGMT}],\"note\":\"Records\"}}"),
        "[{\"Records\":[]}]".to_string(),
        MGMT.to_string(),
        digest.to_string(),
    ] {
        assert!(one_pass(&p, doc.as_bytes()).is_none(), "{doc}");
    }
}

#[test]
fn digest_files_are_skipped_with_a_note() {
    let digest = r#"{"awsAccountId":"123456789012","digestStartTime":"2020-05-12T09:00:00Z","digestEndTime":"2020-05-12T10:00:00Z","logFiles":[]}"#;
    let p = parser();
    assert!(p.whole_document(digest.as_bytes()));
    assert!(p.detect_score(digest.as_bytes()).is_some());
    let out = parse_doc(digest);
    assert!(out.batch.is_none() && out.quarantined.is_empty() && out.lines == 0);
    assert!(out.notes[0].contains("digestStartTime"), "{:?}", out.notes);
}

#[test]
fn records_one_per_line_parse_in_chunks() {
    let text = format!("{MGMT}\n\n{DATA}\nnot json\n");
    let p = parser();
    assert!(!p.whole_document(text.as_bytes()));
    assert!(p.detect_score(text.as_bytes()).is_some());
    let out = p.parse_chunk(text.as_bytes(), 10, &src(), 0).unwrap();
    assert_eq!(out.lines, 3);
    assert_eq!(out.batch.unwrap().num_rows(), 2);
    assert_eq!(out.quarantined[0].line, 13);
    assert_eq!(out.quarantined[0].raw, "not json");
}

#[test]
fn detection_needs_the_declared_keys() {
    let p = parser();
    assert!(
        p.detect_score(format!("{{\"Records\":[{MGMT}]}}").as_bytes())
            .is_some()
    );
    assert!(p.detect_score(b"{\"Records\":[{\"a\":1}]}").is_none());
    assert!(p.detect_score(b"{\"eventTime\":\"x\"}\n").is_none());
    assert!(
        p.detect_score(b"79a59df900b949e55d96a1e698fbaced bucket [06/Feb/2019:00:00:38 +0000]")
            .is_none()
    );
}

/// A prefix of a file settles detection when what detection reads is whole in it: then every
/// longer prefix scores the same.
#[test]
fn a_head_settles_detection_once_the_first_record_is_whole() {
    let p = parser();
    let digest = r#"{"awsAccountId":"123456789012","digestStartTime":"2020-05-12T10:00:00Z","logFiles":[{"s3Object":"a"}]}"#;
    let docs = [
        format!("{{\"Records\":[{MGMT},{DATA}]}}"),
        format!("{DATA}\n{MGMT}\n"),
        format!("[{MGMT},{DATA}]"),
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(MGMT).unwrap())
            .unwrap(),
        digest.to_string(),
        "not json at all\n".to_string(),
    ];
    for doc in &docs {
        let whole = p.detect_score(doc.as_bytes());
        for cut in 0..=doc.len() {
            let head = &doc.as_bytes()[..cut];
            if p.detect_settled(head) {
                assert_eq!(p.detect_score(head), whole, "{doc} cut at {cut}");
            }
        }
    }
    // Cut inside the first record: not settled; right after it: settled.
    let env = format!("{{\"Records\":[{MGMT},{DATA}]}}");
    let end_of_first = "{\"Records\":[".len() + MGMT.len();
    assert!(!p.detect_settled(&env.as_bytes()[..end_of_first - 1]));
    assert!(p.detect_settled(&env.as_bytes()[..end_of_first]));
    // A digest is settled only once walked whole (a records key could still follow).
    assert!(!p.detect_settled(&digest.as_bytes()[..digest.len() - 1]));
    assert!(p.detect_settled(digest.as_bytes()));
}

#[test]
fn escaped_strings_and_duplicate_keys() {
    let rec = r#"{"eventTime":"2020-05-12T10:15:00Z","eventName":"Get\"Object\u0041","eventName":"again"}"#;
    let out = parser().parse_chunk(rec.as_bytes(), 1, &src(), 0).unwrap();
    let b = out.batch.unwrap();
    assert_eq!(strs(&b, "eventname")[0].as_deref(), Some("Get\"ObjectA"));
    assert_eq!(
        strs(&b, "unknownfields")[0].as_deref(),
        Some(r#"{"eventName":"again"}"#)
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    let p = parser();
    for doc in [
        &b"{\"Records\":"[..],
        b"{\"Records\":[",
        b"{\"Records\":[1,\"x\",null,[]]}",
        b"[[[[",
        b"\"\\",
        b"{\"Records\":[{\"eventTime\":1}]}",
        b"\xff\xfe{}",
        b"{\"digestStartTime\":",
    ] {
        let out = p.parse_document(doc, &src(), 0).unwrap();
        let rows = out.batch.map_or(0, |b| b.num_rows() as u64);
        assert_eq!(
            rows + out.quarantined.len() as u64,
            out.lines,
            "{:?}",
            String::from_utf8_lossy(doc)
        );
        let _ = p.parse_chunk(doc, 1, &src(), 0).unwrap();
    }
}

#[test]
fn arrays_and_pretty_printed_records_are_documents() {
    let p = parser();
    let array = format!("[\n  {MGMT},\n  {DATA}\n]\n");
    assert!(p.whole_document(array.as_bytes()));
    assert!(p.detect_score(array.as_bytes()).is_some());
    let out = p.parse_document(array.as_bytes(), &src(), 0).unwrap();
    assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
    assert_eq!(out.batch.unwrap().num_rows(), 2);

    let rec: serde_json::Value = serde_json::from_str(MGMT).unwrap();
    let pretty = format!(
        "{}\n{}\n",
        serde_json::to_string_pretty(&rec).unwrap(),
        serde_json::to_string_pretty(&rec).unwrap()
    );
    assert!(p.whole_document(pretty.as_bytes()));
    assert!(p.detect_score(pretty.as_bytes()).is_some());
    let out = p.parse_document(pretty.as_bytes(), &src(), 0).unwrap();
    assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
    assert_eq!(out.batch.unwrap().num_rows(), 2);

    // One compact record per line stays line-oriented.
    let lines = format!("{MGMT}\n{DATA}\n");
    assert!(!p.whole_document(lines.as_bytes()));
}

mod one_pass {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    /// `name` as CloudTrail writes it, or in lower or upper case (keys match ignoring case).
    fn key(name: &'static str) -> impl Strategy<Value = String> {
        prop_oneof![
            Just(name.to_string()),
            Just(name.to_ascii_lowercase()),
            Just(name.to_ascii_uppercase()),
        ]
    }

    fn record() -> impl Strategy<Value = Value> {
        (
            (
                key("eventTime"),
                0u32..200_000_000,
                key("eventName"),
                "\\PC{0,12}",
            ),
            (key("userIdentity"), prop::option::of("\\PC{0,12}")),
            (
                key("requestParameters"),
                prop::option::of(("\\PC{0,8}", any::<i64>())),
            ),
            (
                key("readOnly"),
                prop::option::of(any::<bool>()),
                any::<bool>(),
            ),
        )
            .prop_map(
                |((t, secs, n, name), (u, arn), (rp, params), (ro, read, extra))| {
                    let when = chrono::DateTime::from_timestamp(1_577_836_800 + i64::from(secs), 0)
                        .expect("in range");
                    let mut r = serde_json::Map::new();
                    r.insert(t, json!(when.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
                    r.insert(n, json!(name));
                    r.insert(u, json!({"type": "IAMUser", "arn": arn}));
                    r.insert(
                        rp,
                        params.map_or(
                            Value::Null,
                            |(b, k)| json!({"bucketName": b, "n": k, "l": [b, k]}),
                        ),
                    );
                    r.insert(ro, json!(read));
                    if extra {
                        r.insert("newFieldFromAws".into(), json!({"x": [1, "y", null]}));
                    }
                    Value::Object(r)
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Every well-formed envelope is read in one pass, to exactly what the careful path
        /// reads from it.
        #[test]
        fn one_pass_and_careful_reads_agree(
            recs in prop::collection::vec(record(), 0..12),
            pretty in any::<bool>(),
            other in prop::option::of("\\PC{0,12}"),
        ) {
            let mut doc = serde_json::Map::new();
            doc.insert("Records".into(), Value::Array(recs));
            if let Some(o) = other {
                doc.insert("aaa".into(), json!({"Records": o}));
                doc.insert("zzz".into(), json!([o]));
            }
            let doc = Value::Object(doc);
            let text = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) }.unwrap();
            let p = parser();
            let fast = one_pass(&p, text.as_bytes());
            prop_assert!(fast.is_some(), "{}", text);
            let fast = p.finish(fast.unwrap(), text.len(), RowSources::One(&src()), 7).unwrap();
            let careful = p.careful(text.as_bytes(), &src(), 7).unwrap();
            prop_assert_eq!(fast.lines, careful.lines);
            prop_assert!(careful.quarantined.is_empty(), "{:?}", careful.quarantined);
            prop_assert_eq!(fast.batch, careful.batch);
        }
    }
}

proptest::proptest! {
    /// JSON-lines files parsed together give what parsing each alone gives, in input order:
    /// the same rows with their own source's id, label and row id, and per file the same
    /// lines, quarantined lines and notes (a malformed line, an array of records, a digest
    /// document on a line, a line of invalid UTF-8).
    #[test]
    fn json_lines_parsed_together_are_parsed_alone_one_after_another(
        files in proptest::collection::vec(proptest::collection::vec(0u8..6, 0..8), 1..5),
    ) {
        let line = |kind: u8| -> Vec<u8> {
            match kind {
                0 => b"{\"eventTime\": oops".to_vec(),
                1 => format!("[{MGMT},{DATA}]").into_bytes(),
                2 => b"{\"Digest\":{\"x\":1},\"digestS3Object\":\"d\"}".to_vec(),
                3 => DATA.replace("a.gif", "\u{e9}.gif").into_bytes().iter().map(|&b| if b == 0xc3 { 0xfe } else { b }).collect(),
                4 => DATA.as_bytes().to_vec(),
                _ => MGMT.as_bytes().to_vec(),
            }
        };
        let texts: Vec<Vec<u8>> = files
            .iter()
            .map(|f| f.iter().flat_map(|&k| [line(k), b"\n".to_vec()].concat()).collect())
            .collect();
        let (together, batches) = crate::parse::tests::together_and_alone(&parser(), &texts);
        match batches.first() {
            None => proptest::prop_assert!(together.is_none()),
            Some(first) => {
                let want = arrow::compute::concat_batches(&first.schema(), &batches).unwrap();
                proptest::prop_assert_eq!(together, Some(want));
            }
        }
    }
}

proptest::proptest! {
    /// Small delivery files parsed together ([`Parser::parse_documents`], one set of
    /// builders) give what parsing each alone gives, in input order: the same rows with their
    /// own source's id, label and row id (records numbered from 1 in each), and per file the
    /// same records, quarantined records and notes, also when one of them is not an envelope
    /// that reads in one pass (a malformed record, a digest file, an array of records).
    #[test]
    fn documents_parsed_together_are_parsed_alone_one_after_another(
        files in proptest::collection::vec((0u8..8, proptest::collection::vec(proptest::prelude::any::<bool>(), 0..6)), 1..6),
    ) {
        let doc = |kind: u8, records: &[bool]| -> Vec<u8> {
            let recs: Vec<&str> = records.iter().map(|&m| if m { MGMT } else { DATA }).collect();
            let recs = recs.join(",");
            match kind {
                0 => format!("{{\"Records\":[{recs},{{\"eventTime\": oops}}]}}"),
                1 => format!("[{recs}]"),
                2 => "{\"digestStartTime\":\"2020-05-12T10:00:00Z\",\"logFiles\":[]}".to_string(),
                _ => format!("{{\"Records\":[{recs}]}}"),
            }
            .into_bytes()
        };
        let texts: Vec<Vec<u8>> = files.iter().map(|(k, r)| doc(*k, r)).collect();
        let (together, batches) =
            crate::parse::tests::together_and_alone_as(&parser(), &texts, true);
        match batches.first() {
            None => proptest::prop_assert!(together.is_none()),
            Some(first) => {
                let want = arrow::compute::concat_batches(&first.schema(), &batches).unwrap();
                proptest::prop_assert_eq!(together, Some(want));
            }
        }
    }
}

/// The record reader ([`scan`]) against serde's visitors ([`NodeSeed`]), which it replaces
/// wherever it does not decline: on generated records and on the same records with a few
/// bytes changed, both accept or both reject, and what they accept lands in the same slots.
mod scan_and_serde {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Keys of the CloudTrail schema at any depth, in any case, and others.
    fn key() -> impl Strategy<Value = String> {
        let names = prop::sample::select(vec![
            "eventTime",
            "eventName",
            "eventVersion",
            "userIdentity",
            "type",
            "arn",
            "accountId",
            "sessionContext",
            "sessionIssuer",
            "attributes",
            "creationDate",
            "mfaAuthenticated",
            "webIdFederationData",
            "requestParameters",
            "responseElements",
            "resources",
            "readOnly",
            "managementEvent",
            "tlsDetails",
            "tlsVersion",
            "errorCode",
            "sourceIPAddress",
            "additionalEventData",
            "Records",
            "x",
            "",
        ]);
        prop_oneof![
            4 => (names, 0u8..3).prop_map(|(n, case)| match case {
                0 => n.to_string(),
                1 => n.to_ascii_lowercase(),
                _ => n.to_ascii_uppercase(),
            }),
            1 => "\\PC{0,6}",
            1 => Just("event\\u0054ime".to_string()),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,10}".prop_map(Value::from),
            "[a-z\"\\\\/\n\t\u{1}é]{0,6}".prop_map(Value::from),
            Just(Value::from("2020-05-12T10:15:00Z")),
            Just(Value::from("198.51.100.7")),
            Just(Value::from("true")),
            Just(Value::from("")),
            Just(Value::from(" 17 ")),
            Just(Value::from("arn:aws:iam::123456789012:role/x")),
            Just(Value::from("i-0abc1234")),
            Just(Value::from("123456789012")),
            Just(Value::from("bucket.s3.amazonaws.com")),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A free-form block whose strings are indicators, under keys that feed them or not.
    fn block() -> impl Strategy<Value = (String, Value)> {
        let blocks = prop::sample::select(vec![
            "requestParameters",
            "responseElements",
            "additionalEventData",
            "resources",
            "serviceEventDetails",
        ]);
        let keys = prop::sample::select(vec![
            "ipAddress",
            "sourceIp",
            "instanceId",
            "accountId",
            "ownerId",
            "host",
            "userName",
            "roleArn",
            "items",
            "x",
        ]);
        let values = prop::sample::select(vec![
            "198.51.100.7",
            "2001:db8::1",
            "arn:aws:iam::123456789012:role/x",
            "arn:aws:s3:::b/k",
            "123456789012",
            "i-0abc1234",
            "a.example.com",
            "alice",
            "",
        ]);
        let item = prop_oneof![
            values.clone().prop_map(Value::from),
            prop::collection::vec(values.prop_map(Value::from), 0..3).prop_map(Value::Array),
        ];
        let member = (keys, item).prop_map(|(k, v)| (k.to_string(), v));
        let object = prop::collection::vec(member, 0..5)
            .prop_map(|kv| Value::Object(kv.into_iter().collect()));
        let nested = prop::collection::vec(object.clone(), 0..3).prop_map(Value::Array);
        (blocks, prop_oneof![object, nested]).prop_map(|(b, v)| (b.to_string(), v))
    }

    /// A record's text with some keys repeated (serde_json's maps hold each key once).
    fn record() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(prop_oneof![3 => (key(), value()), 1 => block()], 0..10),
            any::<bool>(),
            prop::option::of(0usize..10),
        )
            .prop_map(|(members, pretty, repeat)| {
                let text = |v: &Value| {
                    if pretty {
                        serde_json::to_string_pretty(v)
                    } else {
                        serde_json::to_string(v)
                    }
                    .expect("serialisable")
                };
                let mut parts: Vec<String> = (members.iter())
                    .map(|(k, v)| format!("{}:{}", text(&Value::from(k.as_str())), text(v)))
                    .collect();
                if let Some(i) = repeat.filter(|&i| i < parts.len()) {
                    parts.push(parts[i].clone());
                }
                // Keys that spell an escape (`event\u0054ime`) are written as they are.
                format!("{{{}}}", parts.join(",")).replace("\\\\u0054", "\\u0054")
            })
    }

    /// Edits that make JSON wrong in the ways a scanner can get wrong.
    fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
        let bytes = prop::sample::select(b"\"{}[],:\\ -+0e.1nultfrE\x01\x7fu".to_vec());
        prop::collection::vec((any::<usize>(), 0u8..3, bytes), 0..3)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn the_scanner_reads_what_serde_reads(text in record(), edits in edits()) {
            let mut b = text.into_bytes();
            for (at, how, byte) in edits {
                let at = at % (b.len() + 1);
                match how {
                    0 if at < b.len() => b[at] = byte,
                    1 if at < b.len() => {
                        b.remove(at);
                    }
                    _ => b.insert(at, byte),
                }
            }
            let Ok(text) = std::str::from_utf8(&b) else {
                return Ok(());
            };
            let (fast, slow) = parser().read_both(text);
            prop_assert_eq!(fast, slow, "{}", text);
        }
    }

    #[test]
    fn escapes_numbers_and_repeats_read_alike() {
        let p = parser();
        for text in [
            MGMT,
            DATA,
            r#"{"eventTime":"2020-05-12T10:15:00Z","eventName":"a\"b\u00e9","eventName":"x"}"#,
            r#"{"event\u0054ime":"2020-05-12T10:15:00Z","readOnly":"true","x":[1,-2.5e3,{}]}"#,
            r#"{"eventName":"\ud800"}"#,
            r#"{"requestParameters":{"k":"\ud800"}}"#,
            r#"{"userIdentity":null,"tlsDetails":{"tlsVersion":1}}"#,
            r#"{"requestParameters":{"ipAddress":"198.51.100.7","items":[{"instanceId":"i-0abc1234"},"alice"],"host":"a.example.com"},"responseElements":null,"responseElements":{"ownerId":"123456789012"}}"#,
            r#"{"userIdentity":"x"}"#,
            r#"{"readOnly":01}"#,
            r#"{"readOnly":tru}"#,
            "{\"eventName\":\"a\u{1}\"}",
            r#"{"a":1,}"#,
            r#" { "eventName" : "x" } "#,
            "null",
            "[]",
        ] {
            let (fast, slow) = p.read_both(text);
            assert_eq!(fast, slow, "{text}");
            assert!(p.readers_agree(text));
        }
        let (blocks, _) = p.read_both(
            r#"{"requestParameters":{"ipAddress":"198.51.100.7","items":[{"instanceId":"i-0abc1234"}],"host":"a.example.com"}}"#,
        );
        let found: Vec<String> = blocks.expect("read").3.concat();
        for want in ["198.51.100.7", "i-0abc1234", "a.example.com"] {
            assert!(found.contains(&want.to_string()), "{want}: {found:?}");
        }
        let mgmt = p.read_both(MGMT).0.expect("read");
        assert!(
            mgmt.3
                .iter()
                .any(|l| l.contains(&"arn:aws:s3:::payroll/*".to_string()))
        );
    }
}
