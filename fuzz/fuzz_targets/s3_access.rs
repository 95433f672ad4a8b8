//! Fuzz the S3 access log parser: any bytes must parse without panicking, and every non-blank
//! line must end up as a row or a quarantined line, whether the bytes are parsed as one chunk
//! or cut in two files parsed together (`Parser::parse_parts`, as small files are).
//!
//!     cargo +nightly fuzz run s3_access
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use seclake::parse::s3_access::S3AccessParser;
use seclake::parse::{Parser, Part, SourceInfo};
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

    // The same bytes as two files, cut after a newline chosen by the first byte.
    let cut = data.first().map_or(0, |&b| b as usize * data.len() / 256);
    let cut = memchr_after(data, cut);
    let other = SourceInfo { id: "11111111111111111111111111111111".into(), label: "fuzz-2".into() };
    let parts = [
        Part { text: &data[..cut], first_line: 1, source: &src },
        Part { text: &data[cut..], first_line: 1, source: &other },
    ];
    let together = parser().parse_parts(&parts, 0).expect("parse_parts only fails on Arrow errors");
    assert_eq!(together.len(), 2);
    let lines: u64 = together.iter().map(|t| t.lines).sum();
    let quarantined: u64 = together.iter().map(|t| t.quarantined.len() as u64).sum();
    let rows_together: u64 = together.iter().filter_map(|t| t.batch.as_ref()).map(|b| b.num_rows() as u64).sum();
    assert_eq!(lines, p.lines);
    assert_eq!(rows_together + quarantined, lines);
    assert_eq!(rows_together, rows);
});

/// The position just after the first newline at or after `from` (the end when there is none).
fn memchr_after(data: &[u8], from: usize) -> usize {
    data[from.min(data.len())..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |i| from + i + 1)
}
