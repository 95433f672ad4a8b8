//! Compaction: a day's small files merged into few large ones.
//!
//! Each ingest writes at least one file per day it touches, and a large ingest flushes a day
//! whenever the writer's memory budget fills, so frequent small ingests (a cron every few
//! minutes) or large unordered ones leave each day's folder with many small files. Every query
//! pays per file and per row group (listing, footers, a dictionary per column chunk), so
//! [`compact`] rewrites them: in each partition, the files smaller than a row group
//! ([`CompactOptions::small_rows`]) are grouped (in the order they were written; rule matches
//! by rule, as ingest writes them) into groups of at most [`CompactOptions::target_rows`] rows,
//! and each group of two or more becomes one file.
//!
//! Larger files are left alone on purpose: merging files whose times overlap interleaves their
//! rows, and rows from different sources side by side compress worse than each source's runs
//! (measured on ten generated 1M-line sources merged into one file per day: `key` and
//! `requesturi` twice as large, the table 14% larger) for little gain once a file holds full
//! row groups.
//!
//! Invariants:
//! - Rows are kept exactly: every file seclake writes is sorted by `p_event_time`, so a
//!   group's files are merged in time order by a streaming k-way merge (memory: the group's
//!   compressed files plus a batch per input) and encoded exactly as the writer encodes that
//!   table ([`TableSpec::properties`]); the merged file's row count must equal the sum of its
//!   inputs' or nothing is committed.
//! - Files whose schema is not the table's current one (a custom log type whose schema file
//!   changed) are left alone and reported.
//! - The new files and the files they replace go through the ingest commit protocol
//!   ([`super::commit`]): staged, then a commit record listing each new file with the files it
//!   replaces, then finalize moves each new file in and deletes what it replaces right after.
//!   A crash before the commit record leaves the old files; after it, the next ingest or
//!   compaction rolls forward. A reader listing a partition in the instant between one new
//!   file's move and its inputs' deletion (or across a crash there, until the roll forward)
//!   can see both, the same window a Hive table has; seclake's own queries re-list only when
//!   `_seclake/version` changes, which finalize writes last.
//! - Runs under the ingest lock, so no ingest adds files to a partition being merged.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::TimestampMicrosecondType;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;

use super::commit::{self, CommitRecord, FileMove};
use super::lock;
use super::writer::{Selection, TableSpec, WriterConfig, file_properties, gather};
use super::{LOGS_DB, Lake, QUARANTINE_DB, RULE_MATCHES_DB, paths};
use crate::error::{Error, Result};
use crate::schema::Registry;

/// Rows gathered per write while merging.
const GATHER_ROWS: usize = 8192;

/// Groups merged per transaction: a crash loses at most this much work.
const GROUPS_PER_COMMIT: usize = 32;

/// What to compact and how.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// `db.table` or `table` names; empty means every table seclake writes.
    pub tables: Vec<String>,
    /// Files with fewer rows are merged...
    pub small_rows: u64,
    /// ... into files of at most this many rows.
    pub target_rows: u64,
    /// Plan only: report what would be merged.
    pub dry_run: bool,
    /// Groups merged at once.
    pub threads: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        let writer = WriterConfig::default();
        CompactOptions {
            tables: vec![],
            small_rows: writer.row_group_rows as u64,
            target_rows: writer.rows_per_file as u64,
            dry_run: false,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl CompactOptions {
    fn selects(&self, db: &str, table: &str) -> bool {
        self.tables.is_empty() || self.tables.iter().any(|n| names(n, db, table))
    }
}

/// Whether `name` (`table` or `db.table`) names `db.table`.
fn names(name: &str, db: &str, table: &str) -> bool {
    name == table || name.strip_prefix(db).and_then(|r| r.strip_prefix('.')) == Some(table)
}

/// What compaction did (or, on a dry run, would do) to one table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableCompaction {
    pub db: String,
    pub table: String,
    /// Partitions with at least one group merged.
    pub partitions: usize,
    /// Files merged, and the files they became.
    pub files_in: usize,
    pub files_out: usize,
    pub rows: u64,
    pub bytes_in: u64,
    /// Bytes of the new files (0 on a dry run).
    pub bytes_out: u64,
    /// Files left alone because their schema is not the table's current one.
    pub other_schema: Vec<String>,
}

/// What [`compact`] did.
#[derive(Debug, Default, Clone)]
pub struct CompactSummary {
    pub tables: Vec<TableCompaction>,
    /// Tables named on the command line that seclake cannot rewrite (not one of its log,
    /// rule-match or quarantine tables), with the reason.
    pub skipped: Vec<(String, String)>,
    pub elapsed: Duration,
}

/// One output file: the inputs it merges, in the order they were written.
#[derive(Debug, Clone)]
struct Group {
    day: (i32, u32, u32),
    inputs: Vec<ObjectMeta>,
    rows: u64,
}

/// Compact the lake's tables (see the module docs). Takes the ingest lock.
pub async fn compact(
    lake: &Lake,
    registry: &Registry,
    opts: &CompactOptions,
) -> Result<CompactSummary> {
    lock::holding(lake, "ingest", compact_locked(lake, registry, opts)).await
}

async fn compact_locked(
    lake: &Lake,
    registry: &Registry,
    opts: &CompactOptions,
) -> Result<CompactSummary> {
    let start = Instant::now();
    commit::recover(lake).await?;
    let mut summary = CompactSummary::default();
    let cfg = WriterConfig::default();
    let tables = lake.tables().await?;
    for name in &opts.tables {
        if !tables.iter().any(|(d, t)| names(name, d, t)) {
            let known: Vec<String> = tables.iter().map(|(d, t)| format!("{d}.{t}")).collect();
            return Err(Error::invalid(format!(
                "no table {name:?} in the lake (there are: {})",
                known.join(", ")
            )));
        }
    }
    for (db, table) in tables {
        if !opts.selects(&db, &table) {
            continue;
        }
        let Some(spec) = table_spec(registry, &db, &table) else {
            if !opts.tables.is_empty() {
                summary.skipped.push((
                    format!("{db}.{table}"),
                    "not a log, rule-match or quarantine table of a known log type".into(),
                ));
            }
            continue;
        };
        let spec = Arc::new(spec);
        let props = Arc::new(spec.properties(&cfg)?);
        let (groups, other_schema) = plan(lake, &spec, opts).await?;
        let mut done = TableCompaction {
            db: db.clone(),
            table: table.clone(),
            partitions: groups
                .iter()
                .map(|g| g.day)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            files_in: groups.iter().map(|g| g.inputs.len()).sum(),
            files_out: groups.len(),
            rows: groups.iter().map(|g| g.rows).sum(),
            bytes_in: groups.iter().flat_map(|g| &g.inputs).map(|m| m.size).sum(),
            bytes_out: 0,
            other_schema,
        };
        if !opts.dry_run {
            for chunk in groups.chunks(GROUPS_PER_COMMIT) {
                done.bytes_out += merge_and_commit(lake, &spec, &props, chunk, opts).await?;
            }
        }
        if done.files_in > 0 || !done.other_schema.is_empty() {
            summary.tables.push(done);
        }
    }
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// The writer's spec for a table seclake writes, from the log type whose table it is.
fn table_spec(registry: &Registry, db: &str, table: &str) -> Option<TableSpec> {
    let schema = registry.iter().find(|s| s.table() == table)?;
    match db {
        LOGS_DB => Some(TableSpec::for_log(schema)),
        RULE_MATCHES_DB => Some(TableSpec::rule_matches(schema)),
        QUARANTINE_DB => Some(TableSpec::quarantine(schema)),
        _ => None,
    }
}

/// The groups to merge in `spec`'s table, and the files left alone for their schema.
async fn plan(
    lake: &Lake,
    spec: &TableSpec,
    opts: &CompactOptions,
) -> Result<(Vec<Group>, Vec<String>)> {
    let mut partitions: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for meta in lake.data_files(&spec.db, &spec.table).await? {
        if let Some((dir, _)) = meta.location.as_ref().rsplit_once('/') {
            partitions.entry(dir.to_string()).or_default().push(meta);
        }
    }
    let mut groups = Vec::new();
    let mut other_schema = Vec::new();
    for (dir, mut files) in partitions {
        let Some(day) = paths::partition_of(&dir) else {
            continue;
        };
        if files.len() < 2 {
            continue;
        }
        // Names start with the transaction id, which sorts by time: the order written.
        files.sort_by(|a, b| a.location.cmp(&b.location));
        let footers: Vec<_> = futures::stream::iter(files.iter().map(|m| lake.parquet_metadata(m)))
            .buffered(16)
            .try_collect()
            .await?;
        // Rule matches stay apart by rule (ingest writes each rule's to files of their own):
        // a file joins the group of its rule, or of files of mixed or unknown rules.
        let mut current: BTreeMap<Option<Vec<u8>>, Group> = BTreeMap::new();
        for (meta, md) in files.into_iter().zip(footers) {
            let rows = md.file_metadata().num_rows() as u64;
            let schema = parquet::arrow::parquet_to_arrow_schema(
                md.file_metadata().schema_descr(),
                md.file_metadata().key_value_metadata(),
            )?;
            if schema.fields() != spec.schema.fields() {
                other_schema.push(meta.location.to_string());
                continue;
            }
            if rows >= opts.small_rows.min(opts.target_rows) {
                continue;
            }
            let part = (spec.db == RULE_MATCHES_DB)
                .then(|| single_value(&md, "p_rule_id"))
                .flatten();
            match current.get_mut(&part) {
                Some(g) if g.rows + rows <= opts.target_rows => {
                    g.rows += rows;
                    g.inputs.push(meta);
                }
                _ => {
                    groups.extend(current.remove(&part).filter(|g| g.inputs.len() > 1));
                    current.insert(
                        part,
                        Group {
                            day,
                            inputs: vec![meta],
                            rows,
                        },
                    );
                }
            }
        }
        groups.extend(current.into_values().filter(|g| g.inputs.len() > 1));
    }
    Ok((groups, other_schema))
}

/// The one value `column` holds in every row group of a file, by its statistics; `None` when
/// it holds several or the statistics do not say.
fn single_value(md: &ParquetMetaData, column: &str) -> Option<Vec<u8>> {
    let descr = md.file_metadata().schema_descr();
    let i = (0..descr.num_columns()).find(|&i| descr.column(i).path().string() == column)?;
    let mut value: Option<&[u8]> = None;
    for rg in md.row_groups() {
        let stats = rg.column(i).statistics()?;
        let (min, max) = (stats.min_bytes_opt()?, stats.max_bytes_opt()?);
        if min != max || value.is_some_and(|v| v != min) {
            return None;
        }
        value = Some(min);
    }
    value.map(<[u8]>::to_vec)
}

/// Merge each group into a staged file and commit them in one transaction; returns the bytes
/// written.
async fn merge_and_commit(
    lake: &Lake,
    spec: &Arc<TableSpec>,
    props: &Arc<WriterProperties>,
    groups: &[Group],
    opts: &CompactOptions,
) -> Result<u64> {
    let txn = commit::new_txn_id();
    let files: Vec<FileMove> = futures::stream::iter(groups.iter().enumerate())
        .map(|(i, g)| {
            let txn = txn.clone();
            async move {
                let inputs: Vec<Bytes> = futures::stream::iter(&g.inputs)
                    .map(|m| async move {
                        lake.store()
                            .get(&m.location)
                            .await?
                            .bytes()
                            .await
                            .map_err(Error::from)
                    })
                    .buffered(8)
                    .try_collect()
                    .await?;
                let (task_spec, props) = (spec.clone(), props.clone());
                let names: Vec<String> = g.inputs.iter().map(|m| m.location.to_string()).collect();
                let task_names = names.clone();
                let file_rows = g.rows as usize;
                let (bytes, rows) = tokio::task::spawn_blocking(move || {
                    merge(
                        &task_spec,
                        file_properties(&props, file_rows),
                        inputs,
                        &task_names,
                    )
                })
                .await
                .map_err(|e| Error::invalid(format!("compaction task failed: {e}")))??;
                if rows != g.rows {
                    return Err(Error::invalid(format!(
                        "compacting {}: merged {rows} rows from inputs holding {}; nothing \
                         was changed",
                        g.inputs[0].location, g.rows
                    )));
                }
                let seq = i as u32 + 1;
                let staged = paths::staging_file(&txn, seq);
                let mv = FileMove {
                    staged: staged.to_string(),
                    target: paths::data_file(&spec.db, &spec.table, g.day, &txn, seq).to_string(),
                    rows,
                    bytes: bytes.len() as u64,
                    replaces: names,
                };
                lake.put(&staged, bytes).await?;
                Ok::<_, Error>(mv)
            }
        })
        .buffered(opts.threads.max(1))
        .try_collect()
        .await?;
    let written = files.iter().map(|f| f.bytes).sum();
    let record = CommitRecord {
        txn,
        created_at: chrono::Utc::now().to_rfc3339(),
        files,
        sources: vec![],
    };
    commit::commit(lake, &record).await?;
    Ok(written)
}

/// One input of a merge: its reader, the batch being read (at `slot` of the held batches)
/// and the next row.
struct Cursor {
    name: String,
    reader: ParquetRecordBatchReader,
    slot: usize,
    times: ScalarBuffer<i64>,
    row: usize,
}

impl Cursor {
    /// Load the next non-empty batch into `held`; false when the input is done. Fails when the
    /// input is not sorted by time (merging it would not give a sorted file).
    fn advance(&mut self, held: &mut Vec<RecordBatch>, time_idx: usize) -> Result<bool> {
        let last = self.times.last().copied();
        for batch in self.reader.by_ref() {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let times = batch
                .column(time_idx)
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| {
                    Error::invalid(format!("{}: p_event_time is not a timestamp", self.name))
                })?
                .values()
                .clone();
            let sorted =
                times.windows(2).all(|w| w[0] <= w[1]) && last.is_none_or(|l| l <= times[0]);
            if !sorted {
                return Err(Error::invalid(format!(
                    "{}: rows are not sorted by p_event_time; not compacted",
                    self.name
                )));
            }
            held.push(batch);
            self.slot = held.len() - 1;
            self.times = times;
            self.row = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Merge sorted Parquet files (`inputs`, named `names` in errors) into one file encoded with
/// `props`, rows in `p_event_time` order (ties in input order). Returns the file and its rows.
fn merge(
    spec: &TableSpec,
    props: WriterProperties,
    inputs: Vec<Bytes>,
    names: &[String],
) -> Result<(Vec<u8>, u64)> {
    let time_idx = spec.time_idx();
    let size: usize = inputs.iter().map(Bytes::len).sum();
    let mut out = Vec::with_capacity(size + size / 8);
    let mut w = ArrowWriter::try_new(&mut out, spec.schema.clone(), Some(props))?;
    let mut held: Vec<RecordBatch> = Vec::new();
    let mut cursors: Vec<Option<Cursor>> = Vec::with_capacity(inputs.len());
    let mut heap = BinaryHeap::new();
    for (i, (bytes, name)) in inputs.into_iter().zip(names).enumerate() {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(|e| Error::invalid(format!("{name}: {e}")))?
            .with_batch_size(GATHER_ROWS)
            .build()?;
        let mut c = Cursor {
            name: name.clone(),
            reader,
            slot: 0,
            times: ScalarBuffer::from(Vec::<i64>::new()),
            row: 0,
        };
        if c.advance(&mut held, time_idx)? {
            heap.push(Reverse((c.times[0], i)));
            cursors.push(Some(c));
        } else {
            cursors.push(None);
        }
    }
    let mut sel = Selection::default();
    let mut rows = 0u64;
    while let Some(Reverse((_, i))) = heap.pop() {
        // Take rows from input `i` while they come before every other input's next row.
        let bound = heap.peek().map(|r| r.0);
        loop {
            let c = cursors[i].as_mut().expect("a cursor in the heap is live");
            let room = GATHER_ROWS - sel.rows();
            let start = c.row;
            let mut end = start;
            while end < c.times.len()
                && end - start < room
                && bound.is_none_or(|b| (c.times[end], i) <= b)
            {
                end += 1;
            }
            sel.push(c.slot, start, end);
            c.row = end;
            let next = c.times.get(end).copied();
            if sel.rows() == GATHER_ROWS {
                rows += write_gathered(&mut w, spec, &mut held, &mut cursors, &mut sel)?;
            }
            match next {
                // Batch done: go on with the input's next batch, if any.
                None => {
                    let c = cursors[i].as_mut().expect("live");
                    if !c.advance(&mut held, time_idx)? {
                        cursors[i] = None;
                        break;
                    }
                }
                Some(t) if bound.is_some_and(|b| (t, i) > b) => {
                    heap.push(Reverse((t, i)));
                    break;
                }
                // Stopped for room only.
                Some(_) => {}
            }
        }
    }
    rows += write_gathered(&mut w, spec, &mut held, &mut cursors, &mut sel)?;
    w.close()?;
    Ok((out, rows))
}

/// Write the rows `sel` selects (slots of `held`), then keep only the batches live cursors
/// still read. Returns the rows written.
fn write_gathered(
    w: &mut ArrowWriter<&mut Vec<u8>>,
    spec: &TableSpec,
    held: &mut Vec<RecordBatch>,
    cursors: &mut [Option<Cursor>],
    sel: &mut Selection,
) -> Result<u64> {
    if sel.is_empty() {
        return Ok(0);
    }
    let refs: Vec<&RecordBatch> = held.iter().collect();
    let batch = gather(&refs, sel)?;
    // The inputs' schema is the table's (checked when planning), up to metadata.
    let batch = RecordBatch::try_new(spec.schema.clone(), batch.columns().to_vec())?;
    w.write(&batch)?;
    let n = sel.rows() as u64;
    sel.clear();
    let mut kept = Vec::with_capacity(cursors.len());
    for c in cursors.iter_mut().flatten() {
        kept.push(held[c.slot].clone());
        c.slot = kept.len() - 1;
    }
    *held = kept;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn spec() -> TableSpec {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("p_event_time", crate::schema::TIMESTAMP, false),
        ]));
        TableSpec::new("db", "t", "T", schema, vec![], vec![])
    }

    fn file(spec: &TableSpec, rows: &[(i64, i64)]) -> Bytes {
        let (v, t): (Vec<i64>, Vec<i64>) = rows.iter().copied().unzip();
        let batch = RecordBatch::try_new(
            spec.schema.clone(),
            vec![
                Arc::new(Int64Array::from(v)),
                Arc::new(TimestampMicrosecondArray::from(t)),
            ],
        )
        .unwrap();
        let mut buf = Vec::new();
        let props = WriterProperties::builder()
            // A few row groups per file.
            .set_max_row_group_row_count(Some((rows.len() / 3).max(2)))
            .build();
        let mut w = ArrowWriter::try_new(&mut buf, spec.schema.clone(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Bytes::from(buf)
    }

    fn read(bytes: Vec<u8>) -> Vec<(i64, i64)> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let v = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let t = b.column(1).as_primitive::<TimestampMicrosecondType>();
            out.extend(v.values().iter().copied().zip(t.values().iter().copied()));
        }
        out
    }

    #[test]
    fn merges_sorted_inputs_in_time_order_keeping_every_row() {
        let spec = spec();
        let props = spec.properties(&WriterConfig::default()).unwrap();
        // Interleaved, overlapping, equal times across inputs, one input disjoint.
        let a = file(&spec, &[(1, 10), (2, 20), (3, 20), (4, 50), (5, 60)]);
        let b = file(&spec, &[(11, 5), (12, 20), (13, 55)]);
        let c = file(&spec, &[(21, 100), (22, 101)]);
        let names = ["a".to_string(), "b".into(), "c".into()];
        let (out, rows) = merge(&spec, props, vec![a, b, c], &names).unwrap();
        assert_eq!(rows, 10);
        let got = read(out);
        assert_eq!(
            got,
            vec![
                (11, 5),
                (1, 10),
                (2, 20),
                (3, 20),
                (12, 20),
                (4, 50),
                (13, 55),
                (5, 60),
                (21, 100),
                (22, 101)
            ]
        );
    }

    #[test]
    fn merges_more_rows_than_one_gather() {
        let spec = spec();
        let props = spec.properties(&WriterConfig::default()).unwrap();
        let n = GATHER_ROWS as i64 * 2 + 17;
        let evens: Vec<(i64, i64)> = (0..n).map(|i| (i, 2 * i)).collect();
        let odds: Vec<(i64, i64)> = (0..n).map(|i| (n + i, 2 * i + 1)).collect();
        let names = ["e".to_string(), "o".into()];
        let (out, rows) = merge(
            &spec,
            props,
            vec![file(&spec, &evens), file(&spec, &odds)],
            &names,
        )
        .unwrap();
        assert_eq!(rows, 2 * n as u64);
        let times: Vec<i64> = read(out).into_iter().map(|(_, t)| t).collect();
        assert_eq!(times, (0..2 * n).collect::<Vec<_>>());
    }

    #[test]
    fn an_unsorted_input_is_refused_by_name() {
        let spec = spec();
        let props = spec.properties(&WriterConfig::default()).unwrap();
        let a = file(&spec, &[(1, 10), (2, 5)]);
        let b = file(&spec, &[(3, 1)]);
        let names = ["year=2020/a.parquet".to_string(), "b".into()];
        let err = merge(&spec, props, vec![a, b], &names)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("year=2020/a.parquet") && err.contains("not sorted"),
            "{err}"
        );
    }
}
