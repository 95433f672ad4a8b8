//! Integer and timestamp column chunks, written without parquet-rs's column writer.
//!
//! A log table's numbers (status codes, byte counts, times) are few columns but many values:
//! through parquet-rs's Arrow writer each is gathered into one array first, then written a
//! mini-batch at a time with statistics, levels and an encoder call per value, which was
//! about a twelfth of an access-log ingest's instructions. [`encode`] writes the same column
//! chunk straight from the batches a file's rows come from, as [`super::dict_column`] does for
//! strings: the values are copied once, in the rows' time order ([`Selection`]), then each
//! page is encoded in one pass:
//!
//! - with a dictionary (the schema's default): a PLAIN dictionary page of the distinct values
//!   in the order rows first use them, and `RLE_DICTIONARY` keys at the bit width of the
//!   dictionary so far ([`rle`]);
//! - without one, `DELTA_BINARY_PACKED` (the writer's choice for sizes and times): blocks of
//!   four miniblocks (32 values for `INT32`, 64 for `INT64`), each value's delta from the one
//!   before less the block's smallest, bit-packed at the miniblock's width.
//!
//! The chunk is the one [`parquet::arrow::ArrowWriter`] writes for the same rows (written as
//! one batch with `data_page_row_count_limit` as the write batch size): same pages, RLE
//! definition levels, data page v1, statistics, column index, offset index and level
//! histograms. The tests compare files byte for byte. Columns it does not cover
//! ([`eligible`]) go through parquet-rs as before.

use std::borrow::Cow;
use std::hash::Hash;

use arrow::array::{Array, ArrayData};
use arrow::datatypes::{ArrowNativeType, DataType, TimeUnit, ToByteSlice};
use arrow::record_batch::RecordBatch;
use foldhash::fast::FixedState;
use parquet::basic::{Encoding, SortOrder, Type as PhysicalType};
use parquet::file::properties::WriterProperties;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{Bounds, Chunk, ChunkBuilder, PageInfo, flat, replicable, write_levels};
use super::rle;
use super::writer::Selection;
use crate::error::Result;

/// Whether [`encode`] writes column `descr` of Arrow type `data_type` under `props`: a
/// top-level `Int32`, `Int64` or microsecond timestamp column (signed order), with dictionary
/// encoding or else `DELTA_BINARY_PACKED`, page statistics and the page index, in data page
/// v1, without bloom filter, page header statistics or content-defined chunking.
pub fn eligible(descr: &ColumnDescPtr, data_type: &DataType, props: &WriterProperties) -> bool {
    let path = descr.path();
    let typed = matches!(
        (data_type, descr.physical_type()),
        (DataType::Int32, PhysicalType::INT32)
            | (
                DataType::Int64 | DataType::Timestamp(TimeUnit::Microsecond, _),
                PhysicalType::INT64
            )
    );
    typed
        && descr.sort_order() == SortOrder::SIGNED
        && flat(descr)
        && (props.dictionary_enabled(path)
            || props.encoding(path) == Some(Encoding::DELTA_BINARY_PACKED))
        && replicable(descr, props)
        && props.bloom_filter_properties(path).is_none()
        // A page's values always fit the data page size limit (9 bytes a value at most, with
        // the block headers), so pages end at the row count limit only.
        && 64 + 9 * props.data_page_row_count_limit() < props.column_data_page_size_limit(path)
}

/// The two physical integer types, as this module reads and writes them.
pub(super) trait Int: ArrowNativeType + Ord + Hash {
    /// Values in a `DELTA_BINARY_PACKED` miniblock.
    const MINIBLOCK: usize;
    fn widen(self) -> i64;
    /// `self - prev` wrapping at this type's width, as parquet-rs's delta encoder computes it.
    fn delta(self, prev: Self) -> i64;
    /// `max - min` of two deltas, as the unsigned number the miniblock packs.
    fn spread(max: i64, min: i64) -> u64;
    fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics;
}

impl Int for i32 {
    const MINIBLOCK: usize = 32;
    fn widen(self) -> i64 {
        i64::from(self)
    }
    fn delta(self, prev: Self) -> i64 {
        i64::from(self.wrapping_sub(prev))
    }
    fn spread(max: i64, min: i64) -> u64 {
        u64::from((max as i32).wrapping_sub(min as i32) as u32)
    }
    fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics {
        Statistics::Int32(
            ValueStatistics::new(min, max, None, Some(nulls), false)
                .with_backwards_compatible_min_max(true),
        )
    }
}

impl Int for i64 {
    const MINIBLOCK: usize = 64;
    fn widen(self) -> i64 {
        self
    }
    fn delta(self, prev: Self) -> i64 {
        self.wrapping_sub(prev)
    }
    fn spread(max: i64, min: i64) -> u64 {
        max.wrapping_sub(min) as u64
    }
    fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics {
        Statistics::Int64(
            ValueStatistics::new(min, max, None, Some(nulls), false)
                .with_backwards_compatible_min_max(true),
        )
    }
}

/// What a data page holds.
#[derive(Default, Clone, Copy)]
struct PageSpan {
    /// Rows (levels).
    rows: usize,
    /// End of its values in the chunk's value list.
    values_end: usize,
}

/// Column `col` of the rows `sels` select from `batches`, in order, as one column chunk of
/// `descr` under `props` (which [`eligible`] accepted for `data_type`), or `None` when a batch
/// holds the column as another type, or NULLs where the column allows none.
pub fn encode(
    batches: &[&RecordBatch],
    sels: &[Selection],
    col: usize,
    data_type: &DataType,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<Chunk>> {
    if !batches
        .iter()
        .all(|b| b.column(col).data_type() == data_type)
    {
        return Ok(None);
    }
    match descr.physical_type() {
        PhysicalType::INT32 => encode_typed::<i32>(batches, sels, col, descr, props),
        PhysicalType::INT64 => encode_typed::<i64>(batches, sels, col, descr, props),
        _ => Ok(None),
    }
}

fn encode_typed<T: Int>(
    batches: &[&RecordBatch],
    sels: &[Selection],
    col: usize,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<Chunk>> {
    let page_rows = props.data_page_row_count_limit().max(1);
    let nullable = descr.max_def_level() > 0;
    let rows: usize = sels.iter().map(Selection::rows).sum();
    let mut values: Vec<T> = Vec::with_capacity(rows);
    // Each row's definition level (nullable columns only), as the data pages encode them.
    let mut levels: Vec<u8> = Vec::with_capacity(if nullable { rows } else { 0 });
    let mut pages: Vec<PageSpan> = Vec::new();
    let mut page = PageSpan::default();
    // Each batch's column, looked up once, on first use.
    let mut views: Vec<Option<ArrayData>> = vec![None; batches.len()];
    for sel in sels {
        for &(b, start, end) in sel.runs() {
            let data = views[b].get_or_insert_with(|| batches[b].column(col).to_data());
            let column: &[T] = data.buffer::<T>(0);
            let nulls = data.nulls().filter(|n| n.null_count() > 0);
            if nulls.is_some() && !nullable {
                return Ok(None);
            }
            // The run in pieces that end at page ends.
            let mut r = start;
            while r < end {
                let n = (end - r).min(page_rows - page.rows);
                match nulls {
                    None => {
                        values.extend_from_slice(&column[r..r + n]);
                        if nullable {
                            levels.extend(std::iter::repeat_n(1, n));
                        }
                    }
                    Some(valid) => {
                        for (i, &v) in column.iter().enumerate().take(r + n).skip(r) {
                            let is_valid = valid.is_valid(i);
                            levels.push(u8::from(is_valid));
                            if is_valid {
                                values.push(v);
                            }
                        }
                    }
                }
                r += n;
                page.rows += n;
                if page.rows == page_rows {
                    page.values_end = values.len();
                    pages.push(page);
                    page = PageSpan::default();
                }
            }
        }
    }
    if page.rows > 0 {
        page.values_end = values.len();
        pages.push(page);
    }
    if pages.is_empty() {
        return Ok(None);
    }
    let path = descr.path();
    if !props.dictionary_enabled(path) {
        return write_chunk(descr, props, None, &values, &levels, &pages).map(Some);
    }
    // Each value's key, in the order rows first use them.
    let mut dict = Dictionary::<T>::default();
    let keys: Vec<u32> = values.iter().map(|&v| dict.intern(v)).collect();
    // parquet-rs falls back to plain pages once the dictionary page reaches its limit.
    if dict.values.len() * T::get_byte_width() >= props.column_dictionary_page_size_limit(path) {
        return Ok(None);
    }
    write_chunk(descr, props, Some((&dict, &keys)), &values, &levels, &pages).map(Some)
}

/// Values below this are looked up in a table instead of hashed: status codes, and the
/// milliseconds of most requests' times.
const SMALL: usize = 4096;

/// A chunk's distinct values in key order, and their keys.
struct Dictionary<T> {
    values: Vec<T>,
    /// The key of each value in `0..SMALL`, `u32::MAX` for none yet.
    small: Vec<u32>,
    table: hashbrown::HashMap<T, u32, FixedState>,
}

impl<T: Int> Default for Dictionary<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            small: vec![u32::MAX; SMALL],
            table: hashbrown::HashMap::with_hasher(FixedState::with_seed(0x5ec1a4e)),
        }
    }
}

impl<T: Int> Dictionary<T> {
    #[inline]
    fn intern(&mut self, v: T) -> u32 {
        let next = self.values.len() as u32;
        let key = match self.small.get_mut(v.widen() as u64 as usize) {
            Some(key) => {
                if *key == u32::MAX {
                    *key = next;
                }
                *key
            }
            None => *self.table.entry(v).or_insert(next),
        };
        if key == next {
            self.values.push(v);
        }
        key
    }
}

fn write_chunk<T: Int>(
    descr: &ColumnDescPtr,
    props: &WriterProperties,
    dict: Option<(&Dictionary<T>, &[u32])>,
    values: &[T],
    levels: &[u8],
    pages: &[PageSpan],
) -> Result<Chunk> {
    let max_def = descr.max_def_level();
    let mut chunk = ChunkBuilder::new(descr, props)?;
    // With a dictionary, its page first: the values, PLAIN.
    if let Some((dict, _)) = dict {
        let plain = Cow::Borrowed(dict.values.to_byte_slice());
        chunk.dictionary_page(
            plain,
            dict.values.len(),
            props.dictionary_page_encoding(),
            false,
        )?;
    }
    let mut bounds = Bounds::new();
    let (mut rows, mut start) = (0usize, 0usize);
    // Dictionary entries so far: a page's keys are packed at the width of those it has seen.
    let mut seen_entries = 0usize;
    for page in pages {
        let page_values = &values[start..page.values_end];
        let nulls = (page.rows - page_values.len()) as u64;
        let mut buf = Vec::with_capacity(64 + page.rows / 8 + page_values.len() * 9);
        let page_levels = levels.get(rows..rows + page.rows).unwrap_or_default();
        let hist = write_levels(&mut buf, page_levels, page.rows, nulls, max_def);
        let encoding = match dict {
            Some((_, keys)) => {
                let page_keys = &keys[start..page.values_end];
                seen_entries = page_keys
                    .iter()
                    .fold(seen_entries, |m, &k| m.max(k as usize + 1));
                rle::encode_keys(page_keys, seen_entries, &mut buf);
                Encoding::RLE_DICTIONARY
            }
            None => {
                delta_binary_packed(page_values, &mut buf);
                Encoding::DELTA_BINARY_PACKED
            }
        };
        start = page.values_end;
        rows += page.rows;
        // Two plain passes (vectorized) rather than one carrying an `Option` per value.
        let min_max = page_values.iter().min().zip(page_values.iter().max());
        let min_max = min_max.map(|(&min, &max)| {
            bounds.page(min, max);
            (min.to_byte_slice().to_vec(), max.to_byte_slice().to_vec())
        });
        let info = PageInfo {
            rows: page.rows,
            levels: page.rows,
            nulls,
            encoding,
            min_max,
            hist,
            rep_hist: None,
            value_bytes: None,
        };
        chunk.data_page(buf, info)?;
    }
    let statistics = T::statistics(bounds.min, bounds.max, chunk.nulls());
    chunk.finish(bounds.order(), statistics)
}

/// Miniblocks in a `DELTA_BINARY_PACKED` block (parquet-rs's choice).
const MINIBLOCKS: usize = 4;

/// Append `values` as a `DELTA_BINARY_PACKED` page body, the bytes parquet-rs's
/// `DeltaBitPackEncoder` writes for them: the header (block size, miniblocks per block, value
/// count, first value), then for each block of deltas its smallest delta, the four miniblocks'
/// bit widths and the miniblocks, each delta less the smallest packed least significant bit
/// first and the last miniblock padded with zeros (miniblocks past the last delta: width 0, no
/// bytes).
pub(super) fn delta_binary_packed<T: Int>(values: &[T], out: &mut Vec<u8>) {
    let block = T::MINIBLOCK * MINIBLOCKS;
    rle::vlq(out, block as u64);
    rle::vlq(out, MINIBLOCKS as u64);
    rle::vlq(out, values.len() as u64);
    zigzag(out, values.first().map_or(0, |v| v.widen()));
    let mut deltas = vec![0i64; block];
    // The deltas of every value after the first, a block at a time.
    for start in (1..values.len()).step_by(block) {
        let n = block.min(values.len() - start);
        for (i, d) in deltas[..n].iter_mut().enumerate() {
            *d = values[start + i].delta(values[start + i - 1]);
        }
        let deltas = &deltas[..n];
        let min = *deltas.iter().min().expect("a block has a delta");
        zigzag(out, min);
        let widths = out.len();
        out.extend_from_slice(&[0; MINIBLOCKS]);
        for (m, mini) in deltas.chunks(T::MINIBLOCK).enumerate() {
            let max = *mini.iter().max().expect("a miniblock has a delta");
            let width = rle::bit_width(T::spread(max, min));
            out[widths + m] = width;
            let packed = mini.iter().map(|&d| T::spread(d, min));
            let padding = std::iter::repeat_n(0, T::MINIBLOCK - mini.len());
            pack(out, packed.chain(padding), width);
        }
    }
}

/// Append `values`, each below `2^width`, bit-packed least significant bit first; a whole
/// number of bytes (a miniblock's values times its width is a multiple of 8).
#[inline]
fn pack(out: &mut Vec<u8>, values: impl Iterator<Item = u64>, width: u8) {
    if width == 0 {
        return;
    }
    let width = u32::from(width);
    let (mut acc, mut bits) = (0u64, 0u32);
    for v in values {
        acc |= v << bits;
        bits += width;
        if bits >= 64 {
            out.extend_from_slice(&acc.to_le_bytes());
            bits -= 64;
            acc = if bits == 0 { 0 } else { v >> (width - bits) };
        }
    }
    out.extend_from_slice(&acc.to_le_bytes()[..bits.div_ceil(8) as usize]);
}

/// `v` zigzag-encoded (small magnitudes of either sign small), as a VLQ.
fn zigzag(out: &mut Vec<u8>, v: i64) {
    rle::vlq(out, ((v << 1) ^ (v >> 63)) as u64);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::schema::types::ColumnPath;
    use proptest::prelude::*;

    use super::super::dict_column::tests::{arrow_writer_file, interleaved_rows, read};
    use super::super::writer::encode_groups;
    use super::*;

    /// A column of `data_type` holding `values` (`None` is a null).
    fn array(data_type: &DataType, values: &[Option<i64>]) -> ArrayRef {
        match data_type {
            DataType::Int32 => Arc::new(Int32Array::from_iter(
                values.iter().map(|v| v.map(|v| v as i32)),
            )),
            DataType::Int64 => Arc::new(Int64Array::from_iter(values.iter().copied())),
            _ => Arc::new(
                TimestampMicrosecondArray::from_iter(values.iter().copied()).with_timezone("UTC"),
            ),
        }
    }

    fn props(rows_per_page: usize, zstd: bool, dictionary: bool) -> WriterProperties {
        let path = ColumnPath::from("n");
        let b = WriterProperties::builder()
            .set_data_page_row_count_limit(rows_per_page)
            .set_compression(if zstd {
                Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
            } else {
                Compression::UNCOMPRESSED
            })
            .set_column_dictionary_enabled(path.clone(), dictionary);
        if dictionary {
            b.build()
        } else {
            b.set_column_encoding(path, Encoding::DELTA_BINARY_PACKED)
                .build()
        }
    }

    /// The file `encode_groups` writes (this module's chunks) and the one `ArrowWriter` writes
    /// for the same rows, one batch per row group, cutting pages at the same rows.
    fn both(
        data_type: &DataType,
        nullable: bool,
        batches: &[Vec<Option<i64>>],
        groups: &[Vec<Selection>],
        props: WriterProperties,
    ) -> (Vec<u8>, Vec<u8>) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "n",
            data_type.clone(),
            nullable,
        )]));
        let batches: Vec<RecordBatch> = batches
            .iter()
            .map(|v| RecordBatch::try_new(schema.clone(), vec![array(data_type, v)]).unwrap())
            .collect();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let descr = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema)
            .unwrap()
            .column(0);
        assert!(eligible(&descr, data_type, &props), "{data_type} eligible");
        for sels in groups {
            let chunk = encode(&refs, sels, 0, data_type, &descr, &props).unwrap();
            assert!(chunk.is_some(), "written by this module, not parquet-rs");
        }
        let mut got = Vec::new();
        encode_groups(&mut got, &schema, props.clone(), &refs, groups).unwrap();

        let want = arrow_writer_file(&schema, &refs, groups, props, |c| c);
        (got, want)
    }

    fn types() -> [DataType; 3] {
        [
            DataType::Int32,
            DataType::Int64,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ]
    }

    #[test]
    fn a_day_of_numbers_is_written_byte_for_byte_as_arrow_writer_writes_it() {
        // Times a second or so apart (mostly ascending), sizes of every width, status codes.
        let batches: Vec<Vec<Option<i64>>> = (0..3i64)
            .map(|b| {
                (0..5000i64)
                    .map(|i| {
                        let v = match b {
                            0 => 1_588_000_000_000_000 + i * 1_000_123 - (i % 7) * 3_000_000,
                            1 => (i * 7919) % (1 << (i % 40)),
                            _ => [200, 404, 403, 200, 304][(i % 5) as usize],
                        };
                        (i % 11 != b).then_some(v)
                    })
                    .collect()
            })
            .collect();
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        let groups = interleaved_rows(&lens, 700, 4);
        for data_type in types() {
            for nullable in [true, false] {
                let batches: Vec<Vec<Option<i64>>> = (batches.iter())
                    .map(|v| v.iter().map(|n| n.or((!nullable).then_some(0))).collect())
                    .collect();
                for (zstd, dictionary) in [(true, true), (false, false), (true, false)] {
                    let props = props(1000, zstd, dictionary);
                    let (got, want) = both(&data_type, nullable, &batches, &groups, props);
                    assert!(
                        got == want,
                        "{data_type} nullable {nullable} zstd {zstd} dictionary {dictionary}: \
                         files differ"
                    );
                }
            }
        }
    }

    /// Values at the ends of each type's range, whose deltas wrap.
    #[test]
    fn extreme_values_are_written_as_arrow_writer_writes_them() {
        let ends = [i64::MIN, i64::MAX, 0, -1, i32::MIN as i64, i32::MAX as i64];
        let values: Vec<Option<i64>> = (0..600).map(|i| Some(ends[(i * 5) % 6])).collect();
        let groups = interleaved_rows(&[values.len()], 600, 1);
        for data_type in types() {
            for dictionary in [true, false] {
                let (got, want) = both(
                    &data_type,
                    false,
                    std::slice::from_ref(&values),
                    &groups,
                    props(1000, false, dictionary),
                );
                assert!(
                    got == want,
                    "{data_type} dictionary {dictionary}: files differ"
                );
            }
        }
    }

    fn value() -> impl Strategy<Value = Option<i64>> {
        prop_oneof![
            1 => Just(None),
            3 => (-3i64..300).prop_map(Some),
            2 => any::<i64>().prop_map(Some),
            2 => (0i64..1 << 40).prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any numbers, nulls, page sizes and row orders, with and without a dictionary: the
        /// same file.
        #[test]
        fn same_file_as_arrow_writer(
            ty in 0usize..3,
            nullable in any::<bool>(),
            all_null in proptest::bool::weighted(0.1),
            batches in proptest::collection::vec(proptest::collection::vec(value(), 0..700), 1..4),
            run in 1usize..300,
            group in 1usize..6,
            rows_per_page in 1usize..400,
            zstd in any::<bool>(),
            dictionary in any::<bool>(),
        ) {
            let batches: Vec<Vec<Option<i64>>> = batches
                .into_iter()
                .map(|v| v.into_iter().map(|n| match (nullable, all_null) {
                    (true, true) => None,
                    (true, false) => n,
                    (false, _) => Some(n.unwrap_or_default()),
                }).collect())
                .collect();
            let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
            let groups: Vec<Vec<Selection>> = interleaved_rows(&lens, run, group)
                .into_iter()
                .filter(|g| g.iter().any(|s| !s.is_empty()))
                .collect();
            prop_assume!(!groups.is_empty());
            let data_type = &types()[ty];
            let (got, want) = both(
                data_type, nullable, &batches, &groups, props(rows_per_page, zstd, dictionary),
            );
            prop_assert!(got == want, "files differ");
            let rows: usize = read(got).iter().map(RecordBatch::num_rows).sum();
            prop_assert_eq!(rows, lens.iter().sum::<usize>());
        }
    }
}
