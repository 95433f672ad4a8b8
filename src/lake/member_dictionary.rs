//! Which struct members a file writes without a dictionary, decided from the file's rows.
//!
//! Struct members (CloudTrail's `useridentity.*`, a custom schema's nested fields) go through
//! parquet-rs's column writer, which dictionary-encodes every column it is not told otherwise
//! about; the schema's `dictionary:` choice is for top-level columns. A member whose values are
//! nearly all distinct gains nothing from a dictionary: the dictionary page holds every value
//! anyway, and each row adds an index zstd cannot shrink. Measured on the CloudTrail bench lake
//! (200,000 generated records, 9 files, BENCHMARKS.md): `useridentity` 8.02 → 7.02 MB, its
//! access key ids 2.14 → 1.84 MB, principal ids 2.36 → 2.07 MB and session issuers' 1.10 →
//! 0.95 MB as `PLAIN`, session creation times 0.77 → 0.50 MB as `DELTA_BINARY_PACKED`.
//! Members whose values repeat keep theirs, which beats plain pages for them
//! (`useridentity.arn`, 57% distinct: 0.98 MB with it, 1.18 MB in DuckDB's plain pages).
//!
//! Real logs repeat such values far more than generated ones (a session makes many calls), so
//! the choice is made per file, from the rows it holds: a member goes without a dictionary when
//! at least [`DISTINCT_PER_MILLE`] of its non-null values are distinct. Counting stops at the
//! first repeat past what that allows, so a member with few values is settled after a fifth of
//! its rows; a member that is written without a dictionary is hashed here once instead of being
//! interned by parquet-rs.

use arrow::array::{Array, ArrayData, ArrayRef, AsArray, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Fields, Schema};
use arrow::record_batch::RecordBatch;
use foldhash::fast::FixedState;
use hashbrown::HashSet;
use parquet::basic::Encoding;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::writer::Selection;

/// Share of a member's non-null values (per mille) that must be distinct for it to be written
/// without a dictionary.
pub const DISTINCT_PER_MILLE: usize = 800;

/// `props` for a file of the rows `sels` select from `batches`: struct members (strings, 64-bit
/// integers and timestamps, not under a list) with mostly distinct values there get no
/// dictionary, integers and timestamps then as `DELTA_BINARY_PACKED`, strings as `PLAIN`.
pub fn adapt<'a>(
    props: WriterProperties,
    schema: &Schema,
    batches: &[&RecordBatch],
    sels: impl IntoIterator<Item = &'a Selection>,
) -> WriterProperties {
    let mut members = vec![];
    for (f, field) in schema.fields().iter().enumerate() {
        if let DataType::Struct(fields) = field.data_type() {
            collect(
                fields,
                &mut vec![field.name().clone()],
                &mut vec![f],
                &mut members,
            );
        }
    }
    if members.is_empty() {
        return props;
    }
    let runs: Vec<(usize, usize, usize)> = sels
        .into_iter()
        .flat_map(|s| s.runs().iter().copied())
        .collect();
    let plain: Vec<(ColumnPath, bool)> = members
        .into_iter()
        .filter_map(|(path, idx, numeric)| {
            let path = ColumnPath::new(path);
            if !props.dictionary_enabled(&path) {
                return None;
            }
            let columns: Vec<ArrayRef> = batches.iter().map(|b| member(b, &idx)).collect();
            mostly_distinct(&columns, &runs).then_some((path, numeric))
        })
        .collect();
    if plain.is_empty() {
        return props;
    }
    let mut b = props.into_builder();
    for (path, numeric) in plain {
        b = b.set_column_dictionary_enabled(path.clone(), false);
        if numeric {
            b = b.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        }
    }
    b.build()
}

/// The members of `fields` (under the column path `path`, reached from a batch by the column
/// and child indices `idx`) this module decides for: (path, indices, numeric).
fn collect(
    fields: &Fields,
    path: &mut Vec<String>,
    idx: &mut Vec<usize>,
    out: &mut Vec<(Vec<String>, Vec<usize>, bool)>,
) {
    for (i, field) in fields.iter().enumerate() {
        path.push(field.name().clone());
        idx.push(i);
        match field.data_type() {
            DataType::Struct(inner) => collect(inner, path, idx, out),
            DataType::Utf8 => out.push((path.clone(), idx.clone(), false)),
            DataType::Int64 | DataType::Timestamp(_, _) => {
                out.push((path.clone(), idx.clone(), true))
            }
            _ => {}
        }
        path.pop();
        idx.pop();
    }
}

/// The member at `idx` (column, then child indices) of `batch`, all its rows.
fn member(batch: &RecordBatch, idx: &[usize]) -> ArrayRef {
    let mut a = batch.column(idx[0]).clone();
    for &i in &idx[1..] {
        a = a.as_struct().column(i).clone();
    }
    a
}

/// Whether at least [`DISTINCT_PER_MILLE`] of the non-null values in the rows `runs` (batch,
/// first row, end row) select from `columns` (a member's array in each batch: strings or 64-bit
/// numbers, all of one type) are distinct. Rows are read in place: a file of many small inputs
/// is selected as hundreds of thousands of runs of a row or two, too many to slice.
fn mostly_distinct(columns: &[ArrayRef], runs: &[(usize, usize, usize)]) -> bool {
    let Some(first) = columns.first() else {
        return false;
    };
    if columns.iter().any(|c| c.data_type() != first.data_type()) {
        return false;
    }
    let nulls: Vec<Option<&NullBuffer>> = columns.iter().map(|c| c.nulls()).collect();
    let rows = || {
        runs.iter()
            .flat_map(|&(b, start, end)| (start..end).map(move |i| (b, i)))
            .filter(|&(b, i)| nulls[b].is_none_or(|n| n.is_valid(i)))
    };
    let values = rows().count();
    if values == 0 {
        return false;
    }
    // Repeats allowed: values - distinct, with distinct at least the share asked for.
    let allowed = values - (values * DISTINCT_PER_MILLE).div_ceil(1000);
    let hasher = FixedState::with_seed(0x5ec1a4e);
    let mut repeats = 0;
    let mut seen = |new: bool| {
        repeats += usize::from(!new);
        repeats <= allowed
    };
    match first.data_type() {
        DataType::Utf8 => {
            let strings: Vec<&StringArray> = columns.iter().map(|c| c.as_string::<i32>()).collect();
            let mut set: HashSet<&[u8], _> = HashSet::with_capacity_and_hasher(values, hasher);
            rows().all(|(b, i)| seen(set.insert(strings[b].value(i).as_bytes())))
        }
        DataType::Int64 | DataType::Timestamp(_, _) => {
            // Timestamps share Int64's layout: their values buffer, read as `i64`s.
            let data: Vec<ArrayData> = columns.iter().map(|c| c.to_data()).collect();
            let numbers: Vec<&[i64]> = data.iter().map(|d| d.buffer::<i64>(0)).collect();
            let mut set: HashSet<i64, _> = HashSet::with_capacity_and_hasher(values, hasher);
            rows().all(|(b, i)| seen(set.insert(numbers[b][i])))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StructArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, TimeUnit};
    use std::sync::Arc;

    fn schema() -> Arc<Schema> {
        let inner = Fields::from(vec![
            Field::new("few", DataType::Utf8, true),
            Field::new("ids", DataType::Utf8, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("n", DataType::Int64, true),
        ]);
        let outer = Fields::from(vec![Field::new("inner", DataType::Struct(inner), true)]);
        Arc::new(Schema::new(vec![
            Field::new("top", DataType::Utf8, true),
            Field::new("st", DataType::Struct(outer), true),
        ]))
    }

    /// `rows` rows: `few` cycles through 3 values, `ids` and `at` are distinct but for every
    /// `repeat_every`-th row (a copy of the row before; 0: never), `n` is 7 in every hundredth row and NULL in the others.
    fn batch(rows: i64, repeat_every: i64) -> RecordBatch {
        let schema = schema();
        let key = |i: i64| {
            if repeat_every > 0 && i % repeat_every == 0 && i > 0 {
                i - 1
            } else {
                i
            }
        };
        let DataType::Struct(outer) = schema.field(1).data_type() else {
            unreachable!()
        };
        let DataType::Struct(inner) = outer[0].data_type() else {
            unreachable!()
        };
        let leaves = StructArray::new(
            inner.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("v{}", i % 3)),
                )),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("id-{}", key(i))),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    (0..rows).map(|i| 1_000 * key(i)),
                )),
                Arc::new(Int64Array::from_iter(
                    (0..rows).map(|i| (i % 100 == 0).then_some(7)),
                )),
            ],
            None,
        );
        let st = StructArray::new(outer.clone(), vec![Arc::new(leaves)], None);
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("t{i}")),
                )),
                Arc::new(st),
            ],
        )
        .unwrap()
    }

    fn all(batch: &RecordBatch) -> Selection {
        let mut s = Selection::default();
        s.push(0, 0, batch.num_rows());
        s
    }

    fn dictionary(props: &WriterProperties, path: &str) -> bool {
        let path = ColumnPath::new(path.split('.').map(String::from).collect());
        props.dictionary_enabled(&path)
    }

    #[test]
    fn mostly_distinct_members_lose_their_dictionary() {
        let b = batch(1000, 0);
        let props = adapt(WriterProperties::new(), &schema(), &[&b], [&all(&b)]);
        assert!(dictionary(&props, "st.inner.few"), "3 values");
        assert!(!dictionary(&props, "st.inner.ids"));
        assert!(!dictionary(&props, "st.inner.at"));
        assert!(
            dictionary(&props, "st.inner.n"),
            "NULLs do not count as distinct values"
        );
        assert!(
            dictionary(&props, "top"),
            "top-level columns are the schema's choice"
        );
        let at = ColumnPath::new(vec!["st".into(), "inner".into(), "at".into()]);
        assert_eq!(props.encoding(&at), Some(Encoding::DELTA_BINARY_PACKED));
        let ids = ColumnPath::new(vec!["st".into(), "inner".into(), "ids".into()]);
        assert_eq!(
            props.encoding(&ids),
            None,
            "strings: the writer's default, PLAIN"
        );
    }

    #[test]
    fn the_share_of_distinct_values_decides_at_its_bound() {
        // One row in 5 repeats the one before: exactly 80% distinct.
        let b = batch(1000, 5);
        let props = adapt(WriterProperties::new(), &schema(), &[&b], [&all(&b)]);
        assert!(!dictionary(&props, "st.inner.ids"));
        // One in 4: 75%.
        let b = batch(1000, 4);
        let props = adapt(WriterProperties::new(), &schema(), &[&b], [&all(&b)]);
        assert!(dictionary(&props, "st.inner.ids"));
        assert!(dictionary(&props, "st.inner.at"));
    }

    #[test]
    fn only_the_selected_rows_count() {
        // Rows 0..100 and then the same 100 rows again: half distinct.
        let b = batch(100, 0);
        let mut s = Selection::default();
        s.push(0, 0, 100);
        s.push(1, 0, 100);
        let props = adapt(WriterProperties::new(), &schema(), &[&b, &b], [&s]);
        assert!(dictionary(&props, "st.inner.ids"));
        let mut s = Selection::default();
        s.push(0, 0, 60);
        s.push(1, 60, 100);
        let props = adapt(WriterProperties::new(), &schema(), &[&b, &b], [&s]);
        assert!(!dictionary(&props, "st.inner.ids"));
    }

    #[test]
    fn a_member_the_properties_write_plain_stays_plain() {
        let path = ColumnPath::new(vec!["st".into(), "inner".into(), "few".into()]);
        let props = WriterProperties::builder()
            .set_column_dictionary_enabled(path.clone(), false)
            .build();
        let b = batch(100, 0);
        let props = adapt(props, &schema(), &[&b], [&all(&b)]);
        assert!(!props.dictionary_enabled(&path));
        assert_eq!(props.encoding(&path), None);
    }
}
