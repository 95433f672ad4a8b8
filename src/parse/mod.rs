//! Parsers: raw bytes of one log format → Arrow record batches in the table's schema.
//!
//! A parser is handed a chunk of whole lines (the reader splits input at newlines) with the
//! physical line number of its first line, and returns one [`Parsed`]: a batch of rows in the
//! log type's Arrow schema (declared columns, standard `p_` fields, indicator lists) and the
//! lines it could not parse, each with its line number and the reason. Small files are handed
//! over several at a time ([`Parser::parse_parts`]), each with its own source and line numbers.
//!
//! Guarantees every parser keeps:
//! - Every non-blank line of the chunk becomes exactly one row or one quarantined line
//!   (`rows + quarantined == lines`); blank lines are neither and are not counted.
//! - A parser never panics on any input bytes (property tests and `fuzz/` check this).
//! - `p_row_id` is derived from the source identity and the line number, so re-parsing the
//!   same input gives the same ids.
//!
//! Rows of a batch may come in any order; ingest sorts each batch by `p_event_time` before the
//! writer sees it, so that a file's time order is long runs of its batches. The S3 access-log
//! parser appends a chunk's lines in time order itself, which costs no copy.

mod columns;
pub mod indicators;
pub mod ip;
pub mod json;
pub mod s3_access;
pub mod standard;
#[cfg(test)]
mod tests;
pub mod time;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::schema::{LogSchema, ParserKind};
pub use standard::{RowSources, StandardFields};

/// Identity of one input (a file or object), shared by every row parsed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// Stable id (32 hex digits) derived from where the input lives and its version.
    pub id: String,
    /// Human-readable name: the path or URI.
    pub label: String,
}

/// A line that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// 1-based physical line number in the source.
    pub line: u64,
    /// The raw line (invalid UTF-8 replaced by U+FFFD).
    pub raw: String,
    /// Why it did not parse, naming the field where one is at fault.
    pub reason: String,
}

/// What parsing one chunk produced.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Parsed rows in the table's schema; `None` when no line parsed.
    pub batch: Option<RecordBatch>,
    /// Lines that did not parse.
    pub quarantined: Vec<Quarantined>,
    /// Non-blank lines seen (for record formats: records seen).
    pub lines: u64,
    /// Things worth telling the user that are not errors (e.g. a digest file skipped).
    pub notes: Vec<String>,
}

/// One source's lines among several parsed together ([`Parser::parse_parts`]), or one whole
/// document among several ([`Parser::parse_documents`]).
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    /// Whole lines.
    pub text: &'a [u8],
    /// Physical line number of the first.
    pub first_line: u64,
    pub source: &'a SourceInfo,
}

/// A parser for one log type.
pub trait Parser: Send + Sync {
    /// The log type this parser produces rows of.
    fn schema(&self) -> &Arc<LogSchema>;

    /// Parse several sources' lines together (one chunk of a file, or small files of this log
    /// type read into one chunk): one [`Parsed`] per part, in order, with that part's lines,
    /// quarantined lines and notes, and the rows of all parts in the first part's batch,
    /// each with its own source's `p_source_*` and `p_row_id` (one parse instead of many
    /// small batches merged afterwards). A part's rows number its lines less its
    /// quarantined lines.
    fn parse_parts(&self, parts: &[Part<'_>], parse_time: i64) -> Result<Vec<Parsed>>;

    /// Parse a chunk of whole lines whose first line has physical number `first_line`.
    fn parse_chunk(
        &self,
        chunk: &[u8],
        first_line: u64,
        source: &SourceInfo,
        parse_time: i64,
    ) -> Result<Parsed> {
        let part = Part {
            text: chunk,
            first_line,
            source,
        };
        let mut out = self.parse_parts(&[part], parse_time)?;
        Ok(out.pop().expect("one part"))
    }

    /// Whether a file whose first bytes are `head` must be parsed as one document (handed to
    /// [`Parser::parse_documents`] whole) rather than in chunks of lines.
    fn whole_document(&self, _head: &[u8]) -> bool {
        false
    }

    /// Parse whole files' decompressed bytes together (one large file, or small files of this
    /// log type read into one chunk), with the contract of [`Parser::parse_parts`]: one
    /// [`Parsed`] per document, the rows of all in the first one's batch. By default a
    /// document is parsed as lines.
    fn parse_documents(&self, docs: &[Part<'_>], parse_time: i64) -> Result<Vec<Parsed>> {
        self.parse_parts(docs, parse_time)
    }

    /// Parse a whole file's decompressed bytes.
    fn parse_document(&self, doc: &[u8], source: &SourceInfo, parse_time: i64) -> Result<Parsed> {
        let part = Part {
            text: doc,
            first_line: 1,
            source,
        };
        let mut out = self.parse_documents(&[part], parse_time)?;
        Ok(out.pop().expect("one document"))
    }
}

/// The UTF-8 byte-order mark some Windows tools write at the start of a text file.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// `text` (the start of a file) without a leading UTF-8 byte-order mark: logs are read as
/// text, and the mark is not part of the first line or record.
pub fn strip_bom(text: &[u8]) -> &[u8] {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// [`strip_bom`] of a whole file read as a string (rule events, resource snapshots).
pub fn strip_bom_str(text: &str) -> &str {
    &text[text.len() - strip_bom(text.as_bytes()).len()..]
}

/// The parser a log-type schema names.
pub fn parser_for(schema: Arc<LogSchema>) -> Result<Arc<dyn Parser>> {
    Ok(match schema.parser {
        ParserKind::S3Access => Arc::new(s3_access::S3AccessParser::new(schema)?),
        ParserKind::Json => Arc::new(json::JsonParser::new(schema)?),
    })
}

/// Iterate the lines of `chunk` as (physical line number, bytes without `\n`/`\r\n`).
pub fn lines(chunk: &[u8], first_line: u64) -> impl Iterator<Item = (u64, &[u8])> {
    let mut rest = chunk;
    let mut n = first_line;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let this = n;
        n += 1;
        Some((this, line))
    })
}

/// `bytes` as text when they are valid UTF-8. For whole chunks and documents, which it reads
/// byte for byte: SIMD validation, several times faster than `std::str::from_utf8`.
pub fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// True for a line with nothing but spaces and tabs.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| *b == b' ' || *b == b'\t')
}
