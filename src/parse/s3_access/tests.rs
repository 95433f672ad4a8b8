use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;

use super::*;
use crate::schema::Registry;

pub(crate) const DOC_LINE: &str = "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be DOC-EXAMPLE-BUCKET1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE REST.GET.VERSIONING - \"GET /DOC-EXAMPLE-BUCKET1?versioning HTTP/1.1\" 200 - 113 - 7 - \"-\" \"S3Console/0.4\" - s9lzHYrFp76ZVxRcpX9+5cjAnEH2ROuNkd2BHfIa6UkFVdtjf5mKR3/eTPFvsiP/XV/VLi31234= SigV4 ECDHE-RSA-AES128-GCM-SHA256 AuthHeader DOC-EXAMPLE-BUCKET1.s3.us-west-1.amazonaws.com TLSV1.2 arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP Yes";

fn parser() -> S3AccessParser {
    let reg = Registry::builtin().unwrap();
    S3AccessParser::new(reg.get("AWS.S3ServerAccess").unwrap()).unwrap()
}

fn src() -> SourceInfo {
    SourceInfo {
        id: "0123456789abcdef0123456789abcdef".into(),
        label: "test.log".into(),
    }
}

fn parse(text: &str) -> Parsed {
    parser().parse_chunk(text.as_bytes(), 1, &src(), 0).unwrap()
}

fn one(line: &str) -> RecordBatch {
    let p = parse(line);
    assert!(p.quarantined.is_empty(), "quarantined: {:?}", p.quarantined);
    let b = p.batch.expect("a row");
    assert_eq!(b.num_rows(), 1);
    b
}

/// Row 0 of string column `col` (plain or interned).
fn s(b: &RecordBatch, col: &str) -> Option<String> {
    let a = arrow::compute::cast(b.column_by_name(col).unwrap(), &DataType::Utf8).unwrap();
    let a = a.as_string::<i32>();
    a.is_valid(0).then(|| a.value(0).to_string())
}

fn i64v(b: &RecordBatch, col: &str) -> Option<i64> {
    let a = b.column_by_name(col).unwrap().as_primitive::<Int64Type>();
    a.is_valid(0).then(|| a.value(0))
}

fn list(b: &RecordBatch, col: &str) -> Option<Vec<String>> {
    let l = b.column_by_name(col).unwrap().as_list::<i32>();
    l.is_valid(0).then(|| {
        let v = l.value(0);
        let s = v.as_string::<i32>();
        (0..s.len()).map(|i| s.value(i).to_string()).collect()
    })
}

#[test]
fn aws_documentation_example() {
    let b = one(DOC_LINE);
    assert_eq!(s(&b, "bucket").as_deref(), Some("DOC-EXAMPLE-BUCKET1"));
    let t = b
        .column_by_name("time")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(t.value(0), 1_549_411_238_000_000);
    let pt = b
        .column_by_name("p_event_time")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(pt.value(0), t.value(0));
    assert_eq!(s(&b, "remoteip").as_deref(), Some("192.0.2.3"));
    assert_eq!(s(&b, "operation").as_deref(), Some("REST.GET.VERSIONING"));
    assert_eq!(s(&b, "key"), None);
    assert_eq!(
        s(&b, "requesturi").as_deref(),
        Some("GET /DOC-EXAMPLE-BUCKET1?versioning HTTP/1.1")
    );
    let status = b
        .column_by_name("httpstatus")
        .unwrap()
        .as_primitive::<Int32Type>();
    assert_eq!(status.value(0), 200);
    assert_eq!(s(&b, "errorcode"), None);
    assert_eq!(i64v(&b, "bytessent"), Some(113));
    assert_eq!(i64v(&b, "objectsize"), None);
    assert_eq!(i64v(&b, "totaltime"), Some(7));
    assert_eq!(i64v(&b, "turnaroundtime"), None);
    assert_eq!(s(&b, "referrer"), None);
    assert_eq!(s(&b, "useragent").as_deref(), Some("S3Console/0.4"));
    assert_eq!(s(&b, "signatureversion").as_deref(), Some("SigV4"));
    assert_eq!(s(&b, "tlsversion").as_deref(), Some("TLSV1.2"));
    assert_eq!(
        s(&b, "accesspointarn").as_deref(),
        Some("arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP")
    );
    assert_eq!(s(&b, "aclrequired").as_deref(), Some("Yes"));
    assert_eq!(s(&b, "sourceregion"), None);
    assert_eq!(list(&b, "additionalfields"), None);
    assert_eq!(s(&b, "p_log_type").as_deref(), Some("AWS.S3ServerAccess"));
    assert_eq!(
        s(&b, "p_row_id").as_deref(),
        Some("0123456789abcdef00000001")
    );
    assert_eq!(s(&b, "p_source_label").as_deref(), Some("test.log"));
    assert_eq!(
        list(&b, "p_any_ip_addresses"),
        Some(vec!["192.0.2.3".into()])
    );
    assert_eq!(
        list(&b, "p_any_aws_arns"),
        Some(vec![
            "arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP".into()
        ])
    );
    assert_eq!(
        list(&b, "p_any_aws_account_ids"),
        Some(vec!["123456789012".into()])
    );
}

/// Rows with and without additional fields, a quarantined line between them: each row
/// keeps its own list, the others NULL.
#[test]
fn extra_fields_stay_with_their_rows() {
    let lines = [
        format!("{DOC_LINE} us-east-1 a1"),
        DOC_LINE.to_string(),
        "not an access log line".to_string(),
        format!("{DOC_LINE} us-east-1 b1 \"b 2\""),
        DOC_LINE.to_string(),
    ];
    let p = parse(&lines.join("\n"));
    assert_eq!(p.quarantined.len(), 1);
    let b = p.batch.expect("rows");
    let l = b
        .column_by_name("additionalfields")
        .unwrap()
        .as_list::<i32>();
    let rows: Vec<Option<Vec<String>>> = (0..l.len())
        .map(|r| {
            l.is_valid(r).then(|| {
                let v = l.value(r);
                let v = v.as_string::<i32>();
                v.iter().flatten().map(String::from).collect()
            })
        })
        .collect();
    let some = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(rows, [some(&["a1"]), None, some(&["b1", "b 2"]), None]);
    l.to_data().validate_full().unwrap();
}

#[test]
fn source_region_and_extra_fields() {
    let b = one(&format!("{DOC_LINE} us-east-1 future1 \"fut ure2\""));
    assert_eq!(s(&b, "sourceregion").as_deref(), Some("us-east-1"));
    assert_eq!(
        list(&b, "additionalfields"),
        Some(vec!["future1".into(), "fut ure2".into()])
    );
}

#[test]
fn old_lines_with_18_and_24_fields() {
    let fields: Vec<&str> = tokens_of(DOC_LINE);
    let b = one(&fields[..18].join(" "));
    assert_eq!(s(&b, "versionid"), None);
    assert_eq!(s(&b, "hostid"), None);
    assert_eq!(s(&b, "tlsversion"), None);
    let b = one(&fields[..24].join(" "));
    assert_eq!(s(&b, "tlsversion").as_deref(), Some("TLSV1.2"));
    assert_eq!(s(&b, "accesspointarn"), None);
}

/// Split the doc line into its raw fields (quotes kept) for building variants.
fn tokens_of(line: &str) -> Vec<&str> {
    let mut toks = Vec::new();
    assert!(tokenize(line.as_bytes(), &mut toks));
    toks.iter()
        .map(|t| {
            let (mut a, mut e) = (t.start as usize, t.end as usize);
            if a > 0 && matches!(line.as_bytes()[a - 1], b'"' | b'[') {
                a -= 1;
                e += 1;
            }
            &line[a..e]
        })
        .collect()
}

#[test]
fn escaped_and_unescaped_quotes_in_user_agent() {
    let line = DOC_LINE.replace(
        "\"S3Console/0.4\"",
        "\"Go-http-client/1.1 \\\"quoted\\\" part\"",
    );
    let b = one(&line);
    assert_eq!(
        s(&b, "useragent").as_deref(),
        Some("Go-http-client/1.1 \"quoted\" part")
    );
    assert_eq!(s(&b, "versionid"), None);
    let line = DOC_LINE.replace("\"S3Console/0.4\"", "\"odd \"inner\"quote\"");
    let b = one(&line);
    assert_eq!(s(&b, "useragent").as_deref(), Some("odd \"inner\"quote"));
}

#[test]
fn cloudfront_origin_access_identity_requester() {
    let oai = "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E15MNIMTCFKK4C";
    let line = DOC_LINE.replacen(
        "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E57427F3EXAMPLE",
        &format!("{oai} 3E57427F3EXAMPLE"),
        1,
    );
    let b = one(&line);
    assert_eq!(s(&b, "requester").as_deref(), Some(oai));
    assert_eq!(s(&b, "requestid").as_deref(), Some("3E57427F3EXAMPLE"));
    assert_eq!(s(&b, "aclrequired").as_deref(), Some("Yes"));
}

#[test]
fn ipv6_and_iam_requester() {
    let line = DOC_LINE
        .replace("192.0.2.3", "2001:db8:85a3::8a2e:370:7334")
        .replacen(
            "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be 3E5",
            "arn:aws:iam::111122223333:user/alice 3E5",
            1,
        );
    let b = one(&line);
    assert_eq!(
        list(&b, "p_any_ip_addresses"),
        Some(vec!["2001:db8:85a3::8a2e:370:7334".into()])
    );
    assert_eq!(
        list(&b, "p_any_aws_arns"),
        Some(vec![
            "arn:aws:iam::111122223333:user/alice".into(),
            "arn:aws:s3:us-west-1:123456789012:accesspoint/example-AP".into()
        ])
    );
    assert_eq!(
        list(&b, "p_any_aws_account_ids"),
        Some(vec!["111122223333".into(), "123456789012".into()])
    );
}

#[test]
fn bad_lines_are_quarantined_with_reasons() {
    let text = format!(
        "{DOC_LINE}\nnot a log line\n{}\n{}\n\n{}\n",
        DOC_LINE.replace(" 200 ", " 2x0 "),
        DOC_LINE.replace("06/Feb/2019", "06/Fab/2019"),
        DOC_LINE.replace("[06/Feb/2019:00:00:38 +0000]", "[06/Feb/2019:00:00:38")
    );
    let p = parse(&text);
    assert_eq!(p.lines, 5, "the blank line is not counted");
    assert_eq!(p.batch.as_ref().unwrap().num_rows(), 1);
    let reasons: Vec<(u64, &str)> = p
        .quarantined
        .iter()
        .map(|q| (q.line, q.reason.as_str()))
        .collect();
    assert_eq!(
        reasons[0],
        (2, "expected at least 18 space-separated fields, found 4")
    );
    assert_eq!(reasons[1], (3, "field httpstatus: invalid number \"2x0\""));
    assert_eq!(
        reasons[2],
        (4, "field time: invalid time \"06/Fab/2019:00:00:38 +0000\"")
    );
    assert_eq!(reasons[3].0, 6);
    assert_eq!(p.quarantined[0].raw, "not a log line");
}

#[test]
fn invalid_utf8_is_replaced_not_refused() {
    let mut bytes = DOC_LINE
        .replace("S3Console/0.4", "S3Console/\u{1}X")
        .into_bytes();
    let at = bytes.iter().position(|b| *b == 1).unwrap();
    bytes[at] = 0xff;
    let p = parser().parse_chunk(&bytes, 1, &src(), 0).unwrap();
    let b = p.batch.unwrap();
    assert_eq!(s(&b, "useragent").as_deref(), Some("S3Console/\u{fffd}X"));
}

#[test]
fn crlf_line_endings_and_line_numbers() {
    let text = format!("{DOC_LINE}\r\n\r\n{DOC_LINE}\r\n");
    let p = parser()
        .parse_chunk(text.as_bytes(), 10, &src(), 0)
        .unwrap();
    let b = p.batch.unwrap();
    let ids = b.column_by_name("p_row_id").unwrap().as_string::<i32>();
    assert_eq!(ids.value(0), "0123456789abcdef0000000a");
    assert_eq!(ids.value(1), "0123456789abcdef0000000c");
    assert_eq!(s(&b, "aclrequired").as_deref(), Some("Yes"));
}

#[test]
fn detection() {
    assert!(looks_like(DOC_LINE.as_bytes()));
    assert!(!looks_like(b"{\"Records\": []}"));
    assert!(!looks_like(b"hello world"));
}

#[test]
fn schema_mismatch_is_refused() {
    let reg = Registry::builtin().unwrap();
    let mut schema = (*reg.get("AWS.S3ServerAccess").unwrap()).clone();
    schema.columns.pop();
    assert!(S3AccessParser::new(Arc::new(schema)).is_err());
}

#[test]
fn builders_start_at_the_last_chunks_column_sizes() {
    let hints = SizeHints::new();
    // Before any chunk: an even share each, with a margin.
    let even = hints.capacity(0, 21_000);
    assert!((1_000..1_300).contains(&even), "{even}");
    // A chunk of 10,000 bytes whose first column took 4,000 and the others 100 each.
    hints.learn(10_000, [4_000].into_iter().chain([100; 20]));
    let key = hints.capacity(0, 20_000);
    assert!((8_000..9_200).contains(&key), "{key}");
    let other = hints.capacity(1, 20_000);
    assert!((200..300).contains(&other), "{other}");
    // Parsing learns the shares, and the rows are the same whatever the hints.
    let p = parser();
    let chunk = format!("{DOC_LINE}\n").repeat(50);
    let first = p.parse_chunk(chunk.as_bytes(), 1, &src(), 0).unwrap();
    let before = p.hints.capacity(0, chunk.len());
    let second = p.parse_chunk(chunk.as_bytes(), 1, &src(), 0).unwrap();
    assert_ne!(before, SizeHints::new().capacity(0, chunk.len()));
    assert_eq!(first.batch, second.batch);
}

#[test]
fn rows_of_a_chunk_come_out_in_time_order() {
    let at = |t: &str| DOC_LINE.replace("06/Feb/2019:00:00:38", t);
    let text = [
        at("06/Feb/2019:00:00:40"),
        at("06/Feb/2019:00:00:38"),
        "not a log line".to_string(),
        at("05/Feb/2019:23:59:59"),
        at("06/Feb/2019:00:00:40"),
        at("06/Fab/2019:00:00:39"),
    ]
    .join("\n");
    let p = parse(&text);
    let b = p.batch.unwrap();
    let times = b
        .column_by_name("p_event_time")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    assert!(times.values().windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Each row keeps the id of its own line; equal times stay in line order.
    let ids = b.column_by_name("p_row_id").unwrap().as_string::<i32>();
    let lines: Vec<u64> = ids
        .iter()
        .map(|id| u64::from_str_radix(&id.unwrap()[16..], 16).unwrap())
        .collect();
    assert_eq!(lines, [4, 2, 1, 5]);
    let quarantined: Vec<u64> = p.quarantined.iter().map(|q| q.line).collect();
    assert_eq!(quarantined, [3, 6], "quarantined lines in line order");
    assert_eq!(
        sort_time(
            b"a b [06/Feb/2019:00:00:38 +0000] c",
            &mut Default::default()
        ),
        Some((5, 1_549_411_238_000_000))
    );
    for bad in [
        &b"a b"[..],
        b"a b c",
        b"a b [06/Feb/2019:00:00:38 +0000",
        b"",
    ] {
        assert_eq!(
            sort_time(bad, &mut Default::default()),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

proptest::proptest! {
    /// Counting seconds orders a chunk's keys as a comparison sort does: whole seconds (the
    /// counted case), unreadable times, and, when asked, times with microseconds or years apart
    /// (sorted by comparison).
    #[test]
    fn chunk_keys_sort_as_a_comparison_sort(
        picks in proptest::collection::vec((0u8..12, 0i64..2000, 1i64..1_000_000), 0..300),
        fine in proptest::bool::ANY,
        wide in proptest::bool::ANY,
    ) {
        const BASE: i64 = 1_588_000_000_000_000;
        let keys: Vec<(i64, u32)> = picks
            .iter()
            .map(|&(kind, s, us)| match kind {
                0 => i64::MIN,
                1 if fine => BASE + s * 1_000_000 + us,
                2 if wide => BASE + (s - 1000) * 31_536_000_000_000,
                _ => BASE + s * 1_000_000,
            })
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        let mut ours = keys.clone();
        sort_keys(&mut ours);
        let mut want = keys;
        want.sort_unstable();
        proptest::prop_assert_eq!(ours, want);
    }

    /// The inline search finds what a byte-by-byte search finds, from any start, on lines of
    /// any length (the 16-byte loads, the overlapping last load, and the short-line tail).
    #[test]
    fn find2_is_a_plain_search(
        line in proptest::collection::vec(proptest::sample::select(b" \"\\]ab".to_vec()), 0..80),
        from in 0usize..90,
    ) {
        let naive = |a: u8, b: u8| {
            line.iter()
                .enumerate()
                .skip(from)
                .find(|&(_, &c)| c == a || c == b)
                .map_or(line.len(), |(i, _)| i)
        };
        proptest::prop_assert_eq!(find2(&line, from, b'"', b'\\'), naive(b'"', b'\\'));
        proptest::prop_assert_eq!(find(&line, from, b' '), naive(b' ', b' '));
        proptest::prop_assert_eq!(find(&line, from, b']'), naive(b']', b']'));
    }
}

proptest::proptest! {
    /// Small files parsed together give what parsing each alone and merging by time gives:
    /// the same rows (each with its own source's id, label and row id), ties in file then line
    /// order, and per file the same lines and quarantined lines (invalid UTF-8 in some files).
    #[test]
    fn parts_parsed_together_are_parts_parsed_alone_merged_by_time(
        files in proptest::collection::vec(
            proptest::collection::vec((0u8..6, 0u8..4), 0..12),
            1..5,
        ),
    ) {
        let line = |(t, kind): (u8, u8)| -> Vec<u8> {
            let at = DOC_LINE.replace("00:00:38", &format!("00:00:3{t}"));
            match kind {
                0 => b"not a log line".to_vec(),
                1 => at.replace("DOC-EXAMPLE-BUCKET1 ", "DOC-\u{e9}-BUCKET1 ").into_bytes(),
                2 => at.replace("S3Console", "S3\u{ff}").into_bytes().iter().map(|&b| if b == 0xc3 { 0xff } else { b }).collect(),
                _ => at.into_bytes(),
            }
        };
        let texts: Vec<Vec<u8>> = files
            .iter()
            .map(|f| f.iter().flat_map(|&l| [line(l), b"\n".to_vec()].concat()).collect())
            .collect();
        let (together, batches) = crate::parse::tests::together_and_alone(&parser(), &texts);
        let Some(first) = batches.first() else {
            proptest::prop_assert!(together.is_none());
            return Ok(());
        };
        let all = arrow::compute::concat_batches(&first.schema(), &batches).unwrap();
        let times = all
            .column_by_name("p_event_time")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let mut idx: Vec<u32> = (0..all.num_rows() as u32).collect();
        idx.sort_by_key(|&r| times.value(r as usize));
        let want =
            arrow::compute::take_record_batch(&all, &arrow::array::UInt32Array::from(idx)).unwrap();
        proptest::prop_assert_eq!(together, Some(want));
    }
}
