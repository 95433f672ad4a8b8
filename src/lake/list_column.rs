//! Lists of strings with a dictionary (the `p_any_*` indicator lists, `additionalfields`),
//! written without parquet-rs's column writer.
//!
//! Through parquet-rs's Arrow writer, a list column is gathered into one array, its
//! repetition and definition levels are worked out into two `i16` vectors, and every value is
//! hashed into the dictionary through its interner: a twentieth of an access-log ingest's
//! instructions for three short lists a row. [`encode`] walks the rows straight from the
//! batches a file's rows come from ([`Selection`]): each row's levels as bytes, each value
//! interned with [`super::dict_column`]'s dictionary, and each page's RLE levels and keys
//! encoded in one pass.
//!
//! Levels, for a nullable list of nullable strings (`max_def_level` 3): a NULL list is
//! `(rep 0, def 0)`, an empty one `(0, 1)`, and each element `(0` for a row's first, `1` for
//! the rest`, def 2` when NULL, `3` when a value`)`.
//!
//! The chunk is the one [`parquet::arrow::ArrowWriter`] writes for the same rows (written as
//! one batch with `data_page_row_count_limit` as the write batch size): pages are cut where
//! its column writer cuts them, after a mini-batch (the first row boundary at least a write
//! batch of levels on) once the page holds `data_page_row_count_limit` rows or its keys'
//! worst-case size reaches the data page size limit. The tests compare files byte for byte.

use std::borrow::Cow;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use parquet::basic::{Encoding, LogicalType, Type as PhysicalType};
use parquet::encodings::rle::RleEncoder;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{
    Bounds, Chunk, ChunkBuilder, PageInfo, byte_array_index, byte_array_statistics, replicable,
    write_level_section,
};
use super::dict_column::{Dictionary, page_min_max};
use super::rle;
use super::writer::Selection;
use crate::error::Result;

/// Definition level of a NULL list, an empty list, a NULL element, and a value.
const NULL_LIST: u8 = 0;
const EMPTY: u8 = 1;
const NULL_ITEM: u8 = 2;
const VALUE: u8 = 3;

/// Whether [`encode`] writes the (only) leaf `descr` of Arrow field type `data_type` under
/// `props`: a top-level nullable `List` of nullable `Utf8`, with dictionary encoding, page
/// statistics and the page index, in data page v1, without bloom filter, page header
/// statistics or content-defined chunking.
pub fn eligible(descr: &ColumnDescPtr, data_type: &DataType, props: &WriterProperties) -> bool {
    let path = descr.path();
    matches!(data_type, DataType::List(item) if *item.data_type() == DataType::Utf8)
        && descr.physical_type() == PhysicalType::BYTE_ARRAY
        && descr.max_rep_level() == 1
        && descr.max_def_level() == i16::from(VALUE)
        && path.parts().len() == 3
        && props.dictionary_enabled(path)
        && replicable(descr, props)
        && props.bloom_filter_properties(path).is_none()
}

/// What a data page holds, recorded while interning.
#[derive(Default, Clone, Copy)]
struct PageSpan {
    rows: usize,
    /// End of its levels in the chunk's level lists.
    levels_end: usize,
    /// End of its keys in the chunk's key list.
    keys_end: usize,
    /// Dictionary entries when the page ended (the keys' bit width).
    dict_len: usize,
    /// Bytes of its values.
    value_bytes: i64,
}

/// A chunk's pages so far, and the one being filled.
struct Pages {
    done: Vec<PageSpan>,
    open: PageSpan,
    page_rows: usize,
    page_bytes: usize,
}

impl Pages {
    /// End the open page where the chunk's levels, keys and dictionary are now.
    fn cut(&mut self, levels: usize, keys: usize, dict_len: usize) {
        self.open.levels_end = levels;
        self.open.keys_end = keys;
        self.open.dict_len = dict_len;
        self.done.push(std::mem::take(&mut self.open));
    }

    /// After a mini-batch: end the open page when parquet-rs's column writer would, once it
    /// holds `page_rows` rows or its keys' worst-case size reaches `page_bytes`.
    fn end_batch(&mut self, levels: usize, keys: usize, dict_len: usize) {
        let first_key = self.done.last().map_or(0, |p| p.keys_end);
        let bit_width = rle::bit_width(dict_len.saturating_sub(1) as u64);
        let estimate = 1 + RleEncoder::max_buffer_size(bit_width, keys - first_key);
        if self.open.rows >= self.page_rows || estimate >= self.page_bytes {
            self.cut(levels, keys, dict_len);
        }
    }
}

/// Column `col` of the rows `sels` select from `batches`, in order, as one column chunk of
/// `descr` under `props` (which [`eligible`] accepted), or `None` when a batch holds the
/// column as anything but a list of `Utf8`, the dictionary reaches the dictionary page limit,
/// or a page would hold NULL elements and nothing else (parquet-rs then leaves out the
/// column index).
pub fn encode(
    batches: &[&RecordBatch],
    sels: &[Selection],
    col: usize,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<Chunk>> {
    let lists: Option<Vec<_>> = batches
        .iter()
        .map(|b| {
            let list = b.column(col).as_list_opt::<i32>()?;
            Some((list, list.values().as_string_opt::<i32>()?))
        })
        .collect();
    let Some(lists) = lists else {
        return Ok(None);
    };
    let path = descr.path();
    let page_rows = props.data_page_row_count_limit().max(1);
    let page_bytes = props.column_data_page_size_limit(path);
    let mut dict = Dictionary::new();
    let (mut rep, mut def): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    let mut keys: Vec<u32> = Vec::new();
    let mut pages = Pages {
        done: Vec::new(),
        open: PageSpan::default(),
        page_rows,
        page_bytes,
    };
    // Levels since the mini-batch began: parquet-rs checks whether to end the page after
    // each.
    let mut batch_levels = 0;
    for sel in sels {
        for &(b, start, end) in sel.runs() {
            let (list, items) = lists[b];
            let offsets = list.value_offsets();
            let list_nulls = list.nulls().filter(|n| n.null_count() > 0);
            let item_nulls = items.nulls().filter(|n| n.null_count() > 0);
            let (item_offsets, data) = (items.value_offsets(), items.value_data());
            for r in start..end {
                if batch_levels >= page_rows {
                    pages.end_batch(def.len(), keys.len(), dict.len());
                    batch_levels = 0;
                }
                let before = def.len();
                let (first, last) = (offsets[r] as usize, offsets[r + 1] as usize);
                if list_nulls.is_some_and(|n| n.is_null(r)) {
                    rep.push(0);
                    def.push(NULL_LIST);
                } else if first == last {
                    rep.push(0);
                    def.push(EMPTY);
                } else {
                    rep.push(0);
                    rep.extend(std::iter::repeat_n(1, last - first - 1));
                    for i in first..last {
                        if item_nulls.is_some_and(|n| n.is_null(i)) {
                            def.push(NULL_ITEM);
                            continue;
                        }
                        def.push(VALUE);
                        let value = &data[item_offsets[i] as usize..item_offsets[i + 1] as usize];
                        keys.push(dict.intern(value));
                        pages.open.value_bytes += value.len() as i64;
                    }
                }
                batch_levels += def.len() - before;
                pages.open.rows += 1;
            }
        }
    }
    if batch_levels > 0 {
        pages.end_batch(def.len(), keys.len(), dict.len());
    }
    if pages.open.rows > 0 {
        pages.cut(def.len(), keys.len(), dict.len());
    }
    let pages = pages.done;
    if pages.is_empty() || dict.page.len() >= props.column_dictionary_page_size_limit(path) {
        return Ok(None);
    }
    dict.sort_large(&mut keys);
    write_chunk(descr, props, &dict, &keys, &rep, &def, &pages)
}

fn write_chunk(
    descr: &ColumnDescPtr,
    props: &WriterProperties,
    dict: &Dictionary,
    keys: &[u32],
    rep: &[u8],
    def: &[u8],
    pages: &[PageSpan],
) -> Result<Option<Chunk>> {
    let utf8 = descr.logical_type_ref() == Some(&LogicalType::String);
    let mut chunk = ChunkBuilder::new(descr, props)?;
    let encoding = props.dictionary_page_encoding();
    chunk.dictionary_page(Cow::Borrowed(&dict.page), dict.len(), encoding, dict.sorted)?;
    let mut bounds = Bounds::new();
    let mut seen = vec![0u32; dict.len()];
    let (mut levels_start, mut keys_start) = (0, 0);
    for (no, page) in pages.iter().enumerate() {
        let page_keys = &keys[keys_start..page.keys_end];
        let page_rep = &rep[levels_start..page.levels_end];
        let page_def = &def[levels_start..page.levels_end];
        keys_start = page.keys_end;
        levels_start = page.levels_end;
        let nulls = (page_def.len() - page_keys.len()) as u64;
        let min_max = page_min_max(dict, page_keys, &mut seen, no as u32 + 1);
        if min_max.is_none() && nulls != page.rows as u64 {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(10 + page_def.len() / 2);
        let rep_hist = write_level_section(&mut buf, page_rep, 1);
        let hist = write_level_section(&mut buf, page_def, VALUE);
        rle::encode_keys(page_keys, dict.key_range(page.dict_len), &mut buf);
        // parquet-rs takes a page with as many NULL levels as rows for a page of NULLs, even
        // when NULL elements of a list make up the count beside values.
        let null_page = nulls == page.rows as u64;
        let min_max = min_max.and_then(|(min, max)| {
            if null_page {
                bounds.include(min, max);
                return None;
            }
            bounds.page(min, max);
            Some(byte_array_index(props, min, max, utf8))
        });
        let info = PageInfo {
            rows: page.rows,
            levels: page_def.len(),
            nulls,
            encoding: Encoding::RLE_DICTIONARY,
            min_max,
            hist,
            rep_hist,
            value_bytes: Some(page.value_bytes),
        };
        chunk.data_page(buf, info)?;
    }
    let statistics = byte_array_statistics(props, &bounds, chunk.nulls(), utf8);
    chunk.finish(bounds.order(), statistics).map(Some)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, ListBuilder, StringBuilder};
    use arrow::datatypes::Schema;
    use parquet::basic::{Compression, ZstdLevel};
    use proptest::prelude::*;

    use super::super::dict_column::tests::{
        arrow_writer_file, interleaved_rows, read, same_but_sorted, value,
    };
    use super::super::writer::encode_groups;
    use super::*;

    /// A list column's rows: `None` is a NULL list.
    type Lists = Vec<Option<Vec<Option<String>>>>;

    fn array(rows: &Lists) -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for row in rows {
            match row {
                None => b.append_null(),
                Some(items) => {
                    for item in items {
                        b.values().append_option(item.as_deref());
                    }
                    b.append(true);
                }
            }
        }
        Arc::new(b.finish())
    }

    fn props(rows_per_page: usize, page_bytes: usize, zstd: bool) -> WriterProperties {
        WriterProperties::builder()
            .set_data_page_row_count_limit(rows_per_page)
            .set_data_page_size_limit(page_bytes)
            .set_dictionary_page_size_limit(1 << 30)
            .set_compression(if zstd {
                Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
            } else {
                Compression::UNCOMPRESSED
            })
            .set_statistics_truncate_length(Some(10))
            .set_column_index_truncate_length(Some(12))
            .build()
    }

    /// The file `encode_groups` writes (with this module's chunks, asserted) and the one
    /// `ArrowWriter` writes for the same rows, one batch per row group.
    fn both(
        batches: &[Lists],
        groups: &[Vec<Selection>],
        props: WriterProperties,
    ) -> (Vec<u8>, Vec<u8>) {
        let field = crate::schema::indicator_field("l");
        let schema = Arc::new(Schema::new(vec![field.clone()]));
        let batches: Vec<RecordBatch> = (batches.iter())
            .map(|rows| RecordBatch::try_new(schema.clone(), vec![array(rows)]).unwrap())
            .collect();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let descr = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema)
            .unwrap()
            .column(0);
        assert!(eligible(&descr, field.data_type(), &props));
        for sels in groups {
            let chunk = encode(&refs, sels, 0, &descr, &props).unwrap();
            assert!(chunk.is_some(), "written by this module, not parquet-rs");
        }
        let mut got = Vec::new();
        encode_groups(&mut got, &schema, props.clone(), &refs, groups).unwrap();

        let want = arrow_writer_file(&schema, &refs, groups, props, |c| c);
        (got, want)
    }

    /// Indicator lists as the parsers make them: NULL when a row has none, one to three
    /// addresses or ARNs otherwise.
    #[test]
    fn a_day_of_lists_is_written_byte_for_byte_as_arrow_writer_writes_it() {
        let batches: Vec<Lists> = (0..3)
            .map(|b| {
                (0..4000)
                    .map(|i: usize| {
                        (i % 5 != b).then(|| {
                            (0..(i * 7 + b) % 4)
                                .map(|k| Some(format!("10.0.{}.{}", (i / 7) % 40, k + b)))
                                .collect()
                        })
                    })
                    .collect()
            })
            .collect();
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        let groups = interleaved_rows(&lens, 700, 4);
        for (rows_per_page, page_bytes, zstd) in [(1000, 1 << 20, true), (300, 512, false)] {
            let (got, want) = both(&batches, &groups, props(rows_per_page, page_bytes, zstd));
            assert!(
                got == want,
                "{rows_per_page} rows, {page_bytes} bytes a page: files differ"
            );
        }
    }

    /// Lists of object ARNs: a dictionary of `SORT_FROM` bytes or more is written in byte
    /// order (`dict_column::SORT_FROM`), pages cut where parquet-rs cuts them.
    #[test]
    fn a_large_dictionary_of_lists_is_written_in_byte_order() {
        let batches: Vec<Lists> = (0..3)
            .map(|b| {
                (0..3000)
                    .map(|i: usize| {
                        (i % 9 != b).then(|| {
                            (0..1 + (i + b) % 3)
                                .map(|k| {
                                    let n = (i * 7919 + k * 31 + b) % 5000;
                                    Some(format!("arn:aws:s3:::bucket-{}/logs/{n:06}.gz", n % 5))
                                })
                                .collect()
                        })
                    })
                    .collect()
            })
            .collect();
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        let groups = interleaved_rows(&lens, 700, 2);
        for (rows_per_page, page_bytes) in [(1000, 1 << 20), (300, 2048)] {
            let (got, want) = both(&batches, &groups, props(rows_per_page, page_bytes, true));
            same_but_sorted(got, want, 2);
        }
    }

    /// A page of NULL elements and nothing else has no bounds, and parquet-rs then writes no
    /// column index for the chunk: such a chunk is left to it.
    #[test]
    fn a_page_of_null_elements_only_is_left_to_parquet_rs() {
        let rows: Lists = vec![Some(vec![Some("a".into())]), Some(vec![None, None])];
        let field = crate::schema::indicator_field("l");
        let schema = Arc::new(Schema::new(vec![field]));
        let batch = RecordBatch::try_new(schema.clone(), vec![array(&rows)]).unwrap();
        let descr = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema)
            .unwrap()
            .column(0);
        let mut sel = Selection::default();
        sel.push(0, 0, 2);
        let props = props(1, 1 << 20, false);
        let chunk = encode(&[&batch], std::slice::from_ref(&sel), 0, &descr, &props).unwrap();
        assert!(chunk.is_none());
        let mut file = Vec::new();
        encode_groups(&mut file, &schema, props, &[&batch], &[vec![sel]]).unwrap();
        let back = read(file);
        assert_eq!(back[0].column(0).as_ref(), array(&rows).as_ref());
    }

    fn list() -> impl Strategy<Value = Option<Vec<Option<String>>>> {
        prop_oneof![
            1 => Just(None),
            1 => Just(Some(vec![])),
            4 => proptest::collection::vec(value(), 1..5).prop_map(Some),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any lists (NULL, empty, with NULL elements), page limits in rows and bytes, and row
        /// orders: the same file, or parquet-rs's own where a page would hold only NULL
        /// elements.
        #[test]
        fn same_file_as_arrow_writer(
            batches in proptest::collection::vec(proptest::collection::vec(list(), 0..150), 1..4),
            run in 1usize..40,
            group in 1usize..6,
            rows_per_page in 1usize..60,
            page_bytes in prop_oneof![Just(1usize << 20), 1usize..64],
            zstd in any::<bool>(),
        ) {
            let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
            let groups: Vec<Vec<Selection>> = interleaved_rows(&lens, run, group)
                .into_iter()
                .filter(|g| g.iter().any(|s| !s.is_empty()))
                .collect();
            prop_assume!(!groups.is_empty());
            // Pages of NULL elements only: left to parquet-rs (it writes no column index).
            let only_null_items = batches.iter().flatten().flatten().any(|items| {
                items.len() > 1 && items.iter().all(Option::is_none)
            });
            prop_assume!(!only_null_items);
            let (got, want) = both(&batches, &groups, props(rows_per_page, page_bytes, zstd));
            prop_assert!(got == want, "files differ");
            let rows: usize = read(got).iter().map(RecordBatch::num_rows).sum();
            prop_assert_eq!(rows, lens.iter().sum::<usize>());
        }
    }
}
