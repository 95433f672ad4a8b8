//! Amazon S3 server access log lines.
//!
//! Format (S3 user guide, "Amazon S3 server access log format"): space-separated fields in a
//! fixed order; the time is bracketed (`[06/Feb/2019:00:00:38 +0000]`), the request-URI,
//! referer and user agent are double-quoted with `\"` escapes, and `-` means no value.
//!
//! What this parser accepts beyond the happy path, all seen in real buckets:
//! - old lines that stop after 18 fields (before signature version) or 24 (before access
//!   point ARN); missing fields are NULL;
//! - fields after the last documented one, kept in order in `additionalfields`;
//! - the CloudFront origin-access-identity requester
//!   `arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E15MNIMTCFKK4C`, which
//!   contains unquoted spaces;
//! - quoted fields with unescaped inner quotes (a quote closes a field only before a space or
//!   the end of the line), IPv6 remote addresses, `"-"` as NULL, invalid UTF-8 (replaced).
//!
//! A line with fewer than 18 fields, an unreadable time, or a non-numeric value in a numeric
//! field is quarantined with a reason that names the field.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow::array::builder::BooleanBufferBuilder;
use arrow::array::{ArrayBuilder, ArrayRef, ListArray, StringBuilder, TimestampMicrosecondArray};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type};

use super::columns::{DictCol, NumCol, StrCol};
use super::{
    Parsed, Parser, Part, Quarantined, RowSources, SourceInfo, StandardFields, is_blank, lines,
    utf8,
};
use crate::error::{Error, Result};
use crate::schema::{ColumnType, LogSchema};

/// Documented fields, in log order, with the type each is stored as.
pub const FIELDS: [(&str, Kind); 27] = [
    ("bucketowner", Kind::Str),
    ("bucket", Kind::Str),
    ("time", Kind::Time),
    ("remoteip", Kind::Str),
    ("requester", Kind::Str),
    ("requestid", Kind::Str),
    ("operation", Kind::Str),
    ("key", Kind::Str),
    ("requesturi", Kind::Str),
    ("httpstatus", Kind::I32),
    ("errorcode", Kind::Str),
    ("bytessent", Kind::I64),
    ("objectsize", Kind::I64),
    ("totaltime", Kind::I64),
    ("turnaroundtime", Kind::I64),
    ("referrer", Kind::Str),
    ("useragent", Kind::Str),
    ("versionid", Kind::Str),
    ("hostid", Kind::Str),
    ("signatureversion", Kind::Str),
    ("ciphersuite", Kind::Str),
    ("authenticationtype", Kind::Str),
    ("hostheader", Kind::Str),
    ("tlsversion", Kind::Str),
    ("accesspointarn", Kind::Str),
    ("aclrequired", Kind::Str),
    ("sourceregion", Kind::Str),
];

/// Column holding fields beyond the documented ones.
pub const EXTRA: &str = "additionalfields";

/// Fewest fields a line may have (the format before signature version was added).
pub const MIN_FIELDS: usize = 18;

/// How a field is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Time,
    I32,
    I64,
}

impl Kind {
    fn column_type(self) -> ColumnType {
        match self {
            Kind::Str => ColumnType::String,
            Kind::Time => ColumnType::Timestamp,
            Kind::I32 => ColumnType::Int,
            Kind::I64 => ColumnType::BigInt,
        }
    }
}

const CLOUDFRONT_OAI: &[&[u8]] = &[
    b"arn:aws:iam::cloudfront:user/CloudFront",
    b"Origin",
    b"Access",
    b"Identity",
];

/// One token of a line: a byte range, and whether it was quoted and holds a backslash.
#[derive(Debug, Clone, Copy, Default)]
struct Tok {
    start: u32,
    end: u32,
    escaped: bool,
}

/// Index of the first `a` or `b` in `line` at or after `from`, or `line.len()`.
///
/// Fields are short (most under 32 bytes), and `memchr`'s per-call dispatch and set-up cost
/// more than such a search; this looks at 16 bytes at a time with SSE2 (part of x86-64),
/// inline. Elsewhere it is `memchr2`.
#[inline]
fn find2(line: &[u8], from: usize, a: u8, b: u8) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        let mut i = from.min(line.len());
        // SAFETY: SSE2 is always available on x86-64, and each load reads `line[i..i + 16]`,
        // which the loop condition keeps in bounds.
        unsafe {
            let (va, vb) = (_mm_set1_epi8(a as i8), _mm_set1_epi8(b as i8));
            while i + 16 <= line.len() {
                let v = _mm_loadu_si128(line.as_ptr().add(i).cast::<__m128i>());
                let hits = _mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb));
                let m = _mm_movemask_epi8(hits) as u32;
                if m != 0 {
                    return i + m.trailing_zeros() as usize;
                }
                i += 16;
            }
            // The last 1..=15 bytes: one load ending at the line's end, the bytes before `i`
            // shifted out.
            if i < line.len() && line.len() >= 16 {
                let at = line.len() - 16;
                let v = _mm_loadu_si128(line.as_ptr().add(at).cast::<__m128i>());
                let hits = _mm_or_si128(_mm_cmpeq_epi8(v, va), _mm_cmpeq_epi8(v, vb));
                let m = (_mm_movemask_epi8(hits) as u32) >> (i - at);
                return if m != 0 {
                    i + m.trailing_zeros() as usize
                } else {
                    line.len()
                };
            }
        }
        line[i..]
            .iter()
            .position(|&c| c == a || c == b)
            .map_or(line.len(), |p| i + p)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let from = from.min(line.len());
        memchr::memchr2(a, b, &line[from..]).map_or(line.len(), |p| from + p)
    }
}

/// Index of the first `b` in `line` at or after `from`, or `line.len()` (see [`find2`]).
#[inline]
fn find(line: &[u8], from: usize, b: u8) -> usize {
    find2(line, from, b, b)
}

/// Split a line into fields. Returns false when the line cannot be split (an unterminated
/// bracket).
fn tokenize(line: &[u8], toks: &mut Vec<Tok>) -> bool {
    toks.clear();
    let n = line.len();
    let mut pos = 0usize;
    while pos < n {
        let (start, end, next, escaped) = match line[pos] {
            b'"' => {
                let s = pos + 1;
                let mut q = s;
                let mut escaped = false;
                loop {
                    let e = find2(line, q, b'"', b'\\');
                    if e == n {
                        // Unterminated quote: the rest of the line is the field.
                        break (s, n, n, escaped);
                    }
                    if line[e] == b'\\' {
                        escaped = true;
                        q = e + 2;
                        if q >= n {
                            break (s, n, n, escaped);
                        }
                    } else {
                        if e + 1 == n || line[e + 1] == b' ' {
                            break (s, e, e + 1, escaped);
                        }
                        q = e + 1;
                    }
                }
            }
            b'[' => match find(line, pos, b']') {
                e if e < n => (pos + 1, e, e + 1, false),
                _ => return false,
            },
            _ => {
                let e = find(line, pos, b' ');
                (pos, e, e, false)
            }
        };
        toks.push(Tok {
            start: start as u32,
            end: end as u32,
            escaped,
        });
        // Exactly one space separates fields.
        pos = next + 1;
    }
    // CloudFront origin access identity requesters contain unquoted spaces: merge them back.
    if toks.len() > 8 {
        let is_oai = CLOUDFRONT_OAI
            .iter()
            .enumerate()
            .all(|(i, w)| &line[toks[4 + i].start as usize..toks[4 + i].end as usize] == *w);
        if is_oai {
            toks[4].end = toks[8].end;
            toks.drain(5..9);
        }
    }
    true
}

/// True when `line` reads as an S3 access log line: enough fields and a bracketed time in
/// the third. Used to detect the log type of a file from its first line.
pub fn looks_like(line: &[u8]) -> bool {
    let mut toks = Vec::with_capacity(40);
    tokenize(line, &mut toks)
        && toks.len() >= MIN_FIELDS
        && toks[2].start > 0
        && line[toks[2].start as usize - 1] == b'['
        && super::time::parse_clf(&line[toks[2].start as usize..toks[2].end as usize]).is_some()
}

/// Where a line's time field starts and the time it reads as (see [`sort_time`]).
type TimeAt = Option<(usize, i64)>;

/// The time of a line, read ahead of the full parse to order a chunk's rows: where its third
/// field's bracketed text starts, and the time it reads as; `None` when it does not read as
/// one (such a line's fate is decided by the full parse).
fn sort_time(line: &[u8], day: &mut super::time::ClfDay) -> TimeAt {
    let owner = Some(find(line, 0, b' ')).filter(|&o| o < line.len())?;
    let bucket = find(line, owner + 1, b' ');
    let start = bucket + 2;
    let rest = line.get(bucket + 1..)?.strip_prefix(b"[")?;
    let end = find(rest, 0, b']');
    let t = super::time::parse_clf_cached(rest.get(..end).filter(|_| end < rest.len())?, day)?;
    Some((start, t))
}

/// Sort a chunk's (time, position) keys; unreadable times (`i64::MIN`) first. Access-log times
/// are whole seconds and a chunk spans minutes to hours of them, so the keys are counted into
/// one slot per second (positions ascend within a slot) when the seconds span at most a few
/// times as many slots as keys: a few linear passes instead of a comparison sort. Other keys
/// (finer times, a chunk spanning years) are sorted by comparison; the order is the same.
fn sort_keys(keys: &mut Vec<(i64, u32)>) {
    const SECOND: i64 = 1_000_000;
    let (mut lo, mut hi, mut whole) = (i64::MAX, i64::MIN, true);
    for &(t, _) in keys.iter().filter(|&&(t, _)| t != i64::MIN) {
        lo = lo.min(t);
        hi = hi.max(t);
        whole &= t.rem_euclid(SECOND) == 0;
    }
    if lo > hi || !whole {
        return keys.sort_unstable();
    }
    let span = (hi - lo) / SECOND;
    if span > 4 * keys.len() as i64 + 1024 {
        return keys.sort_unstable();
    }
    // Slot 0 holds the unreadable times, slot 1 + s the times `lo + s` seconds.
    let slot = |t: i64| {
        if t == i64::MIN {
            0
        } else {
            1 + ((t - lo) / SECOND) as usize
        }
    };
    let mut starts = vec![0u32; span as usize + 3];
    for &(t, _) in keys.iter() {
        starts[slot(t) + 1] += 1;
    }
    let mut sum = 0;
    for s in starts.iter_mut() {
        sum += *s;
        *s = sum;
    }
    let mut sorted = vec![(0i64, 0u32); keys.len()];
    for &(t, i) in keys.iter() {
        let at = &mut starts[slot(t)];
        sorted[*at as usize] = (t, i);
        *at += 1;
    }
    *keys = sorted;
}

/// Undo `\"` and `\\` escapes of a quoted field.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('"' | '\\')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_int(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(v)
}

/// A string column of a chunk: plain, or interned ([`DictCol`]) when the table
/// dictionary-encodes it.
enum Col {
    Plain(StrCol),
    Dict(DictCol),
}

impl Col {
    #[inline(always)]
    fn push(&mut self, v: &str) {
        match self {
            Col::Plain(c) => c.push(v),
            Col::Dict(c) => c.push(v),
        }
    }

    #[inline(always)]
    fn push_null(&mut self) {
        match self {
            Col::Plain(c) => c.push_null(),
            Col::Dict(c) => c.push_null(),
        }
    }

    /// Bytes of the values stored (distinct values only, when interned).
    fn value_bytes(&self) -> usize {
        match self {
            Col::Plain(c) => c.value_bytes(),
            Col::Dict(c) => c.value_bytes(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Col::Plain(c) => Arc::new(c.finish()),
            Col::Dict(c) => Arc::new(c.finish()),
        }
    }
}

/// Column builders for one chunk.
struct Builders {
    strings: Vec<Col>,
    i32s: NumCol<Int32Type>,
    i64s: [NumCol<Int64Type>; 4],
    /// `additionalfields`: almost always NULL, so only the rows that have some are recorded
    /// ([`Extra`]).
    extra: Extra,
    /// The `time` column's values, which are also `p_event_time`'s (one buffer for both).
    event_times: Vec<i64>,
    lines: Vec<u64>,
}

/// Index of each field in its builder group (strings, i64s), or 0 for single builders.
const fn slots() -> [usize; 27] {
    let mut out = [0usize; 27];
    let (mut s, mut l) = (0, 0);
    let mut i = 0;
    while i < 27 {
        match FIELDS[i].1 {
            Kind::Str => {
                out[i] = s;
                s += 1;
            }
            Kind::I64 => {
                out[i] = l;
                l += 1;
            }
            _ => {}
        }
        i += 1;
    }
    out
}
const SLOTS: [usize; 27] = slots();

/// The fields that are not strings (time and numbers), in log order: checked before a line's
/// values are appended.
const TYPED: [usize; 6] = {
    let mut out = [0usize; 6];
    let (mut i, mut n) = (0, 0);
    while i < 27 {
        if !matches!(FIELDS[i].1, Kind::Str) {
            out[n] = i;
            n += 1;
        }
        i += 1;
    }
    assert!(n == 6, "six typed fields");
    out
};
const STRING_FIELDS: usize = 21;

/// What share of a chunk's bytes each string column's values took in the last chunk parsed,
/// in 1/65536ths: builders for the next chunk start that large (plus a margin) instead of
/// growing by copying. Lines differ little between chunks of a file; before the first chunk,
/// the columns share the bytes evenly.
#[derive(Debug)]
struct SizeHints([AtomicU32; STRING_FIELDS]);

impl SizeHints {
    const ONE: u64 = 1 << 16;

    fn new() -> Self {
        SizeHints(std::array::from_fn(|_| {
            AtomicU32::new((Self::ONE / STRING_FIELDS as u64) as u32)
        }))
    }

    /// Value bytes to reserve for column `c` of a chunk of `bytes`.
    fn capacity(&self, c: usize, bytes: usize) -> usize {
        let share = u64::from(self.0[c].load(Ordering::Relaxed));
        // An eighth more than last time, and never nothing.
        (bytes as u64 * share / Self::ONE * 9 / 8) as usize + 64
    }

    /// Remember the shares of a chunk of `bytes` whose columns took `used` bytes each.
    fn learn(&self, bytes: usize, used: impl Iterator<Item = usize>) {
        if bytes == 0 {
            return;
        }
        for (hint, n) in self.0.iter().zip(used) {
            let share = (n as u64 * Self::ONE / bytes as u64).min(Self::ONE);
            hint.store(share as u32, Ordering::Relaxed);
        }
    }
}

impl Builders {
    fn new(rows: usize, bytes: usize, hints: &SizeHints, interned: &[bool]) -> Self {
        Builders {
            strings: (0..STRING_FIELDS)
                .map(|c| {
                    let bytes = hints.capacity(c, bytes);
                    if interned[c] {
                        Col::Dict(DictCol::with_capacity(rows, bytes))
                    } else {
                        Col::Plain(StrCol::with_capacity(rows, bytes))
                    }
                })
                .collect(),
            i32s: NumCol::with_capacity(rows),
            i64s: std::array::from_fn(|_| NumCol::with_capacity(rows)),
            extra: Extra::default(),
            event_times: Vec::with_capacity(rows),
            lines: Vec::with_capacity(rows),
        }
    }

    fn finish(self) -> (Vec<ArrayRef>, ScalarBuffer<i64>, Vec<u64>) {
        let times = ScalarBuffer::from(self.event_times);
        let mut strings = self.strings.into_iter();
        let mut i32s = Some(self.i32s);
        let mut i64s = self.i64s.into_iter();
        let mut cols: Vec<ArrayRef> = FIELDS
            .iter()
            .map(|(_, kind)| -> ArrayRef {
                match kind {
                    Kind::Str => strings.next().expect("string slot").finish(),
                    Kind::Time => Arc::new(TimestampMicrosecondArray::new(times.clone(), None)),
                    Kind::I32 => Arc::new(i32s.take().expect("one i32 field").finish()),
                    Kind::I64 => Arc::new(i64s.next().expect("i64 slot").finish()),
                }
            })
            .collect();
        let rows = self.lines.len();
        cols.push(Arc::new(self.extra.finish(rows)));
        (cols, times, self.lines)
    }
}

/// The `additionalfields` lists of a chunk: the values of the rows that have any, and for
/// each such row its number and where its values end.
#[derive(Default)]
struct Extra {
    values: StringBuilder,
    ends: Vec<(u32, i32)>,
}

impl Extra {
    /// The list column of `rows` rows: NULL where a row had no additional field.
    fn finish(mut self, rows: usize) -> ListArray {
        let field = Arc::new(Field::new_list_field(DataType::Utf8, true));
        if self.ends.is_empty() {
            return ListArray::new_null(field, rows);
        }
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0i32);
        let mut valid = BooleanBufferBuilder::new(rows);
        let mut end = 0;
        let mut lists = self.ends.iter().peekable();
        for row in 0..rows as u32 {
            let has = lists.next_if(|&&(r, _)| r == row);
            if let Some(&(_, e)) = has {
                end = e;
            }
            offsets.push(end);
            valid.append(has.is_some());
        }
        let nulls = Some(NullBuffer::new(valid.finish())).filter(|n| n.null_count() > 0);
        ListArray::new(
            field,
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Arc::new(self.values.finish()),
            nulls,
        )
    }
}

/// A numeric or time value, checked before anything of the line is appended.
#[derive(Clone, Copy)]
enum Num {
    Null,
    V(i64),
}

/// Parses S3 server access log lines.
#[derive(Debug)]
pub struct S3AccessParser {
    schema: Arc<LogSchema>,
    standard: StandardFields,
    hints: SizeHints,
    /// Which string slots are interned ([`DictCol`]): [`LogSchema::interned_columns`].
    interned: Vec<bool>,
}

impl S3AccessParser {
    /// A parser for `schema`, which must declare the documented fields in order, then
    /// `additionalfields`.
    pub fn new(schema: Arc<LogSchema>) -> Result<Self> {
        let expected: Vec<(String, ColumnType)> = FIELDS
            .iter()
            .map(|(n, k)| (n.to_string(), k.column_type()))
            .chain([(
                EXTRA.to_string(),
                ColumnType::Array(Box::new(ColumnType::String)),
            )])
            .collect();
        let actual: Vec<(String, ColumnType)> = schema
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.clone()))
            .collect();
        if expected != actual {
            return Err(Error::Schema {
                file: schema.log_type.clone(),
                message: "the s3_access parser needs the 27 documented fields in log order, \
                          then additionalfields array<string>"
                    .into(),
            });
        }
        let interned_columns = schema.interned_columns();
        let interned = (FIELDS.iter())
            .filter(|(_, kind)| *kind == Kind::Str)
            .map(|(name, _)| interned_columns.iter().any(|c| c == name))
            .collect();
        let standard = StandardFields::interned(schema.clone());
        Ok(S3AccessParser {
            schema,
            standard,
            hints: SizeHints::new(),
            interned,
        })
    }

    /// Parse one line into the builders, or say why it cannot be parsed. Nothing is appended
    /// when an error is returned.
    /// `known` is [`sort_time`]'s reading of `line`: a time field starting there is not parsed
    /// again.
    fn parse_line(
        &self,
        line: &[u8],
        text: &str,
        known: TimeAt,
        toks: &mut Vec<Tok>,
        b: &mut Builders,
    ) -> std::result::Result<(), String> {
        if !tokenize(line, toks) {
            return Err("unterminated [ in time field".into());
        }
        if toks.len() < MIN_FIELDS {
            return Err(format!(
                "expected at least {MIN_FIELDS} space-separated fields, found {}",
                toks.len()
            ));
        }
        let field = |t: &Tok| &line[t.start as usize..t.end as usize];
        // Validate every typed field first so a bad line appends nothing.
        let mut nums = [Num::Null; 27];
        for &i in &TYPED {
            let Some(tok) = toks.get(i) else { break };
            let (name, kind) = &FIELDS[i];
            let raw = field(tok);
            nums[i] = if *kind == Kind::Time {
                let start = toks[i].start as usize;
                let t = match known {
                    // The same bytes, already read (both end at the first `]`).
                    Some((at, t)) if at == start => Some(t),
                    _ if line[start - 1] == b'[' => super::time::parse_clf(raw),
                    _ => None,
                };
                match t {
                    Some(t) => Num::V(t),
                    None => {
                        return Err(format!(
                            "field {name}: invalid time {:?}",
                            String::from_utf8_lossy(raw)
                        ));
                    }
                }
            } else if raw == b"-" {
                Num::Null
            } else {
                match parse_int(raw) {
                    Some(v) if *kind == Kind::I64 || v <= i32::MAX as i64 => Num::V(v),
                    _ => {
                        return Err(format!(
                            "field {name}: invalid number {:?}",
                            String::from_utf8_lossy(raw)
                        ));
                    }
                }
            };
        }
        debug_assert_eq!(text.as_bytes(), line);
        let text_of = |t: &Tok| {
            let (start, end) = (t.start as usize, t.end as usize);
            debug_assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
            // SAFETY: `text` is `line` as a `&str`, and a token starts and ends at an ASCII
            // delimiter (space, quote, bracket) or an end of the line, so within it and at
            // character boundaries. (Checking both ends of ~25 fields a line was 2% of an
            // ingest's instructions.)
            unsafe { text.get_unchecked(start..end) }
        };
        for (i, (_, kind)) in FIELDS.iter().enumerate() {
            let tok = toks.get(i);
            match kind {
                Kind::Str => {
                    let sb = &mut b.strings[SLOTS[i]];
                    match tok {
                        Some(t) => {
                            let v = text_of(t);
                            if v == "-" {
                                sb.push_null();
                            } else if t.escaped {
                                sb.push(&unescape(v));
                            } else {
                                sb.push(v);
                            }
                        }
                        None => sb.push_null(),
                    }
                }
                Kind::Time => {
                    let Num::V(t) = nums[i] else {
                        unreachable!("time validated")
                    };
                    b.event_times.push(t);
                }
                Kind::I32 => match nums[i] {
                    Num::V(v) => b.i32s.push(v as i32),
                    Num::Null => b.i32s.push_null(),
                },
                Kind::I64 => match nums[i] {
                    Num::V(v) => b.i64s[SLOTS[i]].push(v),
                    Num::Null => b.i64s[SLOTS[i]].push_null(),
                },
            }
        }
        if toks.len() > FIELDS.len() {
            for t in &toks[FIELDS.len()..] {
                let v = text_of(t);
                if t.escaped {
                    b.extra.values.append_value(unescape(v));
                } else {
                    b.extra.values.append_value(v);
                }
            }
            // This line's row: the rows pushed so far (its line number is pushed after).
            b.extra
                .ends
                .push((b.lines.len() as u32, b.extra.values.len() as i32));
        }
        Ok(())
    }
}

impl Parser for S3AccessParser {
    fn schema(&self) -> &Arc<LogSchema> {
        &self.schema
    }

    /// The parts' lines, all in time order, go into one set of builders.
    fn parse_parts(&self, parts: &[Part<'_>], parse_time: i64) -> Result<Vec<Parsed>> {
        let bytes: usize = parts.iter().map(|p| p.text.len()).sum();
        // Typical lines are 300-500 bytes.
        let est_rows = bytes / 300 + 16;
        let mut b = Builders::new(est_rows, bytes, &self.hints, &self.interned);
        let mut out: Vec<Parsed> = parts.iter().map(|_| Parsed::default()).collect();
        let mut toks = Vec::with_capacity(40);
        let valid_utf8: Vec<bool> = parts.iter().map(|p| utf8(p.text).is_some()).collect();
        // Rows go into the batch in time order, so that the writer, which sorts a file's rows
        // by time, finds long runs of consecutive rows to copy whole (see `lake::writer::gather`).
        // Lines come close to time order but not in it (S3 delivers best-effort), and the
        // small files of a day overlap in time.
        let mut day = super::time::ClfDay::default();
        let mut order: Vec<(TimeAt, u64, &[u8], u32)> = Vec::with_capacity(est_rows);
        for (p, part) in parts.iter().enumerate() {
            order.extend(
                lines(part.text, part.first_line)
                    .filter(|(_, line)| !is_blank(line))
                    .map(|(n, line)| (sort_time(line, &mut day), n, line, p as u32)),
            );
        }
        // Sorted as (time, position) pairs, which move cheaper than the lines' entries (ties
        // keep part, then line order); a chunk in order is left as is.
        let mut keys: Vec<(i64, u32)> = order
            .iter()
            .enumerate()
            .map(|(i, (t, ..))| (t.map_or(i64::MIN, |(_, t)| t), i as u32))
            .collect();
        if !keys.is_sorted() {
            sort_keys(&mut keys);
        }
        // Which part each row came from, when there are several.
        let mut of_row: Vec<u32> = Vec::with_capacity(if parts.len() > 1 { est_rows } else { 0 });
        for (j, &(_, i)) in keys.iter().enumerate() {
            // In time order the lines are visited out of place (a jitter of minutes is hundreds
            // of lines), each a cache miss: ask for the one `PREFETCH_AHEAD` steps on now.
            if let Some(&(_, ahead)) = keys.get(j + PREFETCH_AHEAD) {
                prefetch(order[ahead as usize].2);
            }
            let (known, n, line, p) = order[i as usize];
            let part = &mut out[p as usize];
            part.lines += 1;
            let text: Cow<str> = if valid_utf8[p as usize] {
                // SAFETY: the whole part is valid UTF-8 (checked above) and `line` is a slice
                // of it cut at `\n` or `\r`, ASCII bytes, so at character boundaries.
                Cow::Borrowed(unsafe { std::str::from_utf8_unchecked(line) })
            } else {
                String::from_utf8_lossy(line)
            };
            // Token offsets index `line`; a lossy copy changes lengths, so re-tokenize it.
            let (bytes, known): (&[u8], _) = match &text {
                Cow::Borrowed(_) => (line, known),
                Cow::Owned(s) => (s.as_bytes(), None),
            };
            match self.parse_line(bytes, &text, known, &mut toks, &mut b) {
                Ok(()) => {
                    b.lines.push(n);
                    if parts.len() > 1 {
                        of_row.push(p);
                    }
                }
                Err(reason) => part.quarantined.push(Quarantined {
                    line: n,
                    raw: text.into_owned(),
                    reason,
                }),
            }
        }
        for part in &mut out {
            part.quarantined.sort_unstable_by_key(|q| q.line);
        }
        self.hints
            .learn(bytes, b.strings.iter().map(Col::value_bytes));
        if b.lines.is_empty() {
            return Ok(out);
        }
        let sources: Vec<&SourceInfo> = parts.iter().map(|p| p.source).collect();
        let sources = match parts.len() {
            1 => RowSources::One(parts[0].source),
            _ => RowSources::PerRow {
                sources: &sources,
                of_row: &of_row,
            },
        };
        let (columns, times, lines) = b.finish();
        out[0].batch = Some((self.standard).finish(columns, times, &lines, sources, parse_time)?);
        Ok(out)
    }
}

/// Lines between a line's prefetch and its parse (perf, 1M lines: tokenizing and parsing
/// 1,440 → 1,100 samples at 4-16, the same from 4 on).
const PREFETCH_AHEAD: usize = 8;

/// Ask the CPU to bring `bytes` into its cache (a hint: no effect on results).
#[inline(always)]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let mut off = 0;
        while off < bytes.len() {
            // SAFETY: a prefetch never faults or changes memory; the address is inside `bytes`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(off).cast()) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

#[cfg(test)]
mod tests;
