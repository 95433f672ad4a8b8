//! Fuzz the JSON parser with the CloudTrail schema: any bytes, read as a whole document or as
//! lines, or as two documents parsed together (`Parser::parse_documents`, as small deliveries
//! are), must parse without panicking, and every record seen must end up as a row or a
//! quarantined item; the two documents count what each parsed alone counts. Read as one
//! record, the bytes must give the record reader and serde's visitors the same values and
//! indicators, or be rejected by both (`JsonParser::readers_agree`): the reader declines what
//! it is not sure of and serde reads it then, so a difference is a record read wrong.
//!
//!     cargo +nightly fuzz run cloudtrail
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use seclake::parse::json::JsonParser;
use seclake::parse::{Parsed, Part, Parser, SourceInfo};
use seclake::schema::Registry;

fn parser() -> &'static JsonParser {
    static P: OnceLock<JsonParser> = OnceLock::new();
    P.get_or_init(|| {
        let schema = Registry::builtin().unwrap().get("AWS.CloudTrail").unwrap();
        JsonParser::new(schema).unwrap()
    })
}

/// The rows of `p` (checked against its lines and quarantined lines).
fn check(p: Parsed) -> u64 {
    let rows = p.batch.map_or(0, |b| b.num_rows() as u64);
    assert_eq!(rows + p.quarantined.len() as u64, p.lines);
    rows
}

fuzz_target!(|data: &[u8]| {
    let src = SourceInfo { id: "00000000000000000000000000000000".into(), label: "fuzz".into() };
    let p = parser();
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(p.readers_agree(text), "{text:?}");
    }
    let _ = p.whole_document(data);
    let _ = p.detect_score(data);
    check(p.parse_document(data, &src, 0).expect("only Arrow errors fail"));
    check(p.parse_chunk(data, 1, &src, 0).expect("only Arrow errors fail"));

    // The same bytes as two documents, cut where the first byte says.
    let cut = data.first().map_or(0, |&b| b as usize * data.len() / 256);
    let other = SourceInfo { id: "11111111111111111111111111111111".into(), label: "fuzz-2".into() };
    let docs = [
        Part { text: &data[..cut], first_line: 1, source: &src },
        Part { text: &data[cut..], first_line: 1, source: &other },
    ];
    let alone: Vec<(u64, u64, usize)> = docs
        .iter()
        .map(|d| {
            let one = p.parse_document(d.text, d.source, 0).expect("only Arrow errors fail");
            let (lines, quarantined) = (one.lines, one.quarantined.len());
            (check(one), lines, quarantined)
        })
        .collect();
    let together = p.parse_documents(&docs, 0).expect("only Arrow errors fail");
    assert_eq!(together.len(), 2);
    assert!(together[1].batch.is_none());
    for (t, a) in together.iter().zip(&alone) {
        assert_eq!((t.lines, t.quarantined.len()), (a.1, a.2));
    }
    let rows: u64 = alone.iter().map(|a| a.0).sum();
    assert_eq!(together[0].batch.as_ref().map_or(0, |b| b.num_rows() as u64), rows);
});
