//! Dictionary-encoded string column chunks, written without parquet-rs's column writer.
//!
//! Strings are most of what a log table stores, and parquet-rs's Arrow writer spends most of
//! an ingest's encoding time on them (BENCHMARKS.md): it takes the rows of a column gathered
//! into one array, lists the non-null rows, compares every value with the page's minimum and
//! maximum, and interns every value into its dictionary. [`encode`] writes the same column
//! chunk straight from the batches a file's rows come from, following the rows' time order
//! ([`Selection`]): each value is interned once (foldhash, a table of `u32` keys), page minima
//! and maxima compare each dictionary entry once per page instead of each row, and nothing is
//! gathered or copied first.
//!
//! The chunk is the one [`parquet::arrow::ArrowWriter`] writes for the same rows (written as
//! one batch with `data_page_row_count_limit` as the write batch size): same dictionary page,
//! same data pages (`RLE_DICTIONARY` keys at the bit width of the dictionary so far, RLE
//! definition levels, data page v1), same statistics, column index, offset index, level
//! histograms and byte counts. The tests compare files byte for byte. One difference: a
//! dictionary of `SORT_FROM` bytes or more is written in byte order, its keys renumbered
//! (and each page's at the bit width of the whole dictionary), which zstd compresses better;
//! those chunks are compared by what they hold. Columns it does not
//! cover ([`eligible`]) and chunks whose dictionary reaches the dictionary page limit
//! (parquet-rs would then fall back to plain pages) go through parquet-rs as before.

use std::borrow::Cow;
use std::hash::BuildHasher;

use arrow::array::{Array, AsArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Int32Type};
use arrow::record_batch::RecordBatch;
use foldhash::fast::FixedState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use parquet::basic::{Encoding, LogicalType, Type as PhysicalType};
use parquet::encodings::rle::RleEncoder;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{
    Bounds, Chunk, ChunkBuilder, PageInfo, byte_array_index, byte_array_statistics, flat,
    replicable, write_levels,
};
use super::rle;
use super::writer::Selection;
use crate::engine::dict_scan::dictionary_type;
use crate::error::Result;

/// Whether [`encode`] writes column `descr` of Arrow type `data_type` under `props`: a
/// top-level `Utf8` column with dictionary encoding, page statistics and the page index, in
/// data page v1, without bloom filter, page header statistics or content-defined chunking.
pub fn eligible(descr: &ColumnDescPtr, data_type: &DataType, props: &WriterProperties) -> bool {
    let path = descr.path();
    *data_type == DataType::Utf8
        && descr.physical_type() == PhysicalType::BYTE_ARRAY
        && flat(descr)
        && props.dictionary_enabled(path)
        && replicable(descr, props)
        && props.bloom_filter_properties(path).is_none()
        // A page's keys always fit the data page size limit (4 bytes a key at most).
        && 1 + RleEncoder::max_buffer_size(32, props.data_page_row_count_limit())
            < props.column_data_page_size_limit(path)
}

/// `a == b`, compared inline instead of through a `memcmp` call (whose dispatch costs more
/// than comparing a log's values): up to 16 bytes (versions, codes, operations, names) in two
/// overlapping loads, longer ones 16 bytes at a time.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let wide = |s: &[u8], i: usize| u128::from_le_bytes(s[i..i + 16].try_into().expect("16"));
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    match n {
        // Owners, requesters, agents, host headers: mostly 20 to 110 bytes, compared 16 at a
        // time (the last 16 overlapping) instead of through a `memcmp` call.
        17.. => {
            let mut i = 0;
            while i + 16 < n {
                if wide(a, i) != wide(b, i) {
                    return false;
                }
                i += 16;
            }
            wide(a, n - 16) == wide(b, n - 16)
        }
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
    }
}

/// The interned values of a column chunk: the dictionary page as it is written (PLAIN: each
/// value's length as a little-endian `u32`, then its bytes), in key order.
pub(super) struct Dictionary {
    pub(super) page: Vec<u8>,
    /// Start and length of each key's bytes in `page`.
    values: Vec<(u32, u32)>,
    hashes: Vec<u64>,
    table: HashTable<u32>,
    state: FixedState,
    /// Entries in byte order ([`Self::sort_large`]).
    pub(super) sorted: bool,
}

impl Dictionary {
    pub(super) fn new() -> Self {
        Self {
            page: Vec::new(),
            values: Vec::new(),
            hashes: Vec::new(),
            table: HashTable::new(),
            state: FixedState::with_seed(0x5ec1a4e),
            sorted: false,
        }
    }

    #[inline]
    fn get(&self, key: u32) -> &[u8] {
        let (start, len) = self.values[key as usize];
        &self.page[start as usize..(start + len) as usize]
    }

    #[inline]
    pub(super) fn intern(&mut self, value: &[u8]) -> u32 {
        debug_assert!(!self.sorted, "interned after sort_large");
        let hash = self.state.hash_one(value);
        let Self {
            page,
            values,
            hashes,
            table,
            ..
        } = self;
        let eq = |&k: &u32| {
            let (start, len) = values[k as usize];
            same(&page[start as usize..(start + len) as usize], value)
        };
        match table.entry(hash, eq, |&k| hashes[k as usize]) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let key = values.len() as u32;
                page.extend_from_slice(&(value.len() as u32).to_le_bytes());
                values.push((page.len() as u32, value.len() as u32));
                page.extend_from_slice(value);
                hashes.push(hash);
                e.insert(key);
                key
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    /// Entries a page's keys may refer to, for their bit width: those interned when the page
    /// ended (`at_page_end`, as parquet-rs writes them), or all once sorted (any page may then
    /// hold any key).
    pub(super) fn key_range(&self, at_page_end: usize) -> usize {
        if self.sorted { self.len() } else { at_page_end }
    }

    /// Put the entries in byte order when the page holds at least [`SORT_FROM`] bytes, and
    /// renumber `keys` (this dictionary's) to match; no value is interned after.
    pub(super) fn sort_large(&mut self, keys: &mut [u32]) {
        if self.page.len() < SORT_FROM {
            return;
        }
        // The values themselves beside their keys: comparisons go straight to `memcmp`.
        let mut entries: Vec<(&[u8], u32)> = (0..self.values.len() as u32)
            .map(|k| (self.get(k), k))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let order: Vec<u32> = entries.into_iter().map(|(_, k)| k).collect();
        let mut page = Vec::with_capacity(self.page.len());
        let mut values = Vec::with_capacity(order.len());
        let mut rank = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            let value = self.get(old);
            page.extend_from_slice(&(value.len() as u32).to_le_bytes());
            values.push((page.len() as u32, value.len() as u32));
            page.extend_from_slice(value);
            rank[old as usize] = new as u32;
        }
        for k in keys {
            *k = rank[*k as usize];
        }
        self.page = page;
        self.values = values;
        self.hashes = Vec::new();
        self.table = HashTable::new();
        self.sorted = true;
    }
}

/// Dictionary page size from which a chunk's dictionary is written in byte order instead of
/// the order rows first use its values (what parquet-rs writes). Neighbours in byte order share
/// prefixes zstd then finds, which outweighs keys that no longer grow with the rows. Measured
/// on the CloudTrail bench lake (200,000 generated records, zstd 1, keys included):
/// `requestparameters` 2.21 -> 1.42 MB, `resources` 2.21 -> 1.32 MB, `p_any_aws_arns` 3.20 ->
/// 2.31 MB, `additionaleventdata` 4.16 -> 3.96 MB, the lake 25.7 -> 23.1 MiB; on 1M generated
/// access-log lines `requesturi` 3.20 -> 2.81 MB. The sort (`memcmp` on each comparison; an
/// inline comparison, an eight-bytes-at-a-time radix sort and a multikey quicksort all cost
/// more, values sharing prefixes of up to a hundred bytes) is 3.7% of a
/// CloudTrail ingest's instructions (callgrind, 20 files, one thread: 99M of 2,679M) and about
/// 2% of one with every rule.
/// Smaller dictionaries gain too little to pay for it.
pub(super) const SORT_FROM: usize = 64 << 10;

/// What a data page holds, recorded while interning.
#[derive(Default, Clone, Copy)]
struct PageSpan {
    /// Rows (levels).
    rows: usize,
    /// End of its keys in the chunk's key list.
    keys_end: usize,
    /// Dictionary entries when the page ended (the keys' bit width).
    dict_len: usize,
    /// Bytes of its non-null values.
    value_bytes: i64,
}

/// Column `col` of the rows `sels` select from `batches`, in order, as one dictionary-encoded
/// column chunk of `descr` under `props` (which [`eligible`] accepted), or `None` when its
/// dictionary reaches the dictionary page limit or a batch holds the column as neither plain
/// strings nor a `Dictionary(Int32, Utf8)` of them.
pub fn encode(
    batches: &[&RecordBatch],
    sels: &[Selection],
    col: usize,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<Chunk>> {
    let path = descr.path();
    let page_rows = props.data_page_row_count_limit().max(1);
    let nullable = descr.max_def_level() > 0;
    let mut dict = Dictionary::new();
    let rows: usize = sels.iter().map(Selection::rows).sum();
    let mut keys: Vec<u32> = Vec::with_capacity(rows);
    // Each row's definition level, 1 when it holds a value (nullable columns only): the
    // levels the data pages encode, recorded as they are.
    let mut levels: Vec<u8> = Vec::with_capacity(if nullable { rows } else { 0 });
    let mut pages: Vec<PageSpan> = Vec::new();
    let mut page = PageSpan::default();
    let mut last: Option<u32> = None;
    // Each batch's column, looked up once (on first use: the row group may read few of the
    // batches): selections of many small inputs are tens of thousands of runs of a row or two,
    // so the work per run is kept to this lookup.
    //
    // A batch's column is plain strings, or a dictionary (the parser interned it): then each
    // of its keys is mapped to the chunk's key once, on first use (`remap`, `u32::MAX` until
    // then), and rows cost a lookup instead of hashing their value. Entries are interned in
    // the order rows first use them either way, so the chunk is the same.
    struct View<'a> {
        offsets: &'a [i32],
        data: &'a [u8],
        nulls: Option<&'a NullBuffer>,
        /// The dictionary's keys, for a dictionary column (`offsets` and `data` are its values).
        keys: Option<&'a [i32]>,
        remap: Vec<u32>,
    }
    // Any other column type goes through parquet-rs (which casts it to the table's type).
    let readable = |t: &DataType| *t == DataType::Utf8 || *t == dictionary_type();
    if !batches.iter().all(|b| readable(b.column(col).data_type())) {
        return Ok(None);
    }
    let mut views: Vec<Option<View>> = (0..batches.len()).map(|_| None).collect();
    for sel in sels {
        for &(b, start, end) in sel.runs() {
            let view = views[b].get_or_insert_with(|| {
                let column = batches[b].column(col);
                let nulls = column.nulls().filter(|n| n.null_count() > 0);
                match column.as_dictionary_opt::<Int32Type>() {
                    Some(d) => {
                        let values = d.values().as_string::<i32>();
                        View {
                            offsets: values.value_offsets(),
                            data: values.value_data(),
                            nulls,
                            keys: Some(d.keys().values()),
                            remap: vec![u32::MAX; values.len()],
                        }
                    }
                    None => {
                        let a = column.as_string::<i32>();
                        View {
                            offsets: a.value_offsets(),
                            data: a.value_data(),
                            nulls,
                            keys: None,
                            remap: Vec::new(),
                        }
                    }
                }
            });
            let View {
                offsets,
                data,
                nulls,
                keys: batch_keys,
                remap,
            } = view;
            let (offsets, data, nulls) = (*offsets, *data, *nulls);
            let value = |i: usize| &data[offsets[i] as usize..offsets[i + 1] as usize];
            // The run in pieces that end at page ends.
            let mut r = start;
            while r < end {
                let rows = (end - r).min(page_rows - page.rows);
                match batch_keys {
                    // A batch the parser interned: each of its keys mapped to the chunk's
                    // once. (Written out in both loops: as a closure over `keys` and `page`
                    // it cost 1% more instructions of an ingest.)
                    Some(batch_keys) => {
                        let batch_keys = &batch_keys[r..r + rows];
                        match nulls {
                            // Most pieces: no NULL, no check per row.
                            None => {
                                if nullable {
                                    levels.extend(std::iter::repeat_n(1, rows));
                                }
                                for &v in batch_keys {
                                    let v = v as usize;
                                    let mapped = &mut remap[v];
                                    if *mapped == u32::MAX {
                                        *mapped = dict.intern(value(v));
                                    }
                                    keys.push(*mapped);
                                    page.value_bytes += i64::from(offsets[v + 1] - offsets[v]);
                                }
                            }
                            Some(valid) => {
                                for (r, &v) in (r..r + rows).zip(batch_keys) {
                                    let is_valid = valid.is_valid(r);
                                    if nullable {
                                        levels.push(u8::from(is_valid));
                                    }
                                    if is_valid {
                                        let v = v as usize;
                                        let mapped = &mut remap[v];
                                        if *mapped == u32::MAX {
                                            *mapped = dict.intern(value(v));
                                        }
                                        keys.push(*mapped);
                                        page.value_bytes += i64::from(offsets[v + 1] - offsets[v]);
                                    }
                                }
                            }
                        }
                    }
                    None => {
                        for r in r..r + rows {
                            let is_valid = nulls.is_none_or(|m| m.is_valid(r));
                            if nullable {
                                levels.push(u8::from(is_valid));
                            }
                            if !is_valid {
                                continue;
                            }
                            let value = value(r);
                            // Neighbouring rows often repeat a value (constant `p_` columns,
                            // signature versions, owners): no hashing then.
                            let key = match last {
                                Some(k) if same(dict.get(k), value) => k,
                                _ => dict.intern(value),
                            };
                            last = Some(key);
                            keys.push(key);
                            page.value_bytes += value.len() as i64;
                        }
                    }
                }
                r += rows;
                page.rows += rows;
                if page.rows == page_rows {
                    page.keys_end = keys.len();
                    page.dict_len = dict.len();
                    pages.push(page);
                    page = PageSpan::default();
                }
            }
        }
    }
    // parquet-rs falls back to plain pages once the dictionary page reaches its limit; below
    // it at the end, it never did, and this chunk is the one it writes.
    if dict.page.len() >= props.column_dictionary_page_size_limit(path) {
        return Ok(None);
    }
    if page.rows > 0 {
        page.keys_end = keys.len();
        page.dict_len = dict.len();
        pages.push(page);
    }
    if pages.is_empty() {
        return Ok(None);
    }
    dict.sort_large(&mut keys);
    write_chunk(descr, props, &dict, &keys, &levels, &pages).map(Some)
}

/// Min and max of a page's values: those of its smallest and largest key when the dictionary
/// is sorted, otherwise comparing each distinct key once (`seen[k]` holds the number of the
/// last page key `k` was compared in).
pub(super) fn page_min_max<'a>(
    dict: &'a Dictionary,
    keys: &[u32],
    seen: &mut [u32],
    page_no: u32,
) -> Option<(&'a [u8], &'a [u8])> {
    if dict.sorted {
        let min = keys.iter().min()?;
        let max = keys.iter().max()?;
        return Some((dict.get(*min), dict.get(*max)));
    }
    let mut it = keys.iter();
    let first = *it.next()?;
    seen[first as usize] = page_no;
    let (mut min, mut max) = (dict.get(first), dict.get(first));
    for &k in it {
        if seen[k as usize] != page_no {
            seen[k as usize] = page_no;
            let v = dict.get(k);
            if v < min {
                min = v;
            } else if v > max {
                max = v;
            }
        }
    }
    Some((min, max))
}

fn write_chunk(
    descr: &ColumnDescPtr,
    props: &WriterProperties,
    dict: &Dictionary,
    keys: &[u32],
    levels: &[u8],
    pages: &[PageSpan],
) -> Result<Chunk> {
    let utf8 = descr.logical_type_ref() == Some(&LogicalType::String);
    let max_def = descr.max_def_level();
    let mut chunk = ChunkBuilder::new(descr, props)?;
    // The dictionary page first (borrowed: its values are the page bounds below).
    let encoding = props.dictionary_page_encoding();
    chunk.dictionary_page(Cow::Borrowed(&dict.page), dict.len(), encoding, dict.sorted)?;
    let mut bounds = Bounds::new();
    let mut seen = vec![0u32; dict.len()];
    let (mut keys_start, mut rows) = (0, 0);
    for (no, page) in pages.iter().enumerate() {
        let page_keys = &keys[keys_start..page.keys_end];
        keys_start = page.keys_end;
        let nulls = (page.rows - page_keys.len()) as u64;
        let mut buf = Vec::with_capacity(4 + page.rows / 8);
        let page_levels = levels.get(rows..rows + page.rows).unwrap_or_default();
        let hist = write_levels(&mut buf, page_levels, page.rows, nulls, max_def);
        rle::encode_keys(page_keys, dict.key_range(page.dict_len), &mut buf);
        rows += page.rows;
        let min_max = page_min_max(dict, page_keys, &mut seen, no as u32 + 1).map(|(min, max)| {
            bounds.page(min, max);
            byte_array_index(props, min, max, utf8)
        });
        let info = PageInfo {
            rows: page.rows,
            levels: page.rows,
            nulls,
            encoding: Encoding::RLE_DICTIONARY,
            min_max,
            hist,
            rep_hist: None,
            value_bytes: Some(page.value_bytes),
        };
        chunk.data_page(buf, info)?;
    }
    let statistics = byte_array_statistics(props, &bounds, chunk.nulls(), utf8);
    chunk.finish(bounds.order(), statistics)
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, StringArray};
    use arrow::compute::concat;
    use arrow::datatypes::{Field, Schema, SchemaRef};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use proptest::prelude::*;

    use super::super::writer::{encode_groups, gather_column};
    use super::*;

    /// A column chunk's values: `None` is a null.
    pub(in crate::lake) type Values = Vec<Option<String>>;

    /// The file `encode_groups` writes (this module's chunks) and the one `ArrowWriter` writes
    /// for the same rows, one batch per row group, cutting pages at the same rows.
    ///
    /// The batches `interned` marks go to `encode_groups` as dictionaries, as parsers hand
    /// over the columns they intern (all of a file's or none: a table's batches come from one
    /// parser).
    pub(in crate::lake) fn both(
        nullable: bool,
        batches: &[Values],
        interned: &[bool],
        groups: &[Vec<Selection>],
        props: WriterProperties,
    ) -> (Vec<u8>, Vec<u8>) {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, nullable)]));
        let dict_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let dict = Arc::new(Schema::new(vec![Field::new(
            "s",
            dict_type.clone(),
            nullable,
        )]));
        let batches: Vec<RecordBatch> = batches
            .iter()
            .map(|v| {
                let a: ArrayRef = Arc::new(StringArray::from(v.clone()));
                RecordBatch::try_new(schema.clone(), vec![a]).unwrap()
            })
            .collect();
        let handed: Vec<RecordBatch> = (batches.iter().enumerate())
            .map(|(i, b)| match interned.get(i) {
                Some(true) => {
                    let a = arrow::compute::cast(b.column(0), &dict_type).unwrap();
                    RecordBatch::try_new(dict.clone(), vec![a]).unwrap()
                }
                _ => b.clone(),
            })
            .collect();
        let handed: Vec<&RecordBatch> = handed.iter().collect();
        let mut got = Vec::new();
        encode_groups(&mut got, &schema, props.clone(), &handed, groups).unwrap();
        let refs: Vec<&RecordBatch> = batches.iter().collect();

        // Built anew so that a column without nulls has no null buffer, as parsers make it.
        let plain =
            |c: ArrayRef| -> ArrayRef { Arc::new(StringArray::from_iter(c.as_string::<i32>())) };
        let want = arrow_writer_file(&schema, &refs, groups, props, plain);
        (got, want)
    }

    /// The file `ArrowWriter` writes for column 0 of the rows `groups` select from `batches`,
    /// one batch per row group (each group's rows gathered and passed through `rebuild`),
    /// with `data_page_row_count_limit` as the write batch size: the file this crate's
    /// column writers must match.
    pub(in crate::lake) fn arrow_writer_file(
        schema: &SchemaRef,
        batches: &[&RecordBatch],
        groups: &[Vec<Selection>],
        props: WriterProperties,
        rebuild: impl Fn(ArrayRef) -> ArrayRef,
    ) -> Vec<u8> {
        let limit = props.data_page_row_count_limit();
        let reference = props.into_builder().set_write_batch_size(limit).build();
        let mut want = Vec::new();
        let mut w = ArrowWriter::try_new(&mut want, schema.clone(), Some(reference)).unwrap();
        for sels in groups {
            let parts: Vec<ArrayRef> = (sels.iter())
                .map(|s| gather_column(batches, s, 0).unwrap())
                .collect();
            let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            let column = rebuild(concat(&parts).unwrap());
            w.write(&RecordBatch::try_new(schema.clone(), vec![column]).unwrap())
                .unwrap();
            w.flush().unwrap();
        }
        w.close().unwrap();
        want
    }

    pub(in crate::lake) fn read(file: Vec<u8>) -> Vec<RecordBatch> {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
            file,
        ))
        .unwrap()
        .build()
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap()
    }

    /// `got` holds what `want` holds, with its dictionaries in byte order where `want` has a
    /// dictionary of [`SORT_FROM`] bytes or more (`sorted` such chunks at least): same values,
    /// row groups, pages (first rows, minima and maxima: the column index), statistics; every
    /// other chunk byte for byte the same size.
    pub(in crate::lake) fn same_but_sorted(got: Vec<u8>, want: Vec<u8>, sorted: usize) {
        use parquet::column::page::Page;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::file::serialized_reader::ReadOptionsBuilder;
        assert_eq!(read(got.clone()), read(want.clone()));
        let open = |f: Vec<u8>| {
            let options = ReadOptionsBuilder::new().with_page_index().build();
            SerializedFileReader::new_with_options(bytes::Bytes::from(f), options).unwrap()
        };
        let (got, want) = (open(got), open(want));
        let (gm, wm) = (got.metadata(), want.metadata());
        assert_eq!(gm.num_row_groups(), wm.num_row_groups());
        assert_eq!(gm.column_index(), wm.column_index());
        let first_rows = |m: &parquet::file::metadata::ParquetMetaData| -> Vec<Vec<i64>> {
            (m.offset_index().into_iter().flatten().flatten())
                .map(|o| {
                    o.page_locations()
                        .iter()
                        .map(|l| l.first_row_index)
                        .collect()
                })
                .collect()
        };
        assert_eq!(first_rows(gm), first_rows(wm));
        let mut seen = 0;
        for g in 0..gm.num_row_groups() {
            let (gc, wc) = (gm.row_group(g).column(0), wm.row_group(g).column(0));
            assert_eq!(gc.statistics(), wc.statistics(), "row group {g}");
            let dictionary = |r: &SerializedFileReader<bytes::Bytes>| -> Option<Vec<Vec<u8>>> {
                let mut pages = r
                    .get_row_group(g)
                    .unwrap()
                    .get_column_page_reader(0)
                    .unwrap();
                let Some(Page::DictionaryPage {
                    buf, num_values, ..
                }) = pages.get_next_page().unwrap()
                else {
                    return None;
                };
                let (mut values, mut at) = (Vec::new(), 0);
                for _ in 0..num_values {
                    let len = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
                    values.push(buf[at + 4..at + 4 + len].to_vec());
                    at += 4 + len;
                }
                Some(values)
            };
            let (gd, wd) = (dictionary(&got), dictionary(&want));
            let large = wc.dictionary_page_offset().is_some()
                && wd
                    .as_ref()
                    .is_some_and(|d| d.iter().map(|v| 4 + v.len()).sum::<usize>() >= SORT_FROM);
            if large {
                let (gd, mut wd) = (gd.unwrap(), wd.unwrap());
                assert!(
                    gd.windows(2).all(|w| w[0] < w[1]),
                    "row group {g}: in byte order"
                );
                wd.sort();
                assert_eq!(gd, wd, "row group {g}: the same entries");
                seen += 1;
            } else {
                assert_eq!(gd, wd, "row group {g}");
                assert_eq!(gc.compressed_size(), wc.compressed_size(), "row group {g}");
            }
        }
        assert!(
            seen >= sorted,
            "{seen} sorted dictionaries, expected {sorted}"
        );
    }

    fn props(
        rows_per_page: usize,
        zstd: bool,
        stats: Option<usize>,
        index: Option<usize>,
        dict_limit: Option<usize>,
    ) -> WriterProperties {
        WriterProperties::builder()
            .set_dictionary_page_size_limit(dict_limit.unwrap_or(1 << 20))
            .set_data_page_row_count_limit(rows_per_page)
            .set_compression(if zstd {
                Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
            } else {
                Compression::UNCOMPRESSED
            })
            .set_statistics_truncate_length(stats)
            .set_column_index_truncate_length(index)
            .build()
    }

    /// Every row of `batches`, as runs of `run` rows taken in an interleaved order, in row
    /// groups of `group` selections.
    pub(in crate::lake) fn interleaved(
        batches: &[Values],
        run: usize,
        group: usize,
    ) -> Vec<Vec<Selection>> {
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        interleaved_rows(&lens, run, group)
    }

    /// Every row of batches of `lens` rows, as runs of `run` rows taken in an interleaved
    /// order, in row groups of `group` selections.
    pub(in crate::lake) fn interleaved_rows(
        lens: &[usize],
        run: usize,
        group: usize,
    ) -> Vec<Vec<Selection>> {
        let mut runs = Vec::new();
        for (b, &len) in lens.iter().enumerate() {
            for (i, start) in (0..len).step_by(run).enumerate() {
                runs.push((i, b, start, (start + run).min(len)));
            }
        }
        runs.sort_by_key(|&(i, b, ..)| (i, std::cmp::Reverse(b)));
        let sels: Vec<Selection> = runs
            .chunks(3)
            .map(|rs| {
                let mut s = Selection::default();
                for &(_, b, start, end) in rs {
                    s.push(b, start, end);
                }
                s
            })
            .collect();
        sels.chunks(group)
            .map(|c| c.iter().map(clone_sel).collect())
            .collect()
    }

    fn clone_sel(s: &Selection) -> Selection {
        let mut c = Selection::default();
        for &(b, start, end) in s.runs() {
            c.push(b, start, end);
        }
        c
    }

    #[test]
    fn a_day_of_strings_is_written_byte_for_byte_as_arrow_writer_writes_it() {
        let pool = [
            "GET",
            "PUT",
            "élan",
            "z",
            "",
            "a-much-longer-value-".repeat(5).leak(),
        ];
        let batches: Vec<Values> = (0..3)
            .map(|b| {
                (0..5000)
                    .map(|i| (i % 7 != b).then(|| pool[(i * (b + 1)) % pool.len()].to_string()))
                    .collect()
            })
            .collect();
        for nullable in [true, false] {
            let batches: Vec<Values> = batches
                .iter()
                .map(|v| {
                    v.iter()
                        .map(|s| s.clone().or_else(|| (!nullable).then(String::new)))
                        .collect()
                })
                .collect();
            let groups = interleaved(&batches, 700, 4);
            let (got, want) = both(
                nullable,
                &batches,
                &[],
                &groups,
                props(1000, true, Some(8), Some(16), None),
            );
            assert!(got == want, "nullable {nullable}: files differ");
        }
    }

    /// A dictionary of `SORT_FROM` bytes or more is written in byte order (and compresses
    /// better); everything read from the chunk is what parquet-rs's holds.
    #[test]
    fn a_large_dictionary_is_written_in_byte_order() {
        // 3 × 4000 rows of about 3000 values of 40 bytes, first used out of order.
        let batches: Vec<Values> = (0..3)
            .map(|b| {
                (0..4000)
                    .map(|i| {
                        let v = (i * 7919 + b * 13) % 3000;
                        (i % 11 != 3).then(|| {
                            format!("{{\"bucketName\":\"b-{}\",\"key\":\"k{v:05}\"}}", v % 7)
                        })
                    })
                    .collect()
            })
            .collect();
        for interned in [false, true] {
            let groups = interleaved(&batches, 700, 2);
            let props = props(1000, true, Some(8), Some(16), Some(64 << 20));
            let (got, want) = both(true, &batches, &[interned; 3], &groups, props);
            same_but_sorted(got, want, 3);
        }
    }

    /// Batches whose column is a dictionary (as the S3 access-log parser interns strings) give
    /// the file their strings give: batch keys mapped to the chunk's in the order rows first
    /// use them, whatever the batch dictionaries' order and unused entries; and the same file
    /// through parquet-rs when the chunk's dictionary is over the limit.
    #[test]
    fn dictionary_batches_are_written_as_their_strings() {
        use arrow::array::{DictionaryArray, Int32Array};
        let pool = [
            "GET",
            "PUT",
            "",
            "z",
            "a-much-longer-value-".repeat(3).leak(),
        ];
        let plain: Vec<Values> = (0..3)
            .map(|b| {
                (0..3000)
                    .map(|i| (i % 5 != b).then(|| pool[(i * (b + 2)) % pool.len()].to_string()))
                    .collect()
            })
            .collect();
        let utf8 = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let dict_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let dict = Arc::new(Schema::new(vec![Field::new("s", dict_type, true)]));
        let batches = |interned: bool| -> Vec<RecordBatch> {
            (plain.iter())
                .map(|v| {
                    if !interned {
                        let a: ArrayRef = Arc::new(StringArray::from(v.clone()));
                        return RecordBatch::try_new(utf8.clone(), vec![a]).unwrap();
                    }
                    // The pool backwards, and a value no row uses.
                    let mut values: Vec<&str> = pool.iter().rev().copied().collect();
                    values.insert(1, "unused");
                    let keys = Int32Array::from_iter(v.iter().map(|s| {
                        s.as_deref()
                            .map(|s| values.iter().position(|&p| p == s).unwrap() as i32)
                    }));
                    let a = DictionaryArray::try_new(keys, Arc::new(StringArray::from(values)));
                    RecordBatch::try_new(dict.clone(), vec![Arc::new(a.unwrap())]).unwrap()
                })
                .collect()
        };
        let groups = interleaved(&plain, 700, 4);
        for limit in [None, Some(16)] {
            let props = props(1000, true, Some(8), Some(16), limit);
            let file = |batches: Vec<RecordBatch>| {
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                let mut out = Vec::new();
                encode_groups(&mut out, &utf8, props.clone(), &refs, &groups).unwrap();
                out
            };
            assert!(
                file(batches(true)) == file(batches(false)),
                "dictionary limit {limit:?}: files differ"
            );
        }
        // Another key type: through parquet-rs, cast to the table's strings.
        let u16_type = DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8));
        let u16_schema = Arc::new(Schema::new(vec![Field::new("s", u16_type.clone(), true)]));
        let other: Vec<RecordBatch> = (batches(false).iter())
            .map(|b| {
                let a = arrow::compute::cast(b.column(0), &u16_type).unwrap();
                RecordBatch::try_new(u16_schema.clone(), vec![a]).unwrap()
            })
            .collect();
        let props = props(1000, true, Some(8), Some(16), None);
        let file = |batches: &[RecordBatch]| {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let mut out = Vec::new();
            encode_groups(&mut out, &utf8, props.clone(), &refs, &groups).unwrap();
            out
        };
        // (parquet-rs cuts pages at other rows: the same values, not the same bytes.)
        let values = |file: Vec<u8>| -> Vec<Option<String>> {
            let batches = read(file);
            let strings = batches
                .iter()
                .flat_map(|b| b.column(0).as_string::<i32>().iter());
            strings.map(|v| v.map(String::from)).collect()
        };
        assert_eq!(values(file(&other)), values(file(&batches(false))));
    }

    #[test]
    fn a_codec_is_reused_by_the_next_chunk_and_writes_the_same_bytes() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let values: ArrayRef = Arc::new(StringArray::from_iter(
            (0..3000).map(|i| (i % 5 != 0).then(|| format!("value-{}", i % 37))),
        ));
        let batch = RecordBatch::try_new(schema.clone(), vec![values]).unwrap();
        let descr = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema)
            .unwrap()
            .column(0);
        let props = props(1000, true, None, None, None);
        let mut sel = Selection::default();
        sel.push(0, 0, 3000);
        let chunk = || {
            let c = encode(&[&batch], std::slice::from_ref(&sel), 0, &descr, &props);
            c.unwrap()
                .expect("eligible and under the dictionary limit")
                .bytes
        };
        let first = chunk();
        assert_eq!(
            super::super::chunk::CODECS.with_borrow(Vec::len),
            1,
            "the codec went back to the cache"
        );
        let second = chunk();
        assert_eq!(
            super::super::chunk::CODECS.with_borrow(Vec::len),
            1,
            "and was taken again, not a new one"
        );
        assert_eq!(first, second);
    }

    /// Long values sharing prefixes: a hundred make a dictionary of `SORT_FROM` bytes.
    fn long_value() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            1 => Just(None),
            8 => ("[ab]{1,3}", 0u32..400, "[xy\u{e9}]{0,3}").prop_map(|(a, n, b)| {
                Some(format!("{a}{}{n}{b}", "-".repeat(1000)))
            }),
        ]
    }

    pub(in crate::lake) fn value() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            1 => Just(None),
            6 => "[ab\u{e9}\u{7ff}\u{ffff}\u{10ffff}]{0,4}".prop_map(Some),
            1 => "[a\u{10ffff}\u{ff}]{60,80}".prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn same_is_slice_equality(
            a in proptest::collection::vec(0u8..4, 0..120),
            b in proptest::collection::vec(0u8..4, 0..120),
            flip in any::<prop::sample::Index>(),
        ) {
            prop_assert_eq!(same(&a, &b), a == b);
            prop_assert!(same(&a, &a.clone()));
            // One byte changed anywhere is seen, whatever the length.
            if !a.is_empty() {
                let mut c = a.clone();
                c[flip.index(a.len())] ^= 0x10;
                prop_assert!(!same(&a, &c));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        /// Dictionaries of `SORT_FROM` bytes or more, any nulls, pages and row orders: what
        /// parquet-rs writes, the dictionary in byte order.
        #[test]
        fn large_dictionaries_hold_what_arrow_writer_writes(
            nullable in any::<bool>(),
            batches in proptest::collection::vec(proptest::collection::vec(long_value(), 100..400), 1..4),
            // At least 120 rows a row group: most have a large dictionary.
            run in 20usize..120,
            group in 2usize..6,
            rows_per_page in 1usize..300,
            interned in any::<bool>(),
        ) {
            let batches: Vec<Values> = batches
                .into_iter()
                .map(|v| v.into_iter().map(|s| s.or_else(|| (!nullable).then(String::new))).collect())
                .collect();
            let groups: Vec<Vec<Selection>> = interleaved(&batches, run, group)
                .into_iter()
                .filter(|g| g.iter().any(|s| !s.is_empty()))
                .collect();
            let interned = vec![interned; batches.len()];
            let props = props(rows_per_page, true, Some(8), Some(16), Some(64 << 20));
            let (got, want) = both(nullable, &batches, &interned, &groups, props);
            same_but_sorted(got, want, 1);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any strings, nulls, page sizes, truncation lengths and row orders: the same file.
        #[test]
        fn same_file_as_arrow_writer(
            nullable in any::<bool>(),
            all_null in proptest::bool::weighted(0.1),
            batches in proptest::collection::vec(proptest::collection::vec(value(), 0..120), 1..4),
            run in 1usize..40,
            group in 1usize..6,
            rows_per_page in 1usize..50,
            zstd in any::<bool>(),
            stats in proptest::option::of(1usize..70),
            index in proptest::option::of(1usize..70),
            // Small enough, sometimes, for the dictionary to reach it (parquet-rs then falls
            // back to plain pages, and so must this file).
            dict_limit in proptest::option::of(1usize..400),
            // The batches come as dictionaries (the parsers' interned columns; a table's
            // batches all come from one parser).
            interned in any::<bool>(),
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
            let interned = vec![interned; batches.len()];
            let (got, want) = both(nullable, &batches, &interned, &groups, props(rows_per_page, zstd, stats, index, dict_limit));
            if dict_limit.is_none() {
                prop_assert!(got == want, "files differ");
            } else {
                // Where parquet-rs falls back to plain pages depends on how the rows are fed
                // to it; the values read back do not.
                prop_assert_eq!(read(got), read(want));
            }
        }
    }
}
