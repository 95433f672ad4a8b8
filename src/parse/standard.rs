//! Panther's standard fields, appended to every parsed batch.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StringBuilder, TimestampMicrosecondArray};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::SourceInfo;
use super::indicators::IndicatorPlan;
use crate::error::Result;
use crate::schema::LogSchema;

/// Builds the `p_` columns and indicator lists for one log type.
#[derive(Debug, Clone)]
pub struct StandardFields {
    schema: Arc<LogSchema>,
    arrow: SchemaRef,
    indicators: IndicatorPlan,
}

impl StandardFields {
    /// For batches of `schema`.
    pub fn new(schema: Arc<LogSchema>) -> Self {
        let indicators = IndicatorPlan::new(&schema);
        let arrow = schema.arrow_schema();
        StandardFields {
            schema,
            arrow,
            indicators,
        }
    }

    /// For a parser's batches, whose interned columns are dictionaries
    /// ([`LogSchema::batch_schema`]).
    pub fn interned(schema: Arc<LogSchema>) -> Self {
        let arrow = schema.batch_schema();
        StandardFields {
            arrow,
            ..Self::new(schema)
        }
    }

    /// Assemble the final batch from the declared `columns`, the event time of each row
    /// (`p_event_time`'s buffer, which the parser's time column may share) and the physical
    /// line number each row came from.
    pub fn finish(
        &self,
        columns: Vec<ArrayRef>,
        event_times: ScalarBuffer<i64>,
        lines: &[u64],
        sources: RowSources<'_>,
        parse_time: i64,
    ) -> Result<RecordBatch> {
        let indicators = self.indicators.build(&columns, event_times.len());
        self.assemble(columns, indicators, event_times, lines, sources, parse_time)
    }

    /// Assemble the final batch from the declared `columns` and `indicators` (the `p_any_*`
    /// lists in [`LogSchema::indicator_columns`] order) computed by the parser itself.
    pub fn assemble(
        &self,
        mut columns: Vec<ArrayRef>,
        indicators: Vec<ArrayRef>,
        event_times: ScalarBuffer<i64>,
        lines: &[u64],
        sources: RowSources<'_>,
        parse_time: i64,
    ) -> Result<RecordBatch> {
        let rows = event_times.len();
        columns.push(repeat(&self.schema.log_type, rows));
        let (ids, labels) = match sources.single() {
            Some(source) => (
                row_ids(&source.id, lines),
                [repeat(&source.id, rows), repeat(&source.label, rows)],
            ),
            None => {
                let RowSources::PerRow { sources, of_row } = sources else {
                    unreachable!("one source is `single`")
                };
                let of = |r: usize| sources[of_row[r] as usize];
                // Sized exactly: a growing buffer would be copied into fresh pages (faults).
                let per_row = |value: fn(&SourceInfo) -> &str| -> ArrayRef {
                    let bytes = (0..rows).map(|r| value(of(r)).len()).sum();
                    let mut b = StringBuilder::with_capacity(rows, bytes);
                    (0..rows).for_each(|r| b.append_value(value(of(r))));
                    Arc::new(b.finish())
                };
                (
                    row_ids_by(|r| &of(r).id, lines),
                    [per_row(|s| &s.id), per_row(|s| &s.label)],
                )
            }
        };
        columns.push(ids);
        columns.push(Arc::new(TimestampMicrosecondArray::new(event_times, None)));
        columns.push(Arc::new(TimestampMicrosecondArray::from(vec![
            parse_time;
            rows
        ])));
        columns.extend(labels);
        columns.extend(indicators);
        Ok(RecordBatch::try_new(self.arrow.clone(), columns)?)
    }
}

/// Which source each row of a batch came from.
#[derive(Debug, Clone, Copy)]
pub enum RowSources<'a> {
    /// Every row from this one.
    One(&'a SourceInfo),
    /// Row `r` from `sources[of_row[r]]` (small files parsed together).
    PerRow {
        sources: &'a [&'a SourceInfo],
        of_row: &'a [u32],
    },
}

impl<'a> RowSources<'a> {
    /// The source of every row, when there is one.
    fn single(self) -> Option<&'a SourceInfo> {
        match self {
            RowSources::One(s) => Some(s),
            RowSources::PerRow { sources, of_row } => {
                let first = *of_row.first()?;
                (of_row.iter().all(|&s| s == first)).then(|| sources[first as usize])
            }
        }
    }
}

/// A string column holding `value` `rows` times.
///
/// Consecutive chunks of one source ask for the same columns (`p_source_id`, its label, the
/// log type) again and again: each thread keeps the last few built, and hands out slices of
/// them instead of filling fresh memory per chunk (a buffered day held 100 bytes a row of
/// copies of them, memory the kernel had to fault in and zero).
pub fn repeat(value: &str, rows: usize) -> ArrayRef {
    if rows == 0 || rows > MAX_SHARED_ROWS {
        return Arc::new(repeated(value, rows));
    }
    REPEATED.with_borrow_mut(|cache| {
        // Reuse a column at most twice as long, so that a batch does not hold (nor count, in
        // the writer's memory budget) much more than its own rows.
        let hit = cache
            .iter()
            .position(|a| a.len() >= rows && a.len() <= rows * 2 + 1024 && a.value(0) == value);
        let shared = match hit {
            Some(i) => cache.remove(i),
            None => repeated(value, rows.next_power_of_two()),
        };
        let out = shared.slice(0, rows);
        cache.insert(0, shared);
        cache.truncate(REPEATED_KEPT);
        Arc::new(out) as ArrayRef
    })
}

/// Rows up to which [`repeat`] shares columns between calls.
const MAX_SHARED_ROWS: usize = 1 << 16;
/// Columns each thread keeps for [`repeat`].
const REPEATED_KEPT: usize = 8;

thread_local! {
    static REPEATED: std::cell::RefCell<Vec<StringArray>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn repeated(value: &str, rows: usize) -> StringArray {
    let offsets = OffsetBuffer::from_repeated_length(value.len(), rows);
    StringArray::new(offsets, Buffer::from(value.repeat(rows).into_bytes()), None)
}

/// `p_row_id`: the first 16 hex digits of the source id, then the line number in hex. Unique
/// per (source, line), the same on every re-parse, and compresses well (shared prefix).
pub fn row_ids(source_id: &str, lines: &[u64]) -> ArrayRef {
    row_ids_by(|_| source_id, lines)
}

/// [`row_ids`] with row `r`'s source id `source_id(r)`.
fn row_ids_by<'a>(source_id: impl Fn(usize) -> &'a str, lines: &[u64]) -> ArrayRef {
    let prefix = |id: &'a str| id.get(..16).unwrap_or(id).as_bytes();
    // Source ids are 32 hex digits: 16 of them and up to 16 of the line.
    let mut bytes = Vec::with_capacity(lines.len() * 32);
    let mut offsets = Vec::with_capacity(lines.len() + 1);
    offsets.push(0i32);
    for (r, &line) in lines.iter().enumerate() {
        bytes.extend_from_slice(prefix(source_id(r)));
        push_hex(&mut bytes, line);
        offsets.push(i32::try_from(bytes.len()).expect("a batch's row ids hold under 2 GiB"));
    }
    // SAFETY: the offsets start at 0 and grow with every value, the last is the bytes'
    // length, and each value is a `&str`'s prefix (its first 16 bytes when that is a character
    // boundary, as `get` checks; the whole id otherwise) followed by ASCII hex digits.
    Arc::new(unsafe {
        StringArray::new_unchecked(
            OffsetBuffer::new_unchecked(offsets.into()),
            Buffer::from_vec(bytes),
            None,
        )
    })
}

/// Append `v` in lower-case hex, at least 8 digits (`{v:08x}` without the formatter): all 16
/// digits are computed without branches, the leading zeros beyond 8 dropped.
fn push_hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = (16 - v.leading_zeros() as usize / 4).max(8);
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = DIGITS[(v >> (4 * (15 - i))) as usize & 15];
    }
    out.extend_from_slice(&digits[16 - n..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    #[test]
    fn row_ids_are_the_source_prefix_and_the_line_in_hex() {
        let ids = row_ids(
            "0123456789abcdef0123",
            &[0, 1, 0xabc, 0xffff_ffff, 0x1_0000_0000, u64::MAX],
        );
        let ids: Vec<&str> = ids.as_string::<i32>().iter().flatten().collect();
        let want: Vec<String> = [0u64, 1, 0xabc, 0xffff_ffff, 0x1_0000_0000, u64::MAX]
            .iter()
            .map(|l| format!("0123456789abcdef{l:08x}"))
            .collect();
        assert_eq!(ids, want);
    }

    proptest::proptest! {
        /// Row ids are what `format!` writes, for any line number.
        #[test]
        fn row_ids_are_formatted_hex(lines in proptest::collection::vec(proptest::num::u64::ANY, 0..20)) {
            let ids = row_ids("fedcba98765432100000", &lines);
            let ids: Vec<&str> = ids.as_string::<i32>().iter().flatten().collect();
            let want: Vec<String> = lines.iter().map(|l| format!("fedcba9876543210{l:08x}")).collect();
            proptest::prop_assert_eq!(ids, want);
        }
    }

    #[test]
    fn repeat_holds_the_value_on_every_row() {
        let a = repeat("AWS.S3ServerAccess", 3);
        let v: Vec<&str> = a.as_string::<i32>().iter().flatten().collect();
        assert_eq!(v, ["AWS.S3ServerAccess"; 3]);
        assert_eq!(repeat("x", 0).len(), 0);
        assert_eq!(repeat("", 2).as_string::<i32>().value(1), "");
        // Shared between calls of similar lengths, never mixed up between values.
        let (a, b, c) = (
            repeat("src-a", 5000),
            repeat("src-b", 5000),
            repeat("src-a", 4000),
        );
        let (a, b, c) = (
            a.as_string::<i32>(),
            b.as_string::<i32>(),
            c.as_string::<i32>(),
        );
        assert!(
            a.values().ptr_eq(c.values()),
            "the same value's column is reused"
        );
        assert_eq!((a.len(), b.len(), c.len()), (5000, 5000, 4000));
        assert!(a.iter().all(|v| v == Some("src-a")) && c.iter().all(|v| v == Some("src-a")));
        assert!(b.iter().all(|v| v == Some("src-b")));
        // Much shorter or longer: a column of its own size.
        let d = repeat("src-a", 10);
        assert!(!d.as_string::<i32>().values().ptr_eq(a.values()));
        assert_eq!(repeat("src-a", 100_000).len(), 100_000);
    }
}
