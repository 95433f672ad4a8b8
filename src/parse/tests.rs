//! Helpers shared by the parsers' tests.

use arrow::record_batch::RecordBatch;

use super::{Parsed, Parser, Part, SourceInfo};

/// Parse `texts` as small files (sources `file-0`, `file-1`, …) together
/// ([`Parser::parse_parts`]) and each alone ([`Parser::parse_chunk`]); checks that each file
/// counts the same lines, quarantined lines and notes both ways and that the rows of the
/// files parsed together are all in the first file's batch. Returns that batch and the
/// batches of the files parsed alone, for the caller to compare the rows.
pub(crate) fn together_and_alone(
    parser: &dyn Parser,
    texts: &[Vec<u8>],
) -> (Option<RecordBatch>, Vec<RecordBatch>) {
    together_and_alone_as(parser, texts, false)
}

/// [`together_and_alone`] with `texts` as whole documents ([`Parser::parse_documents`] and
/// [`Parser::parse_document`]) when `documents`.
pub(crate) fn together_and_alone_as(
    parser: &dyn Parser,
    texts: &[Vec<u8>],
    documents: bool,
) -> (Option<RecordBatch>, Vec<RecordBatch>) {
    let sources: Vec<SourceInfo> = (0..texts.len())
        .map(|i| SourceInfo {
            id: format!("{i:x}").repeat(32),
            label: format!("file-{i}"),
        })
        .collect();
    let parts: Vec<Part<'_>> = (texts.iter().zip(&sources))
        .map(|(text, source)| Part {
            text,
            first_line: 1,
            source,
        })
        .collect();
    let (mut together, alone): (Vec<Parsed>, Vec<Parsed>) = if documents {
        let alone = parts
            .iter()
            .map(|p| parser.parse_document(p.text, p.source, 7));
        (
            parser.parse_documents(&parts, 7).unwrap(),
            alone.map(Result::unwrap).collect(),
        )
    } else {
        let alone = parts
            .iter()
            .map(|p| parser.parse_chunk(p.text, 1, p.source, 7));
        (
            parser.parse_parts(&parts, 7).unwrap(),
            alone.map(Result::unwrap).collect(),
        )
    };
    assert_eq!(together.len(), alone.len());
    for (t, a) in together.iter().zip(&alone) {
        assert_eq!(t.lines, a.lines);
        assert_eq!(t.quarantined, a.quarantined);
        assert_eq!(t.notes, a.notes);
    }
    assert!(together.iter().skip(1).all(|t| t.batch.is_none()));
    let batch = together.first_mut().and_then(|t| t.batch.take());
    (batch, alone.into_iter().filter_map(|a| a.batch).collect())
}

#[test]
fn a_byte_order_mark_is_stripped_from_the_start_only() {
    assert_eq!(super::strip_bom_str("\u{feff}{\"a\":1}"), "{\"a\":1}");
    assert_eq!(super::strip_bom_str("{\"a\":1}"), "{\"a\":1}");
    assert_eq!(super::strip_bom_str("a\u{feff}"), "a\u{feff}");
    assert_eq!(super::strip_bom_str("\u{feff}"), "");
    assert_eq!(super::strip_bom(b"\xef\xbb\xbfx"), b"x");
}
