//! String columns without a dictionary (request ids, host ids, version ids, row ids),
//! written without parquet-rs's column writer.
//!
//! Through parquet-rs's Arrow writer, each such column was gathered into one array, then
//! written a mini-batch at a time: every value compared with the page's minimum and maximum
//! through `memcmp`, its length handed to a bit-packing encoder one call at a time. [`encode`]
//! writes the same pages straight from the batches a file's rows come from ([`Selection`]),
//! one page at a time:
//!
//! - `DELTA_LENGTH_BYTE_ARRAY`: the values' lengths as `DELTA_BINARY_PACKED` `INT32`s
//!   ([`super::int_column`]'s `delta_binary_packed`), then their bytes;
//! - `DELTA_BYTE_ARRAY`: the length of the prefix each value shares with the one before it
//!   in the page, then the length of the rest (both `DELTA_BINARY_PACKED`), then the rests.
//!
//! Page bounds compare each value's first eight bytes as one big-endian number, and only
//! values that tie there in full. A bloom filter, where the schema asks for one, gets each
//! value as parquet-rs's would.
//!
//! Pages end at `data_page_row_count_limit` rows, or earlier, after the value that brings the
//! page's value bytes to `data_page_size_limit` (parquet-rs checks its estimate after each
//! mini-batch instead, so with such large values the pages differ by where they end). Below
//! that limit, the chunk is the one [`parquet::arrow::ArrowWriter`] writes for the same rows
//! (written as one batch with `data_page_row_count_limit` as the write batch size); the tests
//! compare files byte for byte.

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use parquet::basic::{Encoding, LogicalType, Type as PhysicalType};
use parquet::bloom_filter::Sbbf;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{
    Bounds, Chunk, ChunkBuilder, PageInfo, byte_array_index, byte_array_statistics, flat,
    replicable, write_levels,
};
use super::int_column::delta_binary_packed;
use super::writer::Selection;
use crate::error::Result;

/// Whether [`encode`] writes column `descr` of Arrow type `data_type` under `props`: a
/// top-level `Utf8` column without dictionary, in `DELTA_LENGTH_BYTE_ARRAY` or
/// `DELTA_BYTE_ARRAY`, with page statistics and the page index, in data page v1, without page
/// header statistics or content-defined chunking.
pub fn eligible(descr: &ColumnDescPtr, data_type: &DataType, props: &WriterProperties) -> bool {
    let path = descr.path();
    *data_type == DataType::Utf8
        && descr.physical_type() == PhysicalType::BYTE_ARRAY
        && flat(descr)
        && !props.dictionary_enabled(path)
        && matches!(
            props.encoding(path),
            Some(Encoding::DELTA_LENGTH_BYTE_ARRAY | Encoding::DELTA_BYTE_ARRAY)
        )
        && replicable(descr, props)
}

/// A page's values as they are gathered.
#[derive(Default)]
struct PageValues<'a> {
    rows: usize,
    /// Each row's definition level (nullable columns only).
    levels: Vec<u8>,
    /// The non-null values' lengths (`DELTA_BYTE_ARRAY`: of what follows the shared prefix).
    lengths: Vec<i32>,
    /// `DELTA_BYTE_ARRAY`: the length of the prefix each value shares with the one before.
    prefixes: Vec<i32>,
    /// The values' bytes (`DELTA_BYTE_ARRAY`: past the shared prefix).
    bytes: Vec<u8>,
    /// The last value (`DELTA_BYTE_ARRAY` compares the next one with it).
    last: &'a [u8],
    /// Bytes of the non-null values.
    value_bytes: i64,
    min: Option<Bound<'a>>,
    max: Option<Bound<'a>>,
}

/// A value with its first eight bytes as a big-endian number (zero-padded): values compare
/// as their prefixes do, unless the prefixes are equal.
#[derive(Clone, Copy)]
struct Bound<'a> {
    prefix: u64,
    value: &'a [u8],
}

#[inline]
fn prefix(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    u64::from_be_bytes(b)
}

impl<'a> PageValues<'a> {
    /// Empty, for the next page (keeping the buffers).
    fn clear(&mut self) {
        self.rows = 0;
        self.levels.clear();
        self.lengths.clear();
        self.prefixes.clear();
        self.bytes.clear();
        self.last = &[];
        self.value_bytes = 0;
        self.min = None;
        self.max = None;
    }

    #[inline]
    fn push(&mut self, v: &'a [u8], delta: bool) {
        if delta {
            let shared = shared_prefix(self.last, v);
            self.prefixes.push(shared as i32);
            self.lengths.push((v.len() - shared) as i32);
            self.bytes.extend_from_slice(&v[shared..]);
            self.last = v;
        } else {
            self.lengths.push(v.len() as i32);
            self.bytes.extend_from_slice(v);
        }
        self.value_bytes += v.len() as i64;
        let p = prefix(v);
        match &mut self.min {
            Some(m) if p > m.prefix || (p == m.prefix && v >= m.value) => {}
            min => {
                *min = Some(Bound {
                    prefix: p,
                    value: v,
                })
            }
        }
        match &mut self.max {
            Some(m) if p < m.prefix || (p == m.prefix && v <= m.value) => {}
            max => {
                *max = Some(Bound {
                    prefix: p,
                    value: v,
                })
            }
        }
    }
}

/// Bytes `a` and `b` start with in common (at most 2^31 - 1, as the encoding stores it).
#[inline]
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len()).min(i32::MAX as usize);
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"))
            ^ u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Column `col` of the rows `sels` select from `batches`, in order, as one column chunk of
/// `descr` under `props` (which [`eligible`] accepted), or `None` when a batch holds the
/// column as another type than `Utf8`, or NULLs where the column allows none.
pub fn encode(
    batches: &[&RecordBatch],
    sels: &[Selection],
    col: usize,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<Chunk>> {
    let columns: Vec<&arrow::array::StringArray> = match batches
        .iter()
        .map(|b| b.column(col).as_string_opt::<i32>())
        .collect::<Option<_>>()
    {
        Some(c) => c,
        None => return Ok(None),
    };
    let path = descr.path();
    let nullable = descr.max_def_level() > 0;
    if !nullable && columns.iter().any(|c| c.null_count() > 0) {
        return Ok(None);
    }
    if sels.iter().all(Selection::is_empty) {
        return Ok(None);
    }
    let page_rows = props.data_page_row_count_limit().max(1);
    let page_bytes = props.column_data_page_size_limit(path) as i64;
    let delta = props.encoding(path) == Some(Encoding::DELTA_BYTE_ARRAY);
    let utf8 = descr.logical_type_ref() == Some(&LogicalType::String);
    let mut bloom = match props.bloom_filter_properties(path) {
        Some(p) => Some((Sbbf::new_with_ndv_fpp(p.ndv(), p.fpp())?, p.fpp())),
        None => None,
    };
    let mut chunk = ChunkBuilder::new(descr, props)?;
    let mut bounds: Bounds<&[u8]> = Bounds::new();
    let mut page = PageValues::default();
    for sel in sels {
        for &(b, start, end) in sel.runs() {
            let column = columns[b];
            let (offsets, data) = (column.value_offsets(), column.value_data());
            let nulls = column.nulls().filter(|n| n.null_count() > 0);
            for r in start..end {
                let valid = nulls.is_none_or(|n| n.is_valid(r));
                if nullable {
                    page.levels.push(u8::from(valid));
                }
                if valid {
                    let v = &data[offsets[r] as usize..offsets[r + 1] as usize];
                    if let Some((bloom, _)) = bloom.as_mut() {
                        bloom.insert(v);
                    }
                    page.push(v, delta);
                }
                page.rows += 1;
                if page.rows == page_rows || page.value_bytes >= page_bytes {
                    write_page(&mut chunk, &page, &mut bounds, props, delta, utf8)?;
                    page.clear();
                }
            }
        }
    }
    if page.rows > 0 {
        write_page(&mut chunk, &page, &mut bounds, props, delta, utf8)?;
    }
    let statistics = byte_array_statistics(props, &bounds, chunk.nulls(), utf8);
    let mut out = chunk.finish(bounds.order(), statistics)?;
    if let Some((mut bloom, fpp)) = bloom {
        bloom.fold_to_target_fpp(fpp);
        out.close.bloom_filter = Some(bloom);
    }
    Ok(Some(out))
}

/// Encode `page` as the chunk's next data page.
fn write_page<'a>(
    chunk: &mut ChunkBuilder,
    page: &PageValues<'a>,
    bounds: &mut Bounds<&'a [u8]>,
    props: &WriterProperties,
    delta: bool,
    utf8: bool,
) -> Result<()> {
    let nulls = (page.rows - page.lengths.len()) as u64;
    let mut buf =
        Vec::with_capacity(64 + page.rows / 8 + page.lengths.len() * 10 + page.bytes.len());
    let hist = write_levels(&mut buf, &page.levels, page.rows, nulls, chunk.max_def());
    if delta {
        delta_binary_packed(&page.prefixes, &mut buf);
    }
    delta_binary_packed(&page.lengths, &mut buf);
    buf.extend_from_slice(&page.bytes);
    let min_max = page.min.zip(page.max).map(|(min, max)| {
        bounds.page(min.value, max.value);
        byte_array_index(props, min.value, max.value, utf8)
    });
    let info = PageInfo {
        rows: page.rows,
        levels: page.rows,
        nulls,
        encoding: if delta {
            Encoding::DELTA_BYTE_ARRAY
        } else {
            Encoding::DELTA_LENGTH_BYTE_ARRAY
        },
        min_max,
        hist,
        rep_hist: None,
        value_bytes: Some(page.value_bytes),
    };
    chunk.data_page(buf, info)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
    use parquet::schema::types::ColumnPath;
    use proptest::prelude::*;

    use super::super::dict_column::tests::{Values, both, interleaved, read, value};
    use super::*;

    fn props(
        rows_per_page: usize,
        delta: bool,
        zstd: bool,
        bloom: bool,
        stats: Option<usize>,
    ) -> WriterProperties {
        let path = ColumnPath::from("s");
        let encoding = if delta {
            Encoding::DELTA_BYTE_ARRAY
        } else {
            Encoding::DELTA_LENGTH_BYTE_ARRAY
        };
        let b = WriterProperties::builder()
            .set_data_page_row_count_limit(rows_per_page)
            .set_compression(if zstd {
                Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
            } else {
                Compression::UNCOMPRESSED
            })
            .set_statistics_truncate_length(stats)
            .set_column_index_truncate_length(stats.map(|s| s + 3))
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path.clone(), encoding);
        if bloom {
            b.set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_fpp(path.clone(), 0.02)
                .set_column_bloom_filter_max_ndv(path, 500)
                .build()
        } else {
            b.build()
        }
    }

    /// `encode` writes every group (rather than leaving it to parquet-rs).
    fn written_here(
        nullable: bool,
        batches: &[Values],
        groups: &[Vec<Selection>],
        props: &WriterProperties,
    ) -> bool {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, nullable)]));
        let batches: Vec<RecordBatch> = (batches.iter())
            .map(|v| {
                let a: ArrayRef = Arc::new(StringArray::from(v.clone()));
                RecordBatch::try_new(schema.clone(), vec![a]).unwrap()
            })
            .collect();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let descr = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema)
            .unwrap()
            .column(0);
        eligible(&descr, &DataType::Utf8, props)
            && groups.iter().all(|sels| {
                let chunk = encode(&refs, sels, 0, &descr, props).unwrap();
                chunk.is_some() || sels.iter().all(Selection::is_empty)
            })
    }

    /// Ids as the access-log parser makes them: hex, sharing prefixes (row ids), some NULL.
    fn ids(batches: usize, rows: usize) -> Vec<Values> {
        (0..batches)
            .map(|b| {
                (0..rows)
                    .map(|i| {
                        let id = format!("{:016X}{:x}", (i * 2_654_435_761) % (1 << 40), i + b);
                        (i % 9 != b).then(|| id[..((i % 23) + 2).min(id.len())].to_string())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_day_of_ids_is_written_byte_for_byte_as_arrow_writer_writes_it() {
        let batches = ids(3, 5000);
        let groups = interleaved(&batches, 700, 4);
        for nullable in [true, false] {
            let batches: Vec<Values> = (batches.iter())
                .map(|v| {
                    v.iter()
                        .map(|s| s.clone().or_else(|| (!nullable).then(String::new)))
                        .collect()
                })
                .collect();
            for (delta, zstd, bloom) in [
                (false, true, true),
                (true, true, false),
                (false, false, false),
            ] {
                let props = props(1000, delta, zstd, bloom, Some(8));
                assert!(written_here(nullable, &batches, &groups, &props));
                let (got, want) = both(nullable, &batches, &[], &groups, props);
                assert!(
                    got == want,
                    "nullable {nullable} delta {delta} zstd {zstd} bloom {bloom}: files differ"
                );
            }
        }
    }

    /// Pages end once their values reach the data page size limit, and hold what was written.
    #[test]
    fn large_values_end_pages_at_the_byte_limit() {
        let batches: Vec<Values> = vec![
            (0..300)
                .map(|i| Some(format!("{i:05}-").repeat(40 + i % 7)))
                .collect(),
        ];
        let groups = interleaved(&batches, 50, 10);
        for delta in [false, true] {
            let props = props(1000, delta, true, false, None)
                .into_builder()
                .set_data_page_size_limit(8 << 10)
                .build();
            assert!(written_here(false, &batches, &groups, &props));
            let (got, want) = both(false, &batches, &[], &groups, props);
            assert_eq!(read(got.clone()), read(want));
            let options = ReadOptionsBuilder::new().with_page_index().build();
            let reader =
                SerializedFileReader::new_with_options(bytes::Bytes::from(got), options).unwrap();
            let meta = reader.metadata();
            let index = meta.offset_index().expect("offset index")[0][0].page_locations();
            // 300 values of 240 to 420 bytes: 8 KiB pages of 20 to 35 rows.
            assert!(index.len() >= 300 / 35, "{} pages", index.len());
            let rows: Vec<i64> = index
                .windows(2)
                .map(|w| w[1].first_row_index - w[0].first_row_index)
                .collect();
            assert!(rows.iter().all(|&r| (20..=35).contains(&r)), "{rows:?}");
        }
    }

    #[test]
    fn shared_prefix_is_the_common_start() {
        for (a, b, n) in [
            ("", "", 0),
            ("abc", "abd", 2),
            ("abcdefghij", "abcdefghij", 10),
            ("abcdefghijkl", "abcdefghXjkl", 8),
            ("abcdefgh", "abcdefghij", 8),
            ("abcdefghijklmnopq", "abcdefghijklmnopQ", 16),
        ] {
            assert_eq!(shared_prefix(a.as_bytes(), b.as_bytes()), n, "{a} {b}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any strings, nulls, page sizes, truncation lengths, row orders and both encodings,
        /// with and without a bloom filter: the same file.
        #[test]
        fn same_file_as_arrow_writer(
            nullable in any::<bool>(),
            all_null in proptest::bool::weighted(0.1),
            batches in proptest::collection::vec(proptest::collection::vec(value(), 0..120), 1..4),
            run in 1usize..40,
            group in 1usize..6,
            rows_per_page in 1usize..50,
            delta in any::<bool>(),
            zstd in any::<bool>(),
            bloom in any::<bool>(),
            stats in proptest::option::of(1usize..70),
        ) {
            let batches: Vec<Values> = batches
                .into_iter()
                .map(|v| v.into_iter().map(|s| match (nullable, all_null) {
                    (true, true) => None,
                    (true, false) => s,
                    (false, _) => Some(s.unwrap_or_default()),
                }).collect())
                .collect();
            let groups: Vec<Vec<Selection>> = interleaved(&batches, run, group)
                .into_iter()
                .filter(|g| g.iter().any(|s| !s.is_empty()))
                .collect();
            prop_assume!(!groups.is_empty());
            let props = props(rows_per_page, delta, zstd, bloom, stats);
            prop_assert!(written_here(nullable, &batches, &groups, &props));
            let (got, want) = both(nullable, &batches, &[], &groups, props);
            prop_assert!(got == want, "files differ");
        }
    }
}
