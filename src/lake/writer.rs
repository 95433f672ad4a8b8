//! The partitioned Parquet writer.
//!
//! Rows arrive as record batches for a table; the writer groups them by the UTC day of
//! `p_event_time` (and by part, where the caller keeps rows apart: one rule's matches per
//! file), buffers each day, and turns a day's buffer into one Parquet file when it
//! reaches [`WriterConfig::rows_per_file`], when the input has moved past it
//! ([`PartitionedWriter::tick`]), when all buffers together exceed
//! [`WriterConfig::memory_budget`] (the largest is flushed), or at the end of a transaction.
//! Many small inputs therefore become few files, and memory stays bounded whatever the input
//! size.
//!
//! Every file: rows sorted by `p_event_time` and that order declared in the row-group metadata
//! (`sorting_columns`), zstd compression (except integers without a dictionary and columns the
//! schema marks `compressed: false`), page-level statistics and the page index, row groups of
//! [`WriterConfig::row_group_rows`], dictionary encoding except for columns the schema marks
//! unique, bloom filters where the schema asks. Files are encoded in memory and staged whole
//! ([`super::commit`] moves them into the table). Each column of each row group is encoded as
//! a task on the rayon pool ([`encode`]), so a file encoded alone uses every core. Strings,
//! numbers, times, ids and lists of strings are written by this crate's column writers
//! ([`super::dict_column`], [`super::int_column`], [`super::delta_strings`],
//! [`super::list_column`]) straight from the buffered batches (the same bytes parquet-rs
//! would write, faster); other columns (struct members, booleans, doubles) by parquet-rs.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayData, ArrayRef, AsArray, MutableArrayData, UInt32Array, make_array,
};
use arrow::compute::{interleave, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use object_store::path::Path;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use super::commit::FileMove;
use super::{Lake, QUARANTINE_DB, paths};
use super::{chunk, delta_strings, dict_column, int_column, list_column, member_dictionary};
use crate::error::{Error, Result};
use crate::parse::time::{MICROS_PER_DAY, civil_from_days};
use crate::schema::{LogSchema, TIMESTAMP, standard_fields};

/// Ticks without rows after which an older day counts as finished ([`PartitionedWriter::tick`]):
/// with the ingest's 4 MiB chunks, 16 MiB of input past the day (access logs arrive up to
/// minutes out of order).
const COLD_TICKS: u64 = 4;

/// Rows gathered in time order per write when a file's rows must be sorted.
const GATHER_ROWS: usize = 8192;

/// Name of the column every table is partitioned and sorted by.
pub const TIME_COLUMN: &str = "p_event_time";

/// Sizes and levels for written files.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// A day's buffer becomes a file at this many rows.
    pub rows_per_file: usize,
    /// Upper bound for buffered Arrow data across all days and tables.
    pub memory_budget: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// zstd level.
    pub zstd_level: i32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            rows_per_file: 2_000_000,
            memory_budget: 512 << 20,
            row_group_rows: 128 * 1024,
            zstd_level: 3,
        }
    }
}

/// A table rows are written to: where it lives, its schema, and how its files are encoded.
#[derive(Debug)]
pub struct TableSpec {
    pub db: String,
    pub table: String,
    pub schema: SchemaRef,
    pub log_type: String,
    time_idx: usize,
    no_dictionary: Vec<String>,
    bloom: Vec<String>,
    /// Columns written without compression (the schema's `compressed: false`).
    uncompressed: Vec<String>,
    /// zstd level for this table instead of the writer's.
    zstd_level: Option<i32>,
}

impl TableSpec {
    /// The table of a log type in `panther_logs`.
    pub fn for_log(schema: &LogSchema) -> Self {
        let names = |keep: fn(&crate::schema::Column) -> bool| -> Vec<String> {
            schema
                .columns
                .iter()
                .filter(|c| keep(c))
                .map(|c| c.name.clone())
                .collect()
        };
        let mut no_dictionary = names(|c| !c.dictionary);
        no_dictionary.push("p_row_id".into());
        let bloom = names(|c| c.bloom_filter);
        let mut spec = Self::new(
            super::LOGS_DB,
            &schema.table(),
            &schema.log_type,
            schema.arrow_schema(),
            no_dictionary,
            bloom,
        );
        spec.uncompressed = names(|c| !c.compressed);
        spec.zstd_level = schema.zstd_level;
        spec
    }

    /// The rule-match table of a log type, in `panther_rule_matches`: the log table's columns
    /// plus [`crate::detect::matches::match_fields`].
    pub fn rule_matches(schema: &LogSchema) -> Self {
        let logs = Self::for_log(schema);
        let mut fields: Vec<Field> = logs.schema.fields().iter().map(|f| (**f).clone()).collect();
        fields.extend(crate::detect::matches::match_fields());
        let mut no_dictionary = logs.no_dictionary;
        no_dictionary.push("p_alert_context".into());
        let mut spec = Self::new(
            super::RULE_MATCHES_DB,
            &schema.table(),
            &schema.log_type,
            Arc::new(Schema::new(fields)),
            no_dictionary,
            vec![],
        );
        spec.uncompressed = logs.uncompressed;
        // Matches can be as many as the events (a broad rule) and are read far less: the
        // fastest level keeps rules from halving ingest throughput (measured in BENCHMARKS.md).
        spec.zstd_level = Some(1);
        spec
    }

    /// The quarantine table of a log type, in `panther_quarantine`.
    pub fn quarantine(schema: &LogSchema) -> Self {
        Self::new(
            QUARANTINE_DB,
            &schema.table(),
            &schema.log_type,
            quarantine_schema(),
            vec!["p_row_id".into(), "raw".into()],
            vec![],
        )
    }

    /// A table with an explicit schema, which must have a non-null `p_event_time` timestamp.
    pub fn new(
        db: &str,
        table: &str,
        log_type: &str,
        schema: SchemaRef,
        no_dictionary: Vec<String>,
        bloom: Vec<String>,
    ) -> Self {
        let time_idx = schema
            .index_of(TIME_COLUMN)
            .expect("every table has p_event_time");
        TableSpec {
            db: db.into(),
            table: table.into(),
            log_type: log_type.into(),
            schema,
            time_idx,
            no_dictionary,
            bloom,
            uncompressed: vec![],
            zstd_level: None,
        }
    }

    /// Index of `p_event_time` in [`TableSpec::schema`].
    pub fn time_idx(&self) -> usize {
        self.time_idx
    }

    /// How this table's files are encoded.
    pub fn properties(&self, cfg: &WriterConfig) -> Result<WriterProperties> {
        let descr = ArrowSchemaConverter::new().convert(&self.schema)?;
        let leaf = (0..descr.num_columns())
            .find(|&i| descr.column(i).path().string() == TIME_COLUMN)
            .ok_or_else(|| Error::invalid("p_event_time is not a leaf column"))?;
        let mut b = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(
                self.zstd_level.unwrap_or(cfg.zstd_level),
            )?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(cfg.row_group_rows))
            // A dictionary column stays dictionary-encoded for its whole row group: past the
            // default 1 MiB of dictionary the writer would write the rest of the chunk as plain
            // pages, which queries (reading these columns as Arrow dictionaries, see
            // `engine::dict_scan`) would have to hash back into a dictionary batch by batch.
            .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: leaf as i32,
                descending: false,
                nulls_first: false,
            }]))
            .set_created_by(format!("seclake version {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "seclake.log_type".into(),
                self.log_type.clone(),
            )]));
        // Unique values (ids): no dictionary, and the fastest zstd level, since their bytes are
        // high-entropy and long matches are not there to be found. Their lengths are stored
        // apart from their bytes (DELTA_LENGTH_BYTE_ARRAY): PLAIN puts a 4-byte length before
        // each value, which zstd cannot squeeze out of random bytes around it (measured on
        // 1M generated access-log lines: hostid 40.8 -> 37.6 MB, its entropy being 37.5 MB).
        //
        // Integers without a dictionary (sizes, byte counts: too many distinct values for one)
        // are bit-packed deltas and not compressed: zstd over PLAIN int64 only removes their
        // zero high bytes, which bit packing drops anyway, and reading them then needs no
        // decompression (measured on a 130k-row group: objectsize 0.39 MB PLAIN+zstd -> 0.34 MB
        // DELTA_BINARY_PACKED, read 5.3 -> 1.8 ms; zstd 1 over the deltas saves nothing).
        for c in &self.no_dictionary {
            let path = ColumnPath::from(c.as_str());
            b = b.set_column_dictionary_enabled(path.clone(), false);
            match self.schema.field_with_name(c).map(|f| f.data_type()) {
                Ok(DataType::Utf8) => {
                    b = b
                        .set_column_compression(
                            path.clone(),
                            Compression::ZSTD(ZstdLevel::try_new(1)?),
                        )
                        .set_column_encoding(path, Encoding::DELTA_LENGTH_BYTE_ARRAY);
                }
                Ok(DataType::Int32 | DataType::Int64) => {
                    b = b
                        .set_column_compression(path.clone(), Compression::UNCOMPRESSED)
                        .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
                }
                _ => {}
            }
        }
        // Timestamps are (nearly) sorted within a file: delta encoding makes them tiny.
        for f in self.schema.fields() {
            if matches!(f.data_type(), DataType::Timestamp(_, _)) {
                let path = ColumnPath::from(f.name().as_str());
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            }
        }
        // Row ids share their source prefix: store only what differs from the previous one.
        if self.schema.field_with_name("p_row_id").is_ok() {
            b = b.set_column_encoding(ColumnPath::from("p_row_id"), Encoding::DELTA_BYTE_ARRAY);
        }
        // Dictionary keys of few, evenly spread values (status codes, error codes, requesters)
        // are bit-packed runs zstd shrinks by a fifth or less; every compressed column chunk a
        // query reads costs a zstd context and a decompression pass. Measured on the 10M-row
        // bench lake (BENCHMARKS.md, ninth session): the seed query 52 -> 42 ms, q03 121 ->
        // 104 ms, q08 98 -> 93 ms, for 1.3% more bytes.
        for c in &self.uncompressed {
            b = b.set_column_compression(ColumnPath::from(c.as_str()), Compression::UNCOMPRESSED);
        }
        for c in &self.bloom {
            let path = ColumnPath::from(c.as_str());
            b = b
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_fpp(path.clone(), 0.02)
                // Row groups hold up to a quarter more (`balanced_row_group`).
                .set_column_bloom_filter_max_ndv(path, (cfg.row_group_rows * 5 / 4) as u64);
        }
        Ok(b.build())
    }
}

/// Largest dictionary page a column chunk may have before the writer falls back to plain
/// pages: 64 MiB, 512 bytes for each of a row group's 128 Ki rows even if all are distinct.
const DICTIONARY_PAGE_LIMIT: usize = 64 << 20;

/// `schema` with view strings and binaries (`Utf8View`, `BinaryView`, as queries return them)
/// and dictionaries of strings (as log tables read dictionary-encoded columns) as plain `Utf8`
/// and `Binary`, the types every file seclake writes declares, so every reader reads query
/// results as it reads the lake.
pub fn plain_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            fn plain(t: &DataType) -> DataType {
                match t {
                    DataType::Utf8View => DataType::Utf8,
                    DataType::BinaryView => DataType::Binary,
                    DataType::Dictionary(_, v) => plain(v),
                    t => t.clone(),
                }
            }
            f.as_ref().clone().with_data_type(plain(f.data_type()))
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `schema` with each field of the type of the column at its place in `columns`: a table's
/// rows as the parser made them (some strings interned as dictionaries), which the writer
/// stores as the table's plain types.
pub fn typed_as(schema: &SchemaRef, columns: &[ArrayRef]) -> SchemaRef {
    let same = (schema.fields().iter().zip(columns)).all(|(f, c)| f.data_type() == c.data_type());
    if same {
        return schema.clone();
    }
    let fields: Vec<Field> = (schema.fields().iter().zip(columns))
        .map(|(f, c)| f.as_ref().clone().with_data_type(c.data_type().clone()))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with each column cast to the type `schema` gives it (same columns, in order): for
/// files written with [`plain_schema`], and for rows read back from the lake as views that
/// code compiled for the parser's types evaluates.
pub fn cast_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let cols = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Schema of quarantine tables: the raw line, where it came from, and why it was refused.
pub fn quarantine_schema() -> SchemaRef {
    let std = standard_fields();
    let pick = |name: &str| {
        std.iter()
            .find(|f| f.name() == name)
            .cloned()
            .expect("std field")
    };
    Arc::new(Schema::new(vec![
        pick("p_log_type"),
        pick("p_row_id"),
        Field::new("line", DataType::Int64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        pick("p_source_id"),
        pick("p_source_label"),
        pick("p_parse_time"),
        // The partition time of a quarantined line is when it was parsed.
        Field::new(TIME_COLUMN, TIMESTAMP, false),
    ]))
}

/// One file to write: a table's rows for one day.
#[derive(Debug)]
pub struct FlushJob {
    pub table: Arc<TableSpec>,
    pub props: Arc<WriterProperties>,
    pub day: i64,
    pub batches: Vec<RecordBatch>,
    pub seq: u32,
    pub txn: String,
}

#[derive(Debug, Default)]
struct Buffer {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    /// [`PartitionedWriter::tick`] count when rows last arrived.
    last: u64,
}

/// What a (table, day) holds across its parts ([`PartitionedWriter::days_held`]).
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    bytes: usize,
    /// The latest [`Buffer::last`] of its parts.
    last: u64,
}

/// Buffers rows per (table, day) and decides when a file is due. Files are encoded by
/// [`encode_job`] and staged by [`stage`], typically on other threads.
#[derive(Debug)]
pub struct PartitionedWriter {
    cfg: WriterConfig,
    txn: String,
    tables: Vec<(Arc<TableSpec>, Arc<WriterProperties>)>,
    buffers: HashMap<(usize, i64, u32), Buffer>,
    buffered: usize,
    seq: u32,
    /// [`PartitionedWriter::tick`] calls so far.
    ticks: u64,
    /// Newest day each table has received rows for.
    newest: HashMap<usize, i64>,
}

impl PartitionedWriter {
    /// A writer for transaction `txn`.
    pub fn new(txn: &str, cfg: WriterConfig) -> Self {
        PartitionedWriter {
            cfg,
            txn: txn.into(),
            tables: Vec::new(),
            buffers: HashMap::new(),
            buffered: 0,
            seq: 0,
            ticks: 0,
            newest: HashMap::new(),
        }
    }

    /// Register a table; returns the handle to pass to [`PartitionedWriter::push`].
    pub fn add_table(&mut self, table: Arc<TableSpec>) -> Result<usize> {
        if let Some(i) = self
            .tables
            .iter()
            .position(|(t, _)| t.db == table.db && t.table == table.table)
        {
            return Ok(i);
        }
        let props = Arc::new(table.properties(&self.cfg)?);
        self.tables.push((table, props));
        Ok(self.tables.len() - 1)
    }

    /// Schema of table `t`.
    pub fn schema(&self, t: usize) -> SchemaRef {
        self.tables[t].0.schema.clone()
    }

    /// Add rows of table `t`; returns the files now due.
    pub fn push(&mut self, t: usize, batch: RecordBatch) -> Result<Vec<FlushJob>> {
        self.push_part(t, 0, batch)
    }

    /// Add rows of table `t` that go to files of their own, apart from the table's rows of
    /// other `part`s (rule matches: one rule's rows per file, so each file's time order is
    /// long runs of its batches, and a search for one rule's matches skips the other files).
    pub fn push_part(&mut self, t: usize, part: u32, batch: RecordBatch) -> Result<Vec<FlushJob>> {
        if batch.num_rows() == 0 {
            return Ok(vec![]);
        }
        let time_idx = self.tables[t].0.time_idx;
        let mut due = Vec::new();
        // A day's rows may be a slice of `batch` (`split_by_day`), whose size would count the
        // whole batch: each day is weighed by its share of the rows.
        let batch_bytes = batch.get_array_memory_size();
        for (day, rows) in split_by_day(&batch, time_idx)? {
            let buf = self.buffers.entry((t, day, part)).or_default();
            let bytes = batch_bytes * rows.num_rows() / batch.num_rows();
            buf.rows += rows.num_rows();
            buf.bytes += bytes;
            buf.last = self.ticks;
            let newest = self.newest.entry(t).or_insert(day);
            *newest = (*newest).max(day);
            buf.batches.push(rows);
            self.buffered += bytes;
            if buf.rows >= self.cfg.rows_per_file {
                due.push(self.take((t, day, part)));
            }
        }
        // Over budget: flush the (table, day) holding the most, all its parts at once. Parts
        // are weighed together so that splitting a table into parts (one per rule) does not
        // make another table's buffers the largest and its files smaller.
        while self.buffered > self.cfg.memory_budget {
            let held = self.days_held();
            let Some((&day, _)) = held.iter().max_by_key(|(k, h)| (h.bytes, **k)) else {
                break;
            };
            due.extend(self.take_days(&[day]));
        }
        Ok(due)
    }

    /// What each (table, day) holds, all its parts together.
    fn days_held(&self) -> HashMap<(usize, i64), Held> {
        let mut held: HashMap<(usize, i64), Held> = HashMap::new();
        for (&(t, day, _), b) in &self.buffers {
            let h = held.entry((t, day)).or_default();
            h.bytes += b.bytes;
            h.last = h.last.max(b.last);
        }
        held
    }

    /// Every part of the (table, day)s `days` (sorted) as files, in key order.
    fn take_days(&mut self, days: &[(usize, i64)]) -> Vec<FlushJob> {
        let keys = self
            .buffers
            .keys()
            .filter(|k| days.binary_search(&(k.0, k.1)).is_ok())
            .copied()
            .collect();
        self.take_all(keys)
    }

    /// The buffers `keys` as files, in key order.
    fn take_all(&mut self, mut keys: Vec<(usize, i64, u32)>) -> Vec<FlushJob> {
        keys.sort_unstable();
        keys.into_iter().map(|k| self.take(k)).collect()
    }

    /// Mark the end of one unit of input (the ingest calls it once per parsed chunk) and
    /// return the days now finished: a table's day that has had no rows for `COLD_TICKS`
    /// ticks while the table has had rows of a later day, holding at least an eighth of the
    /// memory budget (all its parts at once). Logs arrive close to time order, so this hands
    /// each day over as the input moves past it, instead of when the budget is full: less
    /// memory held, and the same memory reused for the next day. A day smaller than that stays
    /// buffered, so an input that goes back and forth between days (several regions' files,
    /// one after the other) does not split small days into several files.
    pub fn tick(&mut self) -> Vec<FlushJob> {
        self.ticks += 1;
        let min_bytes = self.cfg.memory_budget / 8;
        let mut cold: Vec<(usize, i64)> = self
            .days_held()
            .into_iter()
            .filter(|&((t, day), h)| {
                h.bytes >= min_bytes
                    && h.last + COLD_TICKS <= self.ticks
                    && self.newest.get(&t).is_some_and(|&n| n > day)
            })
            .map(|(k, _)| k)
            .collect();
        cold.sort_unstable();
        self.take_days(&cold)
    }

    /// All remaining buffers as files.
    pub fn finish(&mut self) -> Vec<FlushJob> {
        let keys = self.buffers.keys().copied().collect();
        self.take_all(keys)
    }

    fn take(&mut self, key: (usize, i64, u32)) -> FlushJob {
        let (t, day, _) = key;
        let buf = self.buffers.remove(&key).unwrap_or_default();
        self.buffered -= buf.bytes;
        self.seq += 1;
        FlushJob {
            table: self.tables[t].0.clone(),
            props: self.tables[t].1.clone(),
            day,
            batches: buf.batches,
            seq: self.seq,
            txn: self.txn.clone(),
        }
    }
}

/// Split a batch into one batch per UTC day of column `time_idx` (microseconds).
pub fn split_by_day(batch: &RecordBatch, time_idx: usize) -> Result<Vec<(i64, RecordBatch)>> {
    let times = batch
        .column(time_idx)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| Error::invalid("p_event_time must be a microsecond timestamp"))?;
    let day = |v: i64| v.div_euclid(MICROS_PER_DAY);
    let values = times.values();
    let first = values.first().map_or(0, |v| day(*v));
    if values.iter().all(|v| day(*v) == first) {
        return Ok(vec![(first, batch.clone())]);
    }
    // Rows in time order (as parsers hand them over, see `sort_by_time`): each day's rows are
    // a run, sliced without a copy.
    if values.is_sorted() {
        let mut out = Vec::new();
        let mut start = 0;
        while start < values.len() {
            let d = day(values[start]);
            let len = values[start..].partition_point(|v| day(*v) == d);
            out.push((d, batch.slice(start, len)));
            start += len;
        }
        return Ok(out);
    }
    let mut groups: HashMap<i64, Vec<u32>> = HashMap::new();
    for (i, v) in values.iter().enumerate() {
        groups.entry(day(*v)).or_default().push(i as u32);
    }
    let mut out: Vec<(i64, RecordBatch)> = groups
        .into_iter()
        .map(|(d, idx)| Ok((d, take_record_batch(batch, &UInt32Array::from(idx))?)))
        .collect::<Result<_>>()?;
    out.sort_by_key(|(d, _)| *d);
    Ok(out)
}

/// `batch` with its rows in time order (ties in row order); the batch itself when they are.
///
/// Parsers that cannot append rows in time order (JSON records come as they come) have their
/// batches sorted while still warm in cache, so that [`encode`] finds long runs to write as
/// slices instead of gathering every row from cold memory.
pub fn sort_by_time(batch: RecordBatch) -> Result<RecordBatch> {
    let Ok(i) = batch.schema().index_of(TIME_COLUMN) else {
        return Ok(batch);
    };
    if is_sorted(batch.column(i).as_ref()) {
        return Ok(batch);
    }
    let Some(times) = event_times(&batch) else {
        return Ok(batch);
    };
    let mut idx: Vec<u32> = (0..batch.num_rows() as u32).collect();
    idx.sort_by_key(|&r| times[r as usize]);
    Ok(take_record_batch(&batch, &UInt32Array::from(idx))?)
}

/// The event times of `batch`'s rows, when it has a `p_event_time` column of timestamps.
fn event_times(batch: &RecordBatch) -> Option<&[i64]> {
    let i = batch.schema().index_of(TIME_COLUMN).ok()?;
    let times = batch
        .column(i)
        .as_primitive_opt::<TimestampMicrosecondType>()?;
    Some(times.values())
}

/// Stage an encoded file ([`encode_job`]) from a thread outside the runtime `rt`. Returns
/// the move that places it in its table at commit.
pub fn stage(
    lake: &Lake,
    rt: &tokio::runtime::Handle,
    bytes: Vec<u8>,
    mv: FileMove,
) -> Result<FileMove> {
    rt.block_on(lake.put(&Path::from(mv.staged.as_str()), bytes))?;
    Ok(mv)
}

/// Encode a job and stage the file from async code; returns the move that places it.
pub async fn stage_job(lake: &Lake, job: &FlushJob) -> Result<FileMove> {
    let (bytes, mv) = encode_job(job)?;
    lake.put(&Path::from(mv.staged.as_str()), bytes).await?;
    Ok(mv)
}

/// A job encoded, with the move that will stage and place it (the caller puts the bytes at
/// `staged`).
pub fn encode_job(job: &FlushJob) -> Result<(Vec<u8>, FileMove)> {
    let (bytes, rows) = encode(job)?;
    let staged = paths::staging_file(&job.txn, job.seq);
    let target = paths::data_file(
        &job.table.db,
        &job.table.table,
        civil_from_days(job.day),
        &job.txn,
        job.seq,
    );
    let mv = FileMove {
        staged: staged.to_string(),
        target: target.to_string(),
        rows: rows as u64,
        bytes: bytes.len() as u64,
        replaces: vec![],
    };
    Ok((bytes, mv))
}

/// Encode a job's rows, sorted by time, as one Parquet file in memory.
///
/// The rows are taken in time order straight from the buffered batches (`write_order`), cut
/// into row groups, and each column of each row group is encoded as a task of its own on the
/// rayon pool: while other files are being encoded the tasks of one file run one after the
/// other, and when a file is encoded alone (the last of an ingest, a single delivery, a
/// compaction) its columns are encoded on every core instead of one.
pub fn encode(job: &FlushJob) -> Result<(Vec<u8>, usize)> {
    let rows: usize = job.batches.iter().map(|b| b.num_rows()).sum();
    let batches: Vec<&RecordBatch> = job.batches.iter().collect();
    let props = file_properties(&job.props, rows);
    let groups = row_groups(
        write_order(&batches, job.table.time_idx)?,
        props.max_row_group_row_count().unwrap_or(usize::MAX),
    );
    let props =
        member_dictionary::adapt(props, &job.table.schema, &batches, groups.iter().flatten());
    // About what the file will take, so that the buffer is not grown (a copy) as it fills:
    // encoded files run at a sixth to a tenth of their rows' Arrow memory.
    let arrow: usize = job.batches.iter().map(|b| b.get_array_memory_size()).sum();
    let mut buf = Vec::with_capacity((rows * 64).max(arrow / 6));
    encode_groups(&mut buf, &job.table.schema, props, &batches, &groups)?;
    Ok((buf, rows))
}

/// The rows of `batches` in time order, as selections to encode one after the other.
///
/// Parsers hand over batches sorted by time, so the file's order is mostly long runs of
/// consecutive rows of one batch: each is a selection of its own, encoded as a slice without a
/// copy. The rest (where neighbouring batches overlap in time) is gathered [`GATHER_ROWS`] at a
/// time: a small gather's memory is reused at once instead of a row group's worth of fresh
/// pages per gather (measured: peak RSS 1.84 -> 1.57 GB for 1M lines, a third less sys time).
fn write_order(batches: &[&RecordBatch], time_idx: usize) -> Result<Vec<Selection>> {
    let one_run = |b: usize| {
        let mut s = Selection::default();
        s.push(b, 0, batches[b].num_rows());
        s
    };
    let in_order = batches
        .iter()
        .all(|b| is_sorted(b.column(time_idx).as_ref()))
        && batches
            .windows(2)
            .all(|p| last_time(p[0], time_idx) <= first_time(p[1], time_idx));
    if in_order {
        return Ok((0..batches.len())
            .filter(|&b| batches[b].num_rows() > 0)
            .map(one_run)
            .collect());
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut keys: Vec<(i64, u32, u32)> = Vec::with_capacity(rows);
    for (bi, b) in batches.iter().enumerate() {
        let times = b
            .column(time_idx)
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| Error::invalid("p_event_time must be a microsecond timestamp"))?;
        keys.extend(
            times
                .values()
                .iter()
                .enumerate()
                .map(|(r, t)| (*t, bi as u32, r as u32)),
        );
    }
    // Each batch is sorted already: a stable sort takes the batches as runs and merges them
    // (fewer instructions than an unstable sort, which splits them again).
    keys.sort();
    let mut order = Vec::new();
    let mut pending = Selection::default();
    let mut i = 0;
    while i < keys.len() {
        let (_, b, r) = keys[i];
        let mut j = i + 1;
        while j < keys.len() && keys[j].1 == b && keys[j].2 == keys[j - 1].2 + 1 {
            j += 1;
        }
        let (b, start, end) = (b as usize, r as usize, r as usize + (j - i));
        if j - i >= LONG_RUN {
            if !pending.is_empty() {
                order.push(std::mem::take(&mut pending));
            }
            let mut run = Selection::default();
            run.push(b, start, end);
            order.push(run);
        } else {
            pending.push(b, start, end);
            if pending.rows() >= GATHER_ROWS {
                order.push(std::mem::take(&mut pending));
            }
        }
        i = j;
    }
    if !pending.is_empty() {
        order.push(pending);
    }
    Ok(order)
}

/// `order` cut into row groups of `group_rows` rows (the last may hold fewer), splitting the
/// selections that straddle a boundary.
fn row_groups(order: Vec<Selection>, group_rows: usize) -> Vec<Vec<Selection>> {
    let group_rows = group_rows.max(1);
    let mut groups = Vec::new();
    let mut group: Vec<Selection> = Vec::new();
    let mut room = group_rows;
    for mut sel in order {
        while sel.rows() >= room {
            let head = sel.split_front(room);
            group.push(head);
            groups.push(std::mem::take(&mut group));
            room = group_rows;
        }
        if !sel.is_empty() {
            room -= sel.rows();
            group.push(sel);
        }
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// Write `groups` of rows of `batches` to `out` as a Parquet file of `schema`, one row group
/// each, every (row group, column) encoded as a rayon task. The file is what [`ArrowWriter`]
/// writes for the same slices: same metadata (Arrow schema, sorting columns), same pages.
pub(super) fn encode_groups(
    out: &mut Vec<u8>,
    schema: &SchemaRef,
    props: WriterProperties,
    batches: &[&RecordBatch],
    groups: &[Vec<Selection>],
) -> Result<()> {
    use parquet::arrow::arrow_writer::compute_leaves;
    use rayon::prelude::*;

    let (mut file, _) =
        ArrowWriter::try_new(out, schema.clone(), Some(props.clone()))?.into_serialized_writer()?;
    // Parquet leaf columns per Arrow field (a struct has one per member).
    let mut leaves = vec![0usize; schema.fields().len()];
    let descr = file.schema_descr();
    for leaf in 0..descr.num_columns() {
        leaves[descr.get_column_root_idx(leaf)] += 1;
    }
    let descr = descr.columns().to_vec();
    // String and number columns parquet-rs's column writer would spend most of the encoding
    // time on are written by `dict_column`, `int_column`, `delta_strings` and `list_column`,
    // straight from the batches; the rest through parquet-rs.
    let own: Vec<Option<(Own, &ColumnDescPtr)>> = (0..leaves.len())
        .map(|f| {
            let leaf = &descr[leaves[..f].iter().sum::<usize>()];
            let data_type = schema.field(f).data_type();
            if leaves[f] != 1 {
                None
            } else if dict_column::eligible(leaf, data_type, &props) {
                Some((Own::Strings, leaf))
            } else if int_column::eligible(leaf, data_type, &props) {
                Some((Own::Numbers, leaf))
            } else if delta_strings::eligible(leaf, data_type, &props) {
                Some((Own::Ids, leaf))
            } else if list_column::eligible(leaf, data_type, &props) {
                Some((Own::Lists, leaf))
            } else {
                None
            }
        })
        .collect();
    // How each selection is gathered, for the columns parquet-rs writes (worked out on first
    // use, once for all of them).
    let plans: Vec<Vec<std::sync::OnceLock<Gather>>> = groups
        .iter()
        .map(|sels| sels.iter().map(|_| std::sync::OnceLock::new()).collect())
        .collect();
    let fallback = FieldWriters::new(schema, &props);
    let tasks: Vec<(usize, usize)> = (0..groups.len())
        .flat_map(|g| (0..leaves.len()).map(move |f| (g, f)))
        .collect();
    let chunks: Vec<Vec<Encoded>> = tasks
        .into_par_iter()
        .map(|(g, f)| -> Result<Vec<Encoded>> {
            let sels = &groups[g];
            let field = schema.field(f);
            let chunk = match own[f] {
                Some((Own::Strings, descr)) => {
                    dict_column::encode(batches, sels, f, descr, &props)?
                }
                Some((Own::Numbers, descr)) => {
                    int_column::encode(batches, sels, f, field.data_type(), descr, &props)?
                }
                Some((Own::Ids, descr)) => delta_strings::encode(batches, sels, f, descr, &props)?,
                Some((Own::Lists, descr)) => list_column::encode(batches, sels, f, descr, &props)?,
                None => None,
            };
            if let Some(chunk) = chunk {
                return Ok(vec![Encoded::Own(chunk)]);
            }
            let mut writers = fallback.writers(f, g)?;
            for (sel, plan) in sels.iter().zip(&plans[g]) {
                let mut column = plan.get_or_init(|| Gather::new(sel)).column(batches, f)?;
                // A column the parser interned, where `dict_column` did not write it (its
                // dictionary too large): the table's plain strings.
                if column.data_type() != field.data_type() {
                    column = arrow::compute::cast(&column, field.data_type())?;
                }
                let leaves = compute_leaves(field, &column)?;
                debug_assert_eq!(leaves.len(), writers.len());
                for (leaf, w) in leaves.iter().zip(writers.iter_mut()) {
                    w.write(leaf)?;
                }
            }
            writers
                .into_iter()
                .map(|w| Ok(Encoded::Arrow(w.close()?)))
                .collect()
        })
        .collect::<Result<_>>()?;
    let mut chunks = chunks.into_iter();
    for _ in groups {
        let mut group = file.next_row_group()?;
        for column in chunks.by_ref().take(leaves.len()) {
            for chunk in column {
                match chunk {
                    Encoded::Arrow(chunk) => chunk.append_to_row_group(&mut group)?,
                    Encoded::Own(chunk) => group.append_column(&chunk.bytes, chunk.close)?,
                }
            }
        }
        group.close()?;
    }
    file.close()?;
    Ok(())
}

/// parquet-rs column writers for one field of a file's schema, made when a column chunk needs
/// them: [`ArrowRowGroupWriterFactory::create_column_writers`] makes a writer for every column
/// of its schema, each with a zstd compression and decompression context, while this crate's
/// writers encode most columns (measured: creating those contexts was 1.2% of an ingest with
/// rules, whose match files are many and small). A factory over a schema of the field alone
/// makes the same writers: a top-level field's leaves have the same paths and levels there.
struct FieldWriters<'a> {
    schema: &'a SchemaRef,
    props: &'a WriterProperties,
    factories: Vec<std::sync::OnceLock<ArrowRowGroupWriterFactory>>,
}

impl<'a> FieldWriters<'a> {
    fn new(schema: &'a SchemaRef, props: &'a WriterProperties) -> Self {
        let factories = schema.fields().iter().map(|_| Default::default()).collect();
        FieldWriters {
            schema,
            props,
            factories,
        }
    }

    /// Writers for the leaves of field `f` in row group `g`.
    fn writers(&self, f: usize, g: usize) -> Result<Vec<ArrowColumnWriter>> {
        let factory = match self.factories[f].get() {
            Some(factory) => factory,
            None => {
                let one = Arc::new(Schema::new(vec![self.schema.field(f).clone()]));
                let (_, made) =
                    ArrowWriter::try_new(std::io::sink(), one, Some(self.props.clone()))?
                        .into_serialized_writer()?;
                self.factories[f].get_or_init(|| made)
            }
        };
        Ok(factory.create_column_writers(g)?)
    }
}

/// Which of this crate's column writers encodes a column.
#[derive(Clone, Copy)]
enum Own {
    /// Strings with a dictionary: [`dict_column`].
    Strings,
    /// Integers and times: [`int_column`].
    Numbers,
    /// Strings without a dictionary: [`delta_strings`].
    Ids,
    /// Lists of strings with a dictionary: [`list_column`].
    Lists,
}

/// A column chunk encoded by parquet-rs or by one of this crate's column writers ([`Own`]).
enum Encoded {
    Arrow(parquet::arrow::arrow_writer::ArrowColumnChunk),
    Own(chunk::Chunk),
}

/// Rows to gather, as runs of consecutive rows of one batch, in output order.
#[derive(Debug, Default)]
pub struct Selection {
    /// (batch, first row, end row).
    runs: Vec<(usize, usize, usize)>,
    rows: usize,
}

impl Selection {
    /// Add rows `start..end` of batch `b` after those selected (joining the last run when
    /// they continue it).
    pub fn push(&mut self, b: usize, start: usize, end: usize) {
        if start >= end {
            return;
        }
        self.rows += end - start;
        match self.runs.last_mut() {
            Some((lb, _, le)) if *lb == b && *le == start => *le = end,
            _ => self.runs.push((b, start, end)),
        }
    }

    /// The runs selected, in order: (batch, first row, end row).
    pub fn runs(&self) -> &[(usize, usize, usize)] {
        &self.runs
    }

    /// Rows selected.
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.rows = 0;
    }

    /// The first `n` rows selected (all if fewer), taken out of `self`.
    pub fn split_front(&mut self, n: usize) -> Selection {
        if n >= self.rows {
            return std::mem::take(self);
        }
        // Whole runs before row `n`, then the part of the next one that comes before it.
        let (mut whole, mut taken) = (0, 0);
        while taken + (self.runs[whole].2 - self.runs[whole].1) <= n {
            taken += self.runs[whole].2 - self.runs[whole].1;
            whole += 1;
        }
        let mut runs: Vec<_> = self.runs.drain(..whole).collect();
        if taken < n {
            let (b, start, _) = self.runs[0];
            let cut = start + (n - taken);
            runs.push((b, start, cut));
            self.runs[0].1 = cut;
        }
        self.rows -= n;
        Selection { runs, rows: n }
    }
}

/// The rows `sel` selects from `batches`, in its order, as one batch.
///
/// Parsers hand over batches already sorted by time, so a file's time order mostly takes long
/// runs of consecutive rows from one batch, interrupted where neighbouring batches overlap in
/// time. Runs are copied whole (one copy of each column's bytes per run); rows that alternate
/// between batches are gathered one by one; a single run is a zero-copy slice. `sel` must not
/// be empty.
pub fn gather(batches: &[&RecordBatch], sel: &Selection) -> Result<RecordBatch> {
    let Some(first) = batches.first().filter(|_| !sel.is_empty()) else {
        return Err(Error::invalid(
            "gather needs rows and batches to take them from",
        ));
    };
    let plan = Gather::new(sel);
    let schema = first.schema();
    let columns = (0..schema.fields().len())
        .map(|c| plan.column(batches, c))
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Column `c` of the rows `sel` selects from `batches` (see [`gather`]).
pub fn gather_column(batches: &[&RecordBatch], sel: &Selection, c: usize) -> Result<ArrayRef> {
    Gather::new(sel).column(batches, c)
}

/// How the rows of a [`Selection`] are gathered, worked out once for all its columns: many
/// small inputs (S3 access logs arrive as thousands of files of overlapping times) make
/// selections of tens of thousands of one-row runs, and every column of a file reads the
/// same ones.
pub(super) enum Gather {
    /// One run: a zero-copy slice.
    Slice(usize, usize, usize),
    /// Runs long enough to copy whole: the batches used, and the runs over them.
    Runs(Vec<usize>, Vec<(usize, usize, usize)>),
    /// Rows one by one: the batches used, and (batch among them, row) for each row.
    Rows(Vec<usize>, Vec<(usize, usize)>),
}

impl Gather {
    pub(super) fn new(sel: &Selection) -> Self {
        let runs = &sel.runs;
        if let [(b, start, end)] = runs[..] {
            return Gather::Slice(b, start, end);
        }
        // Only the batches the runs read, renumbered.
        let mut used: Vec<usize> = runs.iter().map(|r| r.0).collect();
        used.sort_unstable();
        used.dedup();
        let mut local = vec![usize::MAX; used.last().map_or(0, |&b| b + 1)];
        for (i, &b) in used.iter().enumerate() {
            local[b] = i;
        }
        // Below a few rows a run, copying run by run costs more than one row at a time.
        if runs.len() * MIN_RUN > sel.rows {
            let mut idx: Vec<(usize, usize)> = Vec::with_capacity(sel.rows);
            for &(b, start, end) in runs {
                let b = local[b];
                idx.extend((start..end).map(|r| (b, r)));
            }
            Gather::Rows(used, idx)
        } else {
            let runs = runs.iter().map(|&(b, s, e)| (local[b], s, e)).collect();
            Gather::Runs(used, runs)
        }
    }

    /// Column `c` of the selected rows of `batches`.
    pub(super) fn column(&self, batches: &[&RecordBatch], c: usize) -> Result<ArrayRef> {
        Ok(match self {
            Gather::Slice(b, start, end) => batches[*b].column(c).slice(*start, end - start),
            Gather::Rows(used, idx) => {
                let arrays: Vec<&dyn Array> = used
                    .iter()
                    .map(|&b| batches[b].column(c).as_ref())
                    .collect();
                interleave(&arrays, idx)?
            }
            Gather::Runs(used, runs) => {
                let data: Vec<ArrayData> = used
                    .iter()
                    .map(|&b| batches[b].column(c).to_data())
                    .collect();
                let rows = runs.iter().map(|r| r.2 - r.1).sum();
                let mut out = MutableArrayData::new(data.iter().collect(), false, rows);
                for &(b, start, end) in runs {
                    out.try_extend(b, start, end)?;
                }
                make_array(out.freeze())
            }
        })
    }
}

/// Rows in time order that one batch holds consecutively from which [`encode`] writes them as
/// a slice of that batch instead of gathering them.
const LONG_RUN: usize = 1024;

/// Average run length from which [`gather`] copies runs instead of single rows.
const MIN_RUN: usize = 4;

/// A table's properties for one file of `rows` rows: row groups of [`balanced_row_group`].
pub fn file_properties(props: &WriterProperties, rows: usize) -> WriterProperties {
    match props.max_row_group_row_count() {
        Some(max) => props
            .clone()
            .into_builder()
            .set_max_row_group_row_count(Some(balanced_row_group(rows, max)))
            .build(),
        None => props.clone(),
    }
}

/// Rows per row group for a file of `rows` rows: equal row groups of up to a quarter more than
/// `max`, so that a file of 142k rows (what a day's buffer holds when the memory budget flushes
/// it) is one row group instead of 131,072 rows and a small remainder, whose per-column-chunk
/// costs (dictionary, page index, a short batch) every query would pay again.
pub fn balanced_row_group(rows: usize, max: usize) -> usize {
    let groups = rows.div_ceil(max + max / 4).max(1);
    rows.div_ceil(groups).max(1)
}

fn first_time(b: &RecordBatch, i: usize) -> i64 {
    b.column(i)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .and_then(|t| t.values().first().copied())
        .unwrap_or(i64::MIN)
}

fn last_time(b: &RecordBatch, i: usize) -> i64 {
    b.column(i)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .and_then(|t| t.values().last().copied())
        .unwrap_or(i64::MAX)
}

fn is_sorted(a: &dyn Array) -> bool {
    a.as_primitive_opt::<TimestampMicrosecondType>()
        .is_some_and(|t| t.null_count() == 0 && t.values().windows(2).all(|w| w[0] <= w[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Int64Array, ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray,
    };
    use arrow::compute::interleave_record_batch;
    use arrow::datatypes::{Fields, TimeUnit};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use proptest::prelude::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new(
                TIME_COLUMN,
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new_list("l", Field::new_list_field(DataType::Utf8, true), true),
        ]))
    }

    /// `n` times from `from`, `step` apart.
    fn times(from: i64, n: i64, step: i64) -> Vec<i64> {
        (0..n).map(|i| from + i * step).collect()
    }

    /// A flush job of `batches` for `table`, its files encoded as `cfg` says.
    fn job(table: Arc<TableSpec>, cfg: &WriterConfig, batches: Vec<RecordBatch>) -> FlushJob {
        FlushJob {
            props: Arc::new(table.properties(cfg).unwrap()),
            table,
            day: 0,
            batches,
            seq: 1,
            txn: "txn".into(),
        }
    }

    /// A batch of rows with the given times; row `i` has id `base + i`, a string (NULL every
    /// third row) and a list of strings (NULL every fifth).
    fn batch(base: i64, times: &[i64]) -> RecordBatch {
        let n = times.len() as i64;
        let ids = Int64Array::from_iter_values(base..base + n);
        let s =
            StringArray::from_iter((base..base + n).map(|i| (i % 3 != 0).then(|| format!("v{i}"))));
        let mut l = ListBuilder::new(StringBuilder::new());
        for i in base..base + n {
            if i % 5 == 0 {
                l.append_null();
            } else {
                l.values().append_value(format!("a{i}"));
                l.values().append_null();
                l.append(true);
            }
        }
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(times.to_vec())),
                Arc::new(ids),
                Arc::new(s),
                Arc::new(l.finish()),
            ],
        )
        .unwrap()
    }

    proptest! {
        /// Whatever the runs in `idx`, gathering gives what `interleave` gives.
        #[test]
        fn gather_is_interleave(runs in proptest::collection::vec((0usize..3, 0usize..40, 1usize..30), 1..40)) {
            let batches = [batch(0, &[0; 60]), batch(100, &[0; 70]), batch(200, &[0; 50])];
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let mut sel = Selection::default();
            let mut idx: Vec<(usize, usize)> = Vec::new();
            for &(b, start, len) in &runs {
                let end = (start + len).min(refs[b].num_rows());
                sel.push(b, start, end);
                idx.extend((start..end).map(|r| (b, r)));
            }
            prop_assert_eq!(sel.rows(), idx.len());
            let want = interleave_record_batch(&refs, &idx).unwrap();
            prop_assert_eq!(gather(&refs, &sel).unwrap(), want);
        }
    }

    proptest! {
        /// A batch splits into its days in ascending order, each holding exactly that day's
        /// rows in the batch's order: sliced when the batch is in time order, gathered when
        /// not (times before 1970 included).
        #[test]
        fn a_batch_splits_into_its_days_sorted_or_not(
            ts in prop::collection::vec(-2 * MICROS_PER_DAY..3 * MICROS_PER_DAY, 1..60),
        ) {
            let unsorted = batch(0, &ts);
            let sorted = sort_by_time(unsorted.clone()).unwrap();
            for b in [&unsorted, &sorted] {
                let times = event_times(b).unwrap();
                let ids = b.column(1).as_primitive::<arrow::datatypes::Int64Type>().values();
                let mut want: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
                for (t, id) in times.iter().zip(ids.iter()) {
                    want.entry(t.div_euclid(MICROS_PER_DAY)).or_default().push(*id);
                }
                let got: Vec<(i64, Vec<i64>)> = split_by_day(b, 0)
                    .unwrap()
                    .into_iter()
                    .map(|(d, rows)| {
                        let ids = rows.column(1).as_primitive::<arrow::datatypes::Int64Type>();
                        (d, ids.values().to_vec())
                    })
                    .collect();
                prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
            }
        }
    }

    /// Over budget, the (table, day) holding the most is flushed, its parts weighed together
    /// and flushed together: a table split in many parts does not push out another table's
    /// larger single buffer.
    #[test]
    fn parts_of_a_day_are_weighed_and_flushed_together() {
        let table =
            |name: &str| Arc::new(TableSpec::new("db", name, "T", schema(), vec![], vec![]));
        let rows = batch(0, &[0; 1000]);
        let one = rows.get_array_memory_size();
        let mut w = PartitionedWriter::new(
            "txn",
            WriterConfig {
                memory_budget: one * 4 + one / 2,
                ..WriterConfig::default()
            },
        );
        let logs = w.add_table(table("logs")).unwrap();
        let matches = w.add_table(table("matches")).unwrap();
        assert!(w.push(logs, rows.clone()).unwrap().is_empty());
        assert!(w.push(logs, rows.clone()).unwrap().is_empty());
        for part in 0..2 {
            assert!(w.push_part(matches, part, rows.clone()).unwrap().is_empty());
        }
        // A fifth batch: over budget. Matches hold three, logs two: all three parts go.
        let due = w.push_part(matches, 2, rows.clone()).unwrap();
        let flushed: Vec<(&str, usize)> = due
            .iter()
            .map(|j| {
                (
                    j.table.table.as_str(),
                    j.batches.iter().map(|b| b.num_rows()).sum(),
                )
            })
            .collect();
        assert_eq!(
            flushed,
            [("matches", 1000), ("matches", 1000), ("matches", 1000)]
        );
        let rest: Vec<(String, usize)> = w
            .finish()
            .iter()
            .map(|j| (j.table.table.clone(), j.batches.len()))
            .collect();
        assert_eq!(rest, [("logs".to_string(), 2)]);
    }

    #[test]
    fn a_day_is_handed_over_once_the_input_has_moved_past_it() {
        let day = |d: i64, n: usize| batch(0, &vec![d * MICROS_PER_DAY; n]);
        let one = day(0, 1000).get_array_memory_size();
        let mut w = PartitionedWriter::new(
            "txn",
            WriterConfig {
                // An eighth of the budget: two batches of 1000 rows.
                memory_budget: one * 16,
                ..WriterConfig::default()
            },
        );
        let t = w
            .add_table(Arc::new(TableSpec::new(
                "db",
                "logs",
                "T",
                schema(),
                vec![],
                vec![],
            )))
            .unwrap();
        let days = |jobs: Vec<FlushJob>| -> Vec<(i64, usize)> {
            jobs.iter()
                .map(|j| (j.day, j.batches.iter().map(|b| b.num_rows()).sum()))
                .collect()
        };
        // Day 0 (big enough), then day 1 (too small) and day 2: day 0 is handed over
        // COLD_TICKS ticks after its last rows, day 1 never (it stays for `finish`).
        for b in [day(0, 1000), day(0, 1000)] {
            assert!(w.tick().is_empty());
            assert!(w.push(t, b).unwrap().is_empty());
        }
        let mut due = vec![];
        for (i, b) in [day(1, 10), day(2, 1000), day(2, 1000), day(2, 1000)]
            .into_iter()
            .enumerate()
        {
            due = w.tick();
            if (i as u64) + 1 < COLD_TICKS {
                assert!(due.is_empty(), "tick {i}");
            }
            assert!(w.push(t, b).unwrap().is_empty());
        }
        assert_eq!(days(due), [(0, 2000)]);
        // Day 2, still receiving rows, is not handed over however long it lasts.
        for _ in 0..2 * COLD_TICKS {
            assert!(w.tick().is_empty());
            assert!(w.push(t, day(2, 10)).unwrap().is_empty());
        }
        assert_eq!(days(w.finish()), [(1, 10), (2, 3080)]);
    }

    #[test]
    fn batches_are_sorted_by_time_ties_in_row_order() {
        let b = batch(0, &[30, 10, 20, 10, 0]);
        let sorted = sort_by_time(b).unwrap();
        let ids = sorted
            .column(1)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(ids.values().to_vec(), [4, 1, 3, 2, 0]);
        // A sorted batch is handed back as it is, without a copy.
        let again = sort_by_time(sorted.clone()).unwrap();
        assert!(Arc::ptr_eq(again.column(2), sorted.column(2)));
    }

    /// Batches each sorted by time but overlapping each other, long enough for runs to be
    /// written as slices: the file holds every row once, in time order.
    #[test]
    fn encoded_files_are_in_time_order_whatever_the_runs() {
        let batches = vec![
            batch(0, &times(0, 3000, 10)),
            batch(10_000, &times(25_000, 3000, 10)),
            // Interleaves one by one with the end of the second.
            batch(20_000, &times(50_005, 400, 10)),
            batch(30_000, &times(-5, 2, 7)),
            batch(40_000, &[]),
        ];
        let table = Arc::new(TableSpec::new("db", "t", "T", schema(), vec![], vec![]));
        let (bytes, rows) = encode(&job(table, &WriterConfig::default(), batches.clone())).unwrap();
        assert_eq!(rows, 6402);
        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        let all = arrow::compute::concat_batches(&schema(), &read).unwrap();
        let t = all
            .column(0)
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec();
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "not in time order");
        // Every input row once, with its own values.
        let ids = all.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        let mut seen: Vec<i64> = ids.values().to_vec();
        seen.sort_unstable();
        let mut want: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        let s = all.column(2).as_string::<i32>();
        let l = all.column(3).as_list::<i32>();
        for (i, id) in ids.values().iter().enumerate() {
            assert_eq!(s.is_valid(i), id % 3 != 0);
            if s.is_valid(i) {
                assert_eq!(s.value(i), format!("v{id}"));
            }
            assert_eq!(l.is_valid(i), id % 5 != 0);
            if l.is_valid(i) {
                let items = l.value(i);
                let items = items.as_string::<i32>();
                assert_eq!(
                    (items.len(), items.value(0)),
                    (2, format!("a{id}").as_str())
                );
                assert!(items.is_null(1));
            }
        }
    }

    proptest! {
        /// Cutting selections into row groups keeps every row once, in order, and fills
        /// every group but the last.
        #[test]
        fn row_groups_keep_the_order(
            runs in proptest::collection::vec((0usize..3, 0usize..40, 1usize..30), 1..40),
            cuts in proptest::collection::vec(1usize..200, 1..6),
            group_rows in 1usize..150,
        ) {
            let mut order = Vec::new();
            let mut want: Vec<(usize, usize)> = Vec::new();
            let mut runs = runs.into_iter();
            for n in cuts {
                let mut sel = Selection::default();
                for (b, start, len) in runs.by_ref().take(n) {
                    sel.push(b, start, start + len);
                    want.extend((start..start + len).map(|r| (b, r)));
                }
                if !sel.is_empty() {
                    order.push(sel);
                }
            }
            let groups = row_groups(order, group_rows);
            let rows = |g: &Vec<Selection>| g.iter().map(Selection::rows).sum::<usize>();
            for g in groups.iter().rev().skip(1) {
                prop_assert_eq!(rows(g), group_rows);
            }
            let got: Vec<(usize, usize)> = groups
                .iter()
                .flatten()
                .flat_map(|s| s.runs.iter().flat_map(|&(b, start, end)| (start..end).map(move |r| (b, r))))
                .collect();
            prop_assert_eq!(got, want);
            for s in groups.iter().flatten() {
                prop_assert_eq!(s.rows(), s.runs.iter().map(|r| r.2 - r.1).sum::<usize>());
            }
        }
    }

    /// Columns encoded as tasks of their own give the file `ArrowWriter` writes from the same
    /// rows: same values, row groups, Arrow schema and sorting metadata, struct columns (more
    /// than one Parquet leaf) and bloom filters included.
    #[test]
    fn column_tasks_write_what_arrow_writer_writes() {
        use arrow::array::StructArray;
        let inner = Fields::from(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int64, true),
        ]);
        let mut fields: Vec<Field> = schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("st", DataType::Struct(inner.clone()), true));
        let wide = Arc::new(Schema::new(fields));
        let with_struct = |b: RecordBatch| {
            let n = b.num_rows();
            let ids = b
                .column(1)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone();
            let a = StringArray::from_iter(
                ids.values()
                    .iter()
                    .map(|i| (i % 4 != 0).then(|| format!("s{i}"))),
            );
            let st = StructArray::new(
                inner.clone(),
                vec![Arc::new(a), Arc::new(ids.clone())],
                Some((0..n).map(|i| ids.value(i) % 7 != 0).collect()),
            );
            let mut cols = b.columns().to_vec();
            cols.push(Arc::new(st));
            RecordBatch::try_new(wide.clone(), cols).unwrap()
        };
        let batches: Vec<RecordBatch> = [
            batch(0, &times(0, 3000, 10)),
            batch(10_000, &times(25_000, 3000, 10)),
            batch(20_000, &times(50_005, 400, 10)),
            batch(30_000, &times(3, 1500, 20)),
        ]
        .into_iter()
        .map(with_struct)
        .collect();
        let table = Arc::new(TableSpec::new(
            "db",
            "t",
            "T",
            wide.clone(),
            vec![],
            vec!["s".into()],
        ));
        let cfg = WriterConfig {
            row_group_rows: 2000,
            ..WriterConfig::default()
        };
        let job = job(table, &cfg, batches.clone());
        let (bytes, rows) = encode(&job).unwrap();
        assert_eq!(rows, 7900);

        // The reference: the same rows in the same order through ArrowWriter.
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let mut want = Vec::new();
        let order = write_order(&refs, 0).unwrap();
        let props =
            member_dictionary::adapt(file_properties(&job.props, rows), &wide, &refs, &order);
        let mut w = ArrowWriter::try_new(&mut want, wide.clone(), Some(props)).unwrap();
        for sel in order {
            w.write(&gather(&refs, &sel).unwrap()).unwrap();
        }
        w.close().unwrap();

        let read = |b: Vec<u8>| {
            let r = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(b)).unwrap();
            let md = r.metadata().clone();
            let all: Vec<RecordBatch> = r
                .build()
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            (md, arrow::compute::concat_batches(&wide, &all).unwrap())
        };
        let (got_md, got) = read(bytes);
        let (want_md, want) = read(want);
        assert_eq!(got, want);
        assert_eq!(
            got_md.num_row_groups(),
            4,
            "7900 rows in groups of up to 2000 (+25%)"
        );
        assert_eq!(
            got_md.file_metadata().key_value_metadata(),
            want_md.file_metadata().key_value_metadata()
        );
        for (g, w) in got_md.row_groups().iter().zip(want_md.row_groups()) {
            assert_eq!(g.num_rows(), w.num_rows());
            assert_eq!(g.sorting_columns(), w.sorting_columns());
            assert_eq!(g.num_columns(), 6, "the struct is two leaves");
            for (a, b) in g.columns().iter().zip(w.columns()) {
                assert_eq!(
                    a.compressed_size(),
                    b.compressed_size(),
                    "{}",
                    a.column_path()
                );
                assert_eq!(a.bloom_filter_length(), b.bloom_filter_length());
            }
            assert!(
                g.column(2).bloom_filter_offset().is_some(),
                "the schema's bloom filter"
            );
            // The struct's members are all distinct: no dictionary (`member_dictionary`).
            let encodings = |c: usize| g.column(c).encodings().collect::<Vec<_>>();
            assert!(!encodings(4).contains(&Encoding::RLE_DICTIONARY));
            assert!(encodings(5).contains(&Encoding::DELTA_BINARY_PACKED));
        }
    }

    #[test]
    fn row_groups_are_balanced_and_at_most_a_quarter_over() {
        let max = 131_072;
        assert_eq!(
            balanced_row_group(142_000, max),
            142_000,
            "one group, no remainder"
        );
        assert_eq!(balanced_row_group(163_840, max), 163_840);
        assert_eq!(balanced_row_group(163_841, max), 81_921, "two equal groups");
        assert_eq!(balanced_row_group(2_000_000, max), 153_847, "13 groups");
        assert_eq!(balanced_row_group(10, max), 10);
        assert_eq!(balanced_row_group(0, max), 1);
        for rows in [1, 1000, 131_072, 200_000, 1_000_000, 5_000_000] {
            let n = balanced_row_group(rows, max);
            assert!(n <= max + max / 4, "{rows}: {n}");
        }
    }

    /// A log type's `zstd_level` sets its table's level; its rule matches keep level 1 and
    /// other tables the writer's.
    #[test]
    fn a_schema_sets_its_tables_zstd_level() {
        let reg = crate::schema::Registry::builtin().unwrap();
        let level = |spec: TableSpec| {
            let props = spec.properties(&WriterConfig::default()).unwrap();
            props.compression(&ColumnPath::from("eventname"))
        };
        let ct = reg.get("AWS.CloudTrail").unwrap();
        assert_eq!(ct.zstd_level, Some(1));
        let one = Compression::ZSTD(ZstdLevel::try_new(1).unwrap());
        assert_eq!(level(TableSpec::for_log(&ct)), one);
        assert_eq!(level(TableSpec::rule_matches(&ct)), one);
        let s3 = reg.get("AWS.S3ServerAccess").unwrap();
        let props = TableSpec::for_log(&s3)
            .properties(&WriterConfig::default())
            .unwrap();
        assert_eq!(
            props.compression(&ColumnPath::from("key")),
            Compression::ZSTD(ZstdLevel::try_new(3).unwrap())
        );
    }
}
