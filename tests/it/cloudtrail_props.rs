//! Property tests for the JSON parser (CloudTrail schema): random records rendered as JSON, in
//! an envelope or one per line, parse back to the same values, wherever they fall in a file;
//! arbitrary bytes never panic and always add up.

use arrow::array::{Array, AsArray};
use arrow::datatypes::TimestampMicrosecondType;
use proptest::prelude::*;
use seclake::parse::json::JsonParser;
use seclake::parse::{Parser, SourceInfo};
use seclake::schema::Registry;
use serde_json::{Value, json};

fn parser() -> JsonParser {
    JsonParser::new(Registry::builtin().unwrap().get("AWS.CloudTrail").unwrap()).unwrap()
}

fn src() -> SourceInfo {
    SourceInfo {
        id: "ffffffffffffffffffffffffffffffff".into(),
        label: "prop".into(),
    }
}

/// A record: (event name, source address, user arn, read-only, seconds since 2020, params).
type Rec = (
    String,
    Option<String>,
    Option<String>,
    Option<bool>,
    u32,
    Value,
);

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, quotes and backslashes included: JSON escaping must round-trip.
    "\\PC{0,24}"
}

fn params() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (text(), any::<i32>()).prop_map(|(b, n)| json!({"bucketName": b, "n": n, "list": [b, n]})),
    ]
}

fn record() -> impl Strategy<Value = Rec> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(any::<bool>()),
        0u32..200_000_000,
        params(),
    )
}

fn render(r: &Rec) -> Value {
    let (name, ip, arn, ro, secs, params) = r;
    let t = chrono::DateTime::from_timestamp(1_577_836_800 + *secs as i64, 0).unwrap();
    json!({
        "eventVersion": "1.09",
        "eventTime": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventName": name,
        "sourceIPAddress": ip,
        "userIdentity": {"type": "IAMUser", "arn": arn},
        "readOnly": ro,
        "requestParameters": params,
    })
}

fn check(recs: &[Rec], batch: &arrow::record_batch::RecordBatch) {
    assert_eq!(batch.num_rows(), recs.len());
    // The parser interns some strings as dictionaries: read the table's plain types.
    let plain = seclake::lake::writer::plain_schema(&batch.schema());
    let batch = &seclake::lake::writer::cast_batch(batch, &plain).unwrap();
    let names = batch
        .column_by_name("eventname")
        .unwrap()
        .as_string::<i32>();
    let ips = batch
        .column_by_name("sourceipaddress")
        .unwrap()
        .as_string::<i32>();
    let ro = batch.column_by_name("readonly").unwrap().as_boolean();
    let times = batch
        .column_by_name("p_event_time")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    let arns = batch
        .column_by_name("useridentity")
        .unwrap()
        .as_struct()
        .column_by_name("arn")
        .unwrap()
        .as_string::<i32>();
    let params = batch
        .column_by_name("requestparameters")
        .unwrap()
        .as_string::<i32>();
    for (i, (name, ip, arn, r, secs, p)) in recs.iter().enumerate() {
        assert_eq!(names.value(i), name);
        assert_eq!(ips.is_valid(i).then(|| ips.value(i)), ip.as_deref());
        assert_eq!(arns.is_valid(i).then(|| arns.value(i)), arn.as_deref());
        assert_eq!(ro.is_valid(i).then(|| ro.value(i)), *r);
        assert_eq!(times.value(i), (1_577_836_800 + *secs as i64) * 1_000_000);
        let got: Option<Value> = params
            .is_valid(i)
            .then(|| serde_json::from_str(params.value(i)).unwrap());
        assert_eq!(got.unwrap_or(Value::Null), *p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn records_round_trip_in_an_envelope(recs in prop::collection::vec(record(), 1..20), pretty in any::<bool>()) {
        let doc = json!({"Records": recs.iter().map(render).collect::<Vec<_>>()});
        let text = if pretty { serde_json::to_string_pretty(&doc) } else { serde_json::to_string(&doc) }.unwrap();
        let p = parser();
        prop_assert!(p.whole_document(text.as_bytes()));
        let out = p.parse_document(text.as_bytes(), &src(), 0).unwrap();
        prop_assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
        check(&recs, &out.batch.unwrap());
    }

    #[test]
    fn bad_records_in_an_envelope_are_quarantined_alone(
        recs in prop::collection::vec((record(), prop::option::of(0usize..3)), 1..20),
    ) {
        // Envelopes read in one pass fall back to reading record by record when one is bad:
        // every good record comes out, in order; every bad one is quarantined with its number.
        let bad = [
            r#"{"eventTime":"2020-05-12T10:15:00Z","readOnly":"maybe"}"#,
            r#"{"eventName":"no time"}"#,
            r#"{"eventTime":,}"#,
        ];
        let parts: Vec<String> = recs
            .iter()
            .map(|(r, b)| b.map_or_else(|| render(r).to_string(), |k| bad[k].to_string()))
            .collect();
        let text = format!("{{\"Records\":[{}]}}", parts.join(","));
        let out = parser().parse_document(text.as_bytes(), &src(), 0).unwrap();
        let good: Vec<Rec> = recs.iter().filter(|(_, b)| b.is_none()).map(|(r, _)| r.clone()).collect();
        let numbers: Vec<usize> = recs.iter().enumerate().filter(|(_, (_, b))| b.is_some()).map(|(i, _)| i + 1).collect();
        prop_assert_eq!(out.lines as usize, recs.len());
        prop_assert_eq!(out.quarantined.len(), numbers.len());
        for (q, n) in out.quarantined.iter().zip(&numbers) {
            prop_assert!(q.reason.starts_with(&format!("record {n} ")), "{}", q.reason);
        }
        match out.batch {
            Some(b) => check(&good, &b),
            None => prop_assert!(good.is_empty()),
        }
    }

    #[test]
    fn records_round_trip_one_per_line(recs in prop::collection::vec(record(), 1..20)) {
        let text: String = recs.iter().map(|r| render(r).to_string() + "\n").collect();
        let out = parser().parse_chunk(text.as_bytes(), 1, &src(), 0).unwrap();
        prop_assert!(out.quarantined.is_empty(), "{:?}", out.quarantined);
        check(&recs, &out.batch.unwrap());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_add_up(data in prop::collection::vec(any::<u8>(), 0..400), prefix in any::<bool>()) {
        let mut bytes = if prefix { b"{\"Records\":[".to_vec() } else { Vec::new() };
        bytes.extend(data);
        let p = parser();
        for out in [p.parse_document(&bytes, &src(), 0).unwrap(), p.parse_chunk(&bytes, 1, &src(), 0).unwrap()] {
            let rows = out.batch.map_or(0, |b| b.num_rows() as u64);
            prop_assert_eq!(rows + out.quarantined.len() as u64, out.lines);
        }
    }
}
