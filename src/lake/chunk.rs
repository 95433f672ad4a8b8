//! What this crate's column writers ([`super::dict_column`], [`super::int_column`],
//! [`super::delta_strings`], [`super::list_column`]) share: a column chunk assembled page by
//! page the way parquet-rs's column writer assembles it (`ChunkBuilder`: page headers,
//! compression, column index, offset index, level histograms, chunk metadata), data page v1
//! definition levels, the ascending/descending order of page bounds, and min/max truncation
//! as parquet-rs does it.

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::Bytes;
use parquet::basic::{BoundaryOrder, Compression, Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::compression::{Codec, CodecOptionsBuilder, create_codec};
use parquet::data_type::ByteArray;
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, LevelHistogram, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::rle;
use crate::error::Result;

/// Whether `props` asks, for column `descr`, for what this crate's column writers write: data
/// page v1, page statistics and the page index, without page header statistics or
/// content-defined chunking.
pub(super) fn replicable(descr: &ColumnDescPtr, props: &WriterProperties) -> bool {
    let path = descr.path();
    props.writer_version() == WriterVersion::PARQUET_1_0
        && props.statistics_enabled(path) == EnabledStatistics::Page
        && !props.write_page_header_statistics(path)
        && !props.offset_index_disabled()
        && props.content_defined_chunking().is_none()
}

/// Whether column `descr` is a top-level column, not repeated: its definition level is 1
/// (nullable) or 0.
pub(super) fn flat(descr: &ColumnDescPtr) -> bool {
    descr.max_rep_level() == 0 && descr.max_def_level() <= 1 && descr.path().parts().len() == 1
}

/// An encoded column chunk: its pages (the dictionary page first, offsets from 0) and what
/// the row group writer needs to splice them into a file
/// ([`parquet::file::writer::SerializedRowGroupWriter::append_column`]).
pub struct Chunk {
    pub bytes: Bytes,
    pub close: ColumnCloseResult,
}

/// What the column index and offset index record of a data page.
pub(super) struct PageInfo {
    /// Rows in the page.
    pub rows: usize,
    /// Levels (values and NULLs) in the page: its rows, unless the column is repeated.
    pub levels: usize,
    /// Levels without a value.
    pub nulls: u64,
    pub encoding: Encoding,
    /// The page's smallest and largest value as the column index stores them (truncated,
    /// little-endian for numbers); `None` for a page of NULLs.
    pub min_max: Option<(Vec<u8>, Vec<u8>)>,
    pub hist: Option<LevelHistogram>,
    /// Its repetition level histogram (repeated columns).
    pub rep_hist: Option<LevelHistogram>,
    /// Bytes of its byte-array values, unencoded.
    pub value_bytes: Option<i64>,
}

/// A column chunk written page by page: [`Self::dictionary_page`] (if any) first, then each
/// [`Self::data_page`], then [`Self::finish`].
pub(super) struct ChunkBuilder<'a> {
    descr: &'a ColumnDescPtr,
    codec: Compression,
    compressor: CachedCodec,
    sink: TrackedWrite<Vec<u8>>,
    column_index: ColumnIndexBuilder,
    offset_index: OffsetIndexBuilder,
    hist: Option<LevelHistogram>,
    rep_hist: Option<LevelHistogram>,
    total_compressed: i64,
    total_uncompressed: i64,
    /// The dictionary page's encoding, once written.
    dictionary: Option<Encoding>,
    data_page_offset: Option<i64>,
    /// Data pages written, and their encoding.
    data_pages: (i32, Encoding),
    rows: usize,
    levels: usize,
    nulls: u64,
    value_bytes: Option<i64>,
}

impl<'a> ChunkBuilder<'a> {
    pub(super) fn new(descr: &'a ColumnDescPtr, props: &WriterProperties) -> Result<Self> {
        let codec = props.compression(descr.path());
        Ok(Self {
            descr,
            codec,
            compressor: CachedCodec::take(codec)?,
            sink: TrackedWrite::new(Vec::new()),
            column_index: ColumnIndexBuilder::new(descr.physical_type()),
            offset_index: OffsetIndexBuilder::new(),
            hist: LevelHistogram::try_new(descr.max_def_level()),
            rep_hist: LevelHistogram::try_new(descr.max_rep_level()),
            total_compressed: 0,
            total_uncompressed: 0,
            dictionary: None,
            data_page_offset: None,
            data_pages: (0, Encoding::PLAIN),
            rows: 0,
            levels: 0,
            nulls: 0,
            value_bytes: None,
        })
    }

    /// `buf` compressed with the column's codec. Borrowed input is copied only when there is
    /// no codec; owned input is then moved.
    fn compress(&mut self, buf: Cow<'_, [u8]>) -> Result<Vec<u8>> {
        Ok(match self.compressor.as_mut() {
            Some(c) => {
                // Room for zstd's worst case, which the codec reserves: a smaller buffer would
                // be reallocated (and its bytes copied) before every page is compressed.
                let mut out = Vec::with_capacity(compress_bound(buf.len()));
                c.compress(&buf, &mut out)?;
                out
            }
            None => buf.into_owned(),
        })
    }

    fn write(&mut self, page: CompressedPage) -> Result<parquet::column::page::PageWriteSpec> {
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(page)?;
        self.total_compressed += spec.compressed_size as i64;
        self.total_uncompressed += spec.uncompressed_size as i64;
        Ok(spec)
    }

    /// The dictionary page: `plain`, its `values` encoded with `encoding`, `sorted` when they
    /// are in byte order (the page header says so).
    pub(super) fn dictionary_page(
        &mut self,
        plain: Cow<'_, [u8]>,
        values: usize,
        encoding: Encoding,
        sorted: bool,
    ) -> Result<()> {
        let len = plain.len();
        let page = Page::DictionaryPage {
            buf: self.compress(plain)?.into(),
            num_values: values as u32,
            encoding,
            is_sorted: sorted,
        };
        self.write(CompressedPage::new(page, len))?;
        self.dictionary = Some(encoding);
        Ok(())
    }

    /// A data page (v1): `buf` holds its definition levels and values, uncompressed.
    pub(super) fn data_page(&mut self, buf: Vec<u8>, page: PageInfo) -> Result<()> {
        let uncompressed = buf.len();
        let data_page = CompressedPage::new(
            Page::DataPage {
                buf: self.compress(Cow::Owned(buf))?.into(),
                num_values: page.levels as u32,
                encoding: page.encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            },
            uncompressed,
        );
        let nulls = page.nulls as i64;
        match page.min_max {
            None => self.column_index.append(true, vec![], vec![], nulls),
            Some((min, max)) => self.column_index.append(false, min, max, nulls),
        }
        self.column_index
            .append_histograms(&page.rep_hist, &page.hist);
        self.offset_index.append_row_count(page.rows as i64);
        self.offset_index
            .append_unencoded_byte_array_data_bytes(page.value_bytes);
        if let (Some(c), Some(h)) = (self.hist.as_mut(), page.hist.as_ref()) {
            c.add(h);
        }
        if let (Some(c), Some(h)) = (self.rep_hist.as_mut(), page.rep_hist.as_ref()) {
            c.add(h);
        }
        if let Some(b) = page.value_bytes {
            *self.value_bytes.get_or_insert(0) += b;
        }
        self.nulls += page.nulls;
        self.rows += page.rows;
        self.levels += page.levels;
        self.data_pages = (self.data_pages.0 + 1, page.encoding);

        let spec = self.write(data_page)?;
        self.data_page_offset.get_or_insert(spec.offset as i64);
        self.offset_index
            .append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        Ok(())
    }

    /// The column's largest definition level.
    pub(super) fn max_def(&self) -> i16 {
        self.descr.max_def_level()
    }

    /// NULLs in the pages so far.
    pub(super) fn nulls(&self) -> u64 {
        self.nulls
    }

    /// The chunk, with the column index's `order` and the chunk's `statistics`.
    pub(super) fn finish(mut self, order: BoundaryOrder, statistics: Statistics) -> Result<Chunk> {
        SerializedPageWriter::new(&mut self.sink).close()?;
        let bytes = Bytes::from(self.sink.into_inner()?);
        self.column_index.set_boundary_order(order);
        let (pages, data_encoding) = self.data_pages;
        let mut encodings = vec![Encoding::RLE, data_encoding];
        let mut stats = Vec::new();
        if let Some(encoding) = self.dictionary {
            encodings.push(encoding);
            stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding,
                count: 1,
            });
        }
        stats.push(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding: data_encoding,
            count: pages,
        });
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.codec)
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(stats)
            .set_total_compressed_size(self.total_compressed)
            .set_total_uncompressed_size(self.total_uncompressed)
            .set_num_values(self.levels as i64)
            .set_data_page_offset(self.data_page_offset.unwrap_or(0))
            .set_dictionary_page_offset(self.dictionary.map(|_| 0))
            .set_statistics(statistics)
            .set_unencoded_byte_array_data_bytes(self.value_bytes)
            .set_repetition_level_histogram(self.rep_hist)
            .set_definition_level_histogram(self.hist)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: self.rows as u64,
            metadata,
            bloom_filter: None,
            column_index: Some(self.column_index.build()?),
            offset_index: Some(self.offset_index.build()),
        };
        Ok(Chunk { bytes, close })
    }
}

/// The pages' bounds in order: whether they ascend or descend (the column index's boundary
/// order, as the column writer decides it), and the chunk's smallest and largest value.
pub(super) struct Bounds<T> {
    last: Option<(T, T)>,
    ascending: bool,
    descending: bool,
    pub min: Option<T>,
    pub max: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    pub(super) fn new() -> Self {
        Self {
            last: None,
            ascending: true,
            descending: true,
            min: None,
            max: None,
        }
    }

    /// The next page with values, whose smallest and largest are `min` and `max`.
    pub(super) fn page(&mut self, min: T, max: T) {
        if let Some((last_min, last_max)) = self.last {
            self.ascending &= !(last_min > min || last_max > max);
            self.descending &= !(min > last_min || max > last_max);
        }
        self.last = Some((min, max));
        self.include(min, max);
    }

    /// The bounds of a page the column index counts as a page of NULLs (parquet-rs counts a
    /// list page's NULL elements as NULL rows): in the chunk's statistics, not in the order.
    pub(super) fn include(&mut self, min: T, max: T) {
        self.min = Some(self.min.map_or(min, |m| if min < m { min } else { m }));
        self.max = Some(self.max.map_or(max, |m| if max > m { max } else { m }));
    }

    pub(super) fn order(&self) -> BoundaryOrder {
        match (self.ascending, self.descending) {
            (true, _) => BoundaryOrder::ASCENDING,
            (false, true) => BoundaryOrder::DESCENDING,
            (false, false) => BoundaryOrder::UNORDERED,
        }
    }
}

/// A byte-array chunk's statistics from its smallest and largest value, truncated as
/// parquet-rs truncates them.
pub(super) fn byte_array_statistics(
    props: &WriterProperties,
    bounds: &Bounds<&[u8]>,
    nulls: u64,
    utf8: bool,
) -> Statistics {
    Statistics::ByteArray(match (bounds.min, bounds.max) {
        (Some(min), Some(max)) => {
            let trunc = props.statistics_truncate_length();
            let (min, min_cut) = truncate_min(trunc, min, utf8);
            let (max, max_cut) = truncate_max(trunc, max, utf8);
            ValueStatistics::new(
                Some(ByteArray::from(min)),
                Some(ByteArray::from(max)),
                None,
                Some(nulls),
                false,
            )
            .with_max_is_exact(!max_cut)
            .with_min_is_exact(!min_cut)
        }
        _ => ValueStatistics::<ByteArray>::new(None, None, None, Some(nulls), false)
            .with_backwards_compatible_min_max(false),
    })
}

/// A byte-array page's bounds as the column index stores them (truncated).
pub(super) fn byte_array_index(
    props: &WriterProperties,
    min: &[u8],
    max: &[u8],
    utf8: bool,
) -> (Vec<u8>, Vec<u8>) {
    let trunc = props.column_index_truncate_length();
    (
        truncate_min(trunc, min, utf8).0,
        truncate_max(trunc, max, utf8).0,
    )
}

/// A codec from this thread's cache, put back when dropped. A codec made per column chunk
/// cost more than its pages' compression in small files (rule matches): parquet-rs's zstd
/// codec creates a compression and a decompression context, zstd allocates its workspace
/// (through `malloc`, not the Rust allocator) on the first page, and all of it is freed with
/// the chunk.
pub(super) struct CachedCodec {
    kind: Compression,
    codec: Option<Box<dyn Codec>>,
}

thread_local! {
    pub(super) static CODECS: RefCell<Vec<(Compression, Box<dyn Codec>)>> =
        const { RefCell::new(Vec::new()) };
}

/// Codecs each thread keeps (one per compression it met; tables use one or two).
const CODECS_KEPT: usize = 4;

impl CachedCodec {
    pub(super) fn take(kind: Compression) -> Result<Self> {
        let cached = CODECS.with_borrow_mut(|cache| {
            let i = cache.iter().position(|(k, _)| *k == kind)?;
            Some(cache.swap_remove(i).1)
        });
        let codec = match cached {
            Some(c) => Some(c),
            None => create_codec(kind, &CodecOptionsBuilder::default().build())?,
        };
        Ok(CachedCodec { kind, codec })
    }

    pub(super) fn as_mut(&mut self) -> Option<&mut (dyn Codec + 'static)> {
        self.codec.as_deref_mut()
    }
}

impl Drop for CachedCodec {
    fn drop(&mut self) {
        if let Some(codec) = self.codec.take() {
            // `try_with`: a thread being torn down just drops it.
            let _ = CODECS.try_with(|cache| {
                let mut cache = cache.borrow_mut();
                if cache.len() < CODECS_KEPT {
                    cache.push((self.kind, codec));
                }
            });
        }
    }
}

/// At least `ZSTD_compressBound(len)`: `len + len / 256`, plus up to 64 for inputs under
/// 128 KiB.
fn compress_bound(len: usize) -> usize {
    len + (len >> 8) + ((128 << 10) >> 11) + 1
}

/// Append a data page v1's definition levels (when the column has any: `max_def` 1) to `buf`:
/// their byte length, then the `rows` levels RLE-encoded at one bit, read from `levels` only
/// when some of the `nulls` are there. Returns the page's level histogram.
pub(super) fn write_levels(
    buf: &mut Vec<u8>,
    levels: &[u8],
    rows: usize,
    nulls: u64,
    max_def: i16,
) -> Option<LevelHistogram> {
    let mut hist = LevelHistogram::try_new(max_def);
    if max_def > 0 {
        length_prefixed(buf, |buf| {
            if nulls == 0 {
                // All 1: what `encode` makes of them, one RLE run, without reading them.
                rle::run(buf, rows, 1, 1);
            } else {
                rle::encode(levels, 1, buf);
            }
        });
        if let Some(h) = hist.as_mut() {
            h.increment_by(0, nulls as i64);
            h.increment_by(1, rows as i64 - nulls as i64);
        }
    }
    hist
}

/// Append a data page v1's levels up to `max` (repetition or definition levels of a repeated
/// column) to `buf`: their byte length, then the RLE hybrid at `max`'s bit width. Returns their
/// histogram.
pub(super) fn write_level_section(
    buf: &mut Vec<u8>,
    levels: &[u8],
    max: u8,
) -> Option<LevelHistogram> {
    length_prefixed(buf, |buf| {
        rle::encode(levels, rle::bit_width(u64::from(max)), buf)
    });
    let mut hist = LevelHistogram::try_new(i16::from(max));
    if let Some(h) = hist.as_mut() {
        let mut counts = [0i64; 256];
        for &l in levels {
            counts[l as usize] += 1;
        }
        for (level, &n) in counts.iter().enumerate().take(max as usize + 1) {
            h.increment_by(level as i16, n);
        }
    }
    hist
}

/// Append what `write` appends to `buf`, preceded by its length as a little-endian `u32` (how
/// data page v1 stores each kind of levels).
fn length_prefixed(buf: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    write(buf);
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// `data` cut to at most `length` bytes (at a character boundary for UTF-8), and whether it
/// was cut: a lower bound, as parquet-rs truncates minima.
fn truncate_min(length: Option<usize>, data: &[u8], utf8: bool) -> (Vec<u8>, bool) {
    length
        .filter(|&l| data.len() > l)
        .and_then(|l| match std::str::from_utf8(data) {
            Ok(s) if utf8 => {
                let split = (1..=l).rfind(|&x| s.is_char_boundary(x))?;
                Some(data[..split].to_vec())
            }
            _ => Some(data[..l].to_vec()),
        })
        .map(|t| (t, true))
        .unwrap_or_else(|| (data.to_vec(), false))
}

/// `data` cut to at most `length` bytes and its last character (byte, if not UTF-8)
/// incremented, and whether it was cut: an upper bound, as parquet-rs truncates maxima.
fn truncate_max(length: Option<usize>, data: &[u8], utf8: bool) -> (Vec<u8>, bool) {
    length
        .filter(|&l| data.len() > l)
        .and_then(|l| match std::str::from_utf8(data) {
            Ok(s) if utf8 => {
                let split = (l.saturating_sub(3)..=l).rfind(|&x| s.is_char_boundary(x))?;
                increment_utf8(s.get(..split)?)
            }
            _ => increment(data[..l].to_vec()),
        })
        .map(|t| (t, true))
        .unwrap_or_else(|| (data.to_vec(), false))
}

/// The string with its last character that can be incremented without changing its UTF-8
/// length incremented, and what followed it dropped.
fn increment_utf8(data: &str) -> Option<Vec<u8>> {
    for (idx, c) in data.char_indices().rev() {
        let len = c.len_utf8();
        if let Some(next) = char::from_u32(c as u32 + 1)
            && next.len_utf8() == len
        {
            let mut out = data.as_bytes()[..idx + len].to_vec();
            next.encode_utf8(&mut out[idx..]);
            return Some(out);
        }
    }
    None
}

/// The bytes incremented as a big-endian number; `None` if all are 0xFF.
fn increment(mut data: Vec<u8>) -> Option<Vec<u8>> {
    for byte in data.iter_mut().rev() {
        let (b, overflow) = byte.overflowing_add(1);
        *byte = b;
        if !overflow {
            return Some(data);
        }
    }
    None
}
