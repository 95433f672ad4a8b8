//! Fuzz the JSON parser with the CloudTrail schema: any bytes, read as a whole document or as
//! lines, must parse without panicking, and every record seen must end up as a row or a
//! quarantined item.
//!
//!     cargo +nightly fuzz run cloudtrail
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use seclake::parse::json::JsonParser;
use seclake::parse::{Parsed, Parser, SourceInfo};
use seclake::schema::Registry;

fn parser() -> &'static JsonParser {
    static P: OnceLock<JsonParser> = OnceLock::new();
    P.get_or_init(|| {
        let schema = Registry::builtin().unwrap().get("AWS.CloudTrail").unwrap();
        JsonParser::new(schema).unwrap()
    })
}

fn check(p: Parsed) {
    let rows = p.batch.map_or(0, |b| b.num_rows() as u64);
    assert_eq!(rows + p.quarantined.len() as u64, p.lines);
}

fuzz_target!(|data: &[u8]| {
    let src = SourceInfo { id: "00000000000000000000000000000000".into(), label: "fuzz".into() };
    let p = parser();
    let _ = p.whole_document(data);
    let _ = p.detect_score(data);
    check(p.parse_document(data, &src, 0).expect("only Arrow errors fail"));
    check(p.parse_chunk(data, 1, &src, 0).expect("only Arrow errors fail"));
});
