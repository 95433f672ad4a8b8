//! Fuzz the S3 access log parser: any bytes must parse without panicking, and every non-blank
//! line must end up as a row or a quarantined line.
//!
//!     cargo +nightly fuzz run s3_access
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use seclake::parse::s3_access::S3AccessParser;
use seclake::parse::{Parser, SourceInfo};
use seclake::schema::Registry;

fn parser() -> &'static S3AccessParser {
    static P: OnceLock<S3AccessParser> = OnceLock::new();
    P.get_or_init(|| {
        let schema = Registry::builtin().unwrap().get("AWS.S3ServerAccess").unwrap();
        S3AccessParser::new(schema).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let src = SourceInfo { id: "00000000000000000000000000000000".into(), label: "fuzz".into() };
    let p = parser().parse_chunk(data, 1, &src, 0).expect("parse_chunk only fails on Arrow errors");
    let rows = p.batch.map_or(0, |b| b.num_rows() as u64);
    assert_eq!(rows + p.quarantined.len() as u64, p.lines);
});
