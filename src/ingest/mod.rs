//! Ingest: sources → parse → Parquet tables, exactly once.
//!
//! [`ingest`] expands its arguments into files, takes the lake's ingest lock, recovers any
//! interrupted transaction ([`crate::lake::commit::recover`]), skips sources already in the
//! ledger, detects each remaining file's log type, and ingests them in transactions of up to
//! [`IngestOptions::txn_bytes`] input bytes (so many small files share few output files).
//!
//! Inside a transaction the work is a pipeline of threads with bounded queues (memory does not
//! grow with input size): one reader splits input into chunks of whole lines (or, for a file
//! the parser reads as one document, such as CloudTrail's `{"Records": [...]}`, passes the
//! file as stored, to be gunzipped on a parser thread); files under 1 MiB (`SMALL_FILE`) are
//! read whole and several go out in one chunk, parsed together into one batch
//! ([`Parser::parse_parts`]), and so do documents of at most 64 KiB as stored (a CloudTrail
//! delivery of a few dozen records), inflated on the reader ([`Parser::parse_documents`]);
//! larger plain local files go out as memory-mapped windows ([`source::MappedLines`]), not
//! copied; `threads` parsers turn chunks into Arrow batches (repeated strings interned as
//! dictionaries, [`LogSchema::batch_schema`]), one writer
//! takes them in the order the chunks were read (so the same input gives the same files, row
//! for row, and the same alerts on every run) and groups rows by
//! table and day, handing over each day as soon as the input has moved past it
//! ([`PartitionedWriter::tick`]), and `threads` encoders write Parquet files to staging. Files
//! are encoded one at a time, each on every core (its columns are tasks on the rayon pool), and
//! staged (a local write, an S3 upload) while the next is encoded: on time-ordered input the
//! memory in use is then about two days of rows, reused day after day, where encoding files side
//! by side would hold more days for no gain in speed (the page faults of fresh memory were a
//! sixth of an ingest's time, BENCHMARKS.md). The transaction then commits.
//!
//! Detection: when [`IngestOptions::rules`] holds rules, the parser threads evaluate them on
//! every batch they produce; the writer counts the matches into alerts ([`AlertBook`]) and
//! writes them to `panther_rule_matches.<table>`, each rule's to files of their own. The
//! transaction's alert versions and outbox items are staged and committed with its data, then
//! pending alerts are delivered.
//!
//! Guarantees: every non-blank input line of a committed source is in the lake exactly once,
//! as a row or as a quarantined line (`rows + quarantined == lines`). A source that fails to
//! read (missing, unreadable, corrupt gzip) is reported by name and contributes nothing; the
//! transaction is retried without it.
//!
//! Files that grow: a local file is read up to the size it had when found, and its ledger
//! entry marks the bytes of whole lines read, their count and a fingerprint of them
//! ([`TextMark`]). A file found again under the same path, longer (a new identity) but still
//! starting with those bytes, is read on from there ([`source::Resume`]), its lines numbered
//! on; a last line stored cut short (a writer mid-line) is read again whole. A local file
//! under another path whose first line and fingerprint are those of a marked file is a copy
//! (a log rotation's `app.log.1`, or `app.log.2.gz` read through gunzip) and is read on from
//! the same point (`resume`). A file that changed otherwise is ingested whole again, with a
//! note. Objects, which are replaced rather than appended to, are always read whole.

pub mod source;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use crossbeam_channel::{Receiver, Sender, bounded};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::detect::alert::{self, AlertBook, Detection};
use crate::detect::eval::{RuleMatches, RuleSet};
use crate::detect::rule::Rule;
use crate::detect::sink::{self, DeliveryReport};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::lake::commit::{self, CommitRecord, FileMove, LabelMark, LedgerEntry, TextMark};
use crate::lake::lock;
use crate::lake::writer::{
    FlushJob, PartitionedWriter, TableSpec, WriterConfig, encode_job, quarantine_schema, stage,
};
use crate::parse::json::JsonParser;
use crate::parse::standard::{repeat, row_ids};
use crate::parse::{Parser, Quarantined, SourceInfo, parser_for};
use crate::schema::{LogSchema, ParserKind, Registry};
pub use source::Source;

/// Bytes of small objects kept in memory after reading their heads to detect the log type,
/// so they are not fetched twice (beyond it, they are fetched again when parsed).
const SNIFF_KEEP_BYTES: u64 = 256 << 20;

/// Bytes a chunk buffer holds beyond a chunk, for the partial line carried into it.
const CARRY_ROOM: usize = 64 << 10;

/// Files whose text is smaller than this are read whole and packed with other small files
/// into one chunk (see `read_sources`).
const SMALL_FILE: usize = 1 << 20;

/// Bytes of a file read first to tell its log type (see [`TypeDetector::settled`]).
const QUICK_HEAD: usize = 8 << 10;

/// How to ingest.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Log type for every input; detected per file when `None`.
    pub log_type: Option<String>,
    /// Parser and encoder threads.
    pub threads: usize,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
    /// Input bytes per transaction.
    pub txn_bytes: u64,
    /// Bytes per parse chunk.
    pub chunk_bytes: usize,
    /// File sizes and encoding.
    pub writer: WriterConfig,
    /// Rules to evaluate on every batch (none: no detection).
    pub rules: Vec<Arc<Rule>>,
    /// Destinations for raised alerts.
    pub config: Config,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            log_type: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            progress: true,
            txn_bytes: 2 << 30,
            chunk_bytes: 4 << 20,
            writer: WriterConfig::default(),
            rules: Vec::new(),
            config: Config::default(),
        }
    }
}

/// Counts for one table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableCounts {
    pub rows: u64,
    pub quarantined: u64,
}

/// What an ingest did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Files found from the arguments.
    pub files_seen: usize,
    /// Files ingested now.
    pub files_ingested: usize,
    /// Files skipped as already in the ledger.
    pub files_skipped: usize,
    /// Files set aside as resource snapshots, not logs (each also has a note).
    pub not_logs: usize,
    /// Files that could not be ingested, with the reason.
    pub failed: Vec<(String, String)>,
    /// Non-blank lines read from ingested files.
    pub lines: u64,
    /// Rows written.
    pub rows: u64,
    /// Lines quarantined.
    pub quarantined: u64,
    /// Input bytes of ingested files (as stored, compressed or not).
    pub bytes: u64,
    /// Files written to tables.
    pub files_written: usize,
    /// Parquet bytes written.
    pub bytes_written: u64,
    /// Per table (`db.table`).
    pub tables: std::collections::BTreeMap<String, TableCounts>,
    /// Transactions recovered before starting: (rolled forward, rolled back).
    pub recovered: (usize, usize),
    /// Notes about ingested files that are not errors (file, note), e.g. a digest file
    /// skipped because it holds no records.
    pub notes: Vec<(String, String)>,
    /// Events that matched a rule.
    pub rule_matches: u64,
    /// Alerts raised (threshold reached) by this ingest.
    pub alerts_raised: usize,
    /// Alerts created or updated by this ingest, raised or not.
    pub alerts_changed: usize,
    /// Alert delivery after the last commit.
    pub delivery: DeliveryReport,
    pub elapsed: Duration,
}

/// Rules compiled per log type, and the alert state they update.
struct Detector {
    sets: HashMap<String, Arc<RuleSet>>,
    book: Mutex<AlertBook>,
}

impl Detector {
    fn new(rules: &[Arc<Rule>], schemas: &[Arc<LogSchema>], book: AlertBook) -> Result<Self> {
        let mut sets = HashMap::new();
        for s in schemas {
            if !sets.contains_key(&s.log_type) {
                // Against the batches the parsers make (some strings as dictionaries).
                let set = RuleSet::compile(rules, &s.log_type, &s.batch_schema())?;
                if !set.rules.is_empty() {
                    sets.insert(s.log_type.clone(), Arc::new(set));
                }
            }
        }
        Ok(Detector {
            sets,
            book: Mutex::new(book),
        })
    }

    fn book(&self) -> std::sync::MutexGuard<'_, AlertBook> {
        self.book.lock().expect("not poisoned")
    }
}

/// Ingest `args` (files, folders, globs) into `lake`.
pub async fn ingest(
    lake: &Lake,
    registry: &Registry,
    args: &[String],
    opts: &IngestOptions,
) -> Result<Summary> {
    let start = Instant::now();
    let mut summary = Summary::default();
    let found = source::discover(args, lake.stores()).await?;
    summary.files_seen = found.len();
    let forced = opts
        .log_type
        .as_deref()
        .map(|t| registry.get(t))
        .transpose()?;

    let result = lock::holding(lake, "ingest", async {
        let rec = commit::recover(lake).await?;
        summary.recovered = (rec.rolled_forward.len(), rec.rolled_back.len());
        let mut ledger = commit::Ledger::load(lake).await?;
        if ledger.needs_compaction() {
            ledger.compact(lake).await?;
        }
        crate::detect::alert::compact(lake).await?;
        let (ledger, marks, by_first_line) = (ledger.ids, ledger.marks, ledger.by_first_line);

        let mut fresh = Vec::new();
        for f in found {
            match f {
                source::Found::Failed(name, why) => summary.failed.push((name, why)),
                // Skipped by identity alone: an object in the ledger is not downloaded.
                source::Found::Source(src) if ledger.contains(&src.info.id) => {
                    summary.files_skipped += 1;
                }
                source::Found::Source(mut src) => {
                    if let Some(note) = resume(&mut src, &marks, &by_first_line) {
                        summary.notes.push((src.label().to_string(), note));
                    }
                    fresh.push(src)
                }
            }
        }
        let mut todo: Vec<(Source, Arc<LogSchema>)> = Vec::new();
        if let Some(schema) = &forced {
            todo.extend(fresh.into_iter().map(|s| (s, schema.clone())));
        } else {
            let types = Arc::new(TypeDetector::new(registry)?);
            // A first line tells an access log, a first record a JSON type: read a few KiB of
            // each file first, and the whole head only of files that this does not settle
            // (JSON records can be long). Thousands of small files would otherwise be read
            // half again to be sniffed.
            let judge = |quick: bool| {
                let types = types.clone();
                move |head: &[u8]| {
                    let cut = quick && head.len() == QUICK_HEAD;
                    // Judged as text: a byte-order mark (Windows tools) is not its first line.
                    let head = crate::parse::strip_bom(head);
                    if cut && !types.settled(head) {
                        return Ok(Sniffed::NeedsMore);
                    }
                    match types.detect(head) {
                        Ok(schema) => Ok(Sniffed::Log(schema)),
                        // What is not a log is judged on the whole head (a snapshot, an error
                        // quoting the first line).
                        Err(_) if cut => Ok(Sniffed::NeedsMore),
                        Err(_) if crate::policy::resource::looks_like_snapshot(head) => {
                            Ok(Sniffed::Snapshot)
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            let mut sniffed = Vec::with_capacity(fresh.len());
            let mut again = Vec::new();
            for (i, (src, verdict)) in
                source::sniff_all(fresh, SNIFF_KEEP_BYTES, QUICK_HEAD, judge(true))
                    .await
                    .into_iter()
                    .enumerate()
            {
                match verdict {
                    Ok(Sniffed::NeedsMore) => again.push((i, src)),
                    verdict => sniffed.push((i, src, verdict)),
                }
            }
            let (at, srcs): (Vec<usize>, Vec<Source>) = again.into_iter().unzip();
            let verdicts =
                source::sniff_all(srcs, SNIFF_KEEP_BYTES, source::HEAD_BYTES, judge(false)).await;
            sniffed.extend(at.into_iter().zip(verdicts).map(|(i, (s, v))| (i, s, v)));
            sniffed.sort_by_key(|(i, _, _)| *i);
            for (_, src, verdict) in sniffed {
                let label = src.info.label.clone();
                match verdict {
                    Ok(Sniffed::Log(schema)) => todo.push((src, schema)),
                    // Bucket configurations in a folder of logs: say where they go instead of
                    // failing the ingest; not ledgered, so each run says it again.
                    Ok(Sniffed::Snapshot) => {
                        summary.not_logs += 1;
                        summary.notes.push((
                            label,
                            "a resource snapshot (S3 bucket configurations), not a log; store \
                             it with `seclake resources ingest`"
                                .into(),
                        ));
                    }
                    Ok(Sniffed::NeedsMore) => unreachable!("a whole head is always judged"),
                    Err(e) => summary.failed.push((label, e.to_string())),
                }
            }
        }

        let detector = if opts.rules.is_empty() {
            None
        } else {
            let schemas: Vec<_> = todo.iter().map(|(_, s)| s.clone()).collect();
            let book = AlertBook::load(lake).await?;
            Some(Arc::new(Detector::new(&opts.rules, &schemas, book)?))
        };
        let total: u64 = todo.iter().map(|(s, _)| s.remaining()).sum();
        let pb = progress_bar(opts.progress, total);
        let parse_time = chrono::Utc::now().timestamp_micros();
        for group in groups(todo, opts.txn_bytes) {
            let mut group = group;
            while !group.is_empty() {
                // A retry without a failed source reads the rest again: the bar goes back.
                let shown = pb.position();
                let txn = commit::new_txn_id();
                let run = {
                    let (lake, group2, opts2, pb2, txn2, det) = (
                        lake.clone(),
                        group.clone(),
                        opts.clone(),
                        pb.clone(),
                        txn.clone(),
                        detector.clone(),
                    );
                    let rt = tokio::runtime::Handle::current();
                    tokio::task::spawn_blocking(move || {
                        run_txn(
                            &lake,
                            &rt,
                            &txn2,
                            &group2,
                            &opts2,
                            parse_time,
                            &pb2,
                            det.as_deref(),
                        )
                    })
                    .await
                    .map_err(|e| Error::invalid(format!("ingest worker panicked: {e}")))?
                };
                match run {
                    Ok(out) => {
                        let mut record = out.record(&txn, &group);
                        if let Some(d) = &detector {
                            let staged = stage_alerts(lake, &txn, d, opts).await;
                            match staged {
                                Ok(moves) => record.files.extend(moves),
                                Err(e) => {
                                    d.book().rollback();
                                    commit::recover(lake).await?;
                                    return Err(e);
                                }
                            }
                        }
                        if let Err(e) = commit::commit(lake, &record).await {
                            if let Some(d) = &detector {
                                d.book().rollback();
                            }
                            // Leave the lake as it was, or finish the commit if its record
                            // landed; a store still failing leaves that to the next run.
                            let _ = commit::recover(lake).await;
                            return Err(e);
                        }
                        if let Some(d) = &detector {
                            let mut book = d.book();
                            summary.alerts_raised += book.newly_raised().len();
                            summary.alerts_changed += book.changes().len();
                            book.commit();
                        }
                        summary.rule_matches += out.matches;
                        for ((src, _), c) in group.iter().zip(&out.counts) {
                            for n in &c.notes {
                                summary.notes.push((src.info.label.clone(), n.clone()));
                            }
                        }
                        summary.add(&record, &group);
                        break;
                    }
                    Err(TxnError::Source(i, e)) => {
                        if let Some(d) = &detector {
                            d.book().rollback();
                        }
                        commit::recover(lake).await?;
                        let (src, _) = group.remove(i);
                        summary.failed.push((src.info.label.clone(), e.to_string()));
                        // The failed source's bytes count as done.
                        pb.set_position(shown + src.size);
                    }
                    Err(TxnError::Other(e)) => {
                        if let Some(d) = &detector {
                            d.book().rollback();
                        }
                        commit::recover(lake).await?;
                        return Err(e);
                    }
                }
            }
        }
        pb.finish_and_clear();
        summary.delivery = sink::deliver_pending(lake, &opts.config).await?;
        Ok(())
    })
    .await;
    result?;
    summary.elapsed = start.elapsed();
    Ok(summary)
}

impl Summary {
    fn add(&mut self, record: &CommitRecord, group: &[(Source, Arc<LogSchema>)]) {
        self.files_ingested += record.sources.len();
        for ((src, _), s) in group.iter().zip(&record.sources) {
            self.lines += s.lines;
            self.rows += s.rows;
            self.quarantined += s.quarantined;
            // Read this time: a file that grew, from where the last ingest stopped.
            self.bytes += src.remaining();
        }
        for f in record.files.iter().filter(|f| !is_state(&f.target)) {
            self.files_written += 1;
            self.bytes_written += f.bytes;
        }
        for ((_, schema), s) in group.iter().zip(&record.sources) {
            let e = self
                .tables
                .entry(format!("{}.{}", crate::lake::LOGS_DB, schema.table()))
                .or_default();
            e.rows += s.rows;
            e.quarantined += s.quarantined;
        }
    }
}

/// Whether a key is seclake's own state rather than table data.
fn is_state(key: &str) -> bool {
    key.starts_with(crate::lake::paths::STATE)
}

/// Stage the open transaction's alert changes; the moves to commit with it.
async fn stage_alerts(
    lake: &Lake,
    txn: &str,
    d: &Detector,
    opts: &IngestOptions,
) -> Result<Vec<FileMove>> {
    // Stage from a snapshot so the book's lock is not held across awaits.
    let snapshot = {
        let book = d.book();
        AlertBook::snapshot_of(&book)
    };
    alert::stage(
        lake,
        txn,
        &crate::lake::paths::staging_dir(txn),
        &snapshot,
        |a| crate::detect::destinations_for(&opts.config, &opts.rules, a),
    )
    .await
}

fn progress_bar(enabled: bool, total: u64) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} ingest [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

/// Split sources into transactions of about `limit` input bytes each.
fn groups(todo: Vec<(Source, Arc<LogSchema>)>, limit: u64) -> Vec<Vec<(Source, Arc<LogSchema>)>> {
    let mut out: Vec<Vec<_>> = Vec::new();
    let mut size = 0;
    for item in todo {
        if out.is_empty() || (size + item.0.size > limit && size > 0) {
            out.push(Vec::new());
            size = 0;
        }
        size += item.0.size;
        out.last_mut().expect("pushed").push(item);
    }
    out
}

/// What a file's head says it is.
enum Sniffed {
    /// A log of this type.
    Log(Arc<LogSchema>),
    /// A resource snapshot (S3 bucket configurations), not a log.
    Snapshot,
    /// A quick head that does not settle the type: read the whole head.
    NeedsMore,
}

/// Tells a file's log type from its first bytes. Built once per ingest: each JSON log type's
/// schema is compiled into a parser, which reads the heads.
pub struct TypeDetector {
    types: Vec<(Arc<LogSchema>, Option<JsonParser>)>,
}

impl TypeDetector {
    /// For every log type of `registry`.
    pub fn new(registry: &Registry) -> Result<Self> {
        let types = registry
            .iter()
            .map(|schema| {
                let json = match schema.parser {
                    ParserKind::Json => Some(JsonParser::new(schema.clone())?),
                    ParserKind::S3Access => None,
                };
                Ok((schema.clone(), json))
            })
            .collect::<Result<_>>()?;
        Ok(TypeDetector { types })
    }

    /// Whether `head`, a prefix of a file, tells its type as a longer prefix would: its first
    /// line is complete and an access log's (which [`TypeDetector::detect`] prefers to any
    /// JSON type), or the record each JSON type reads is whole in it
    /// ([`JsonParser::detect_settled`]).
    pub fn settled(&self, head: &[u8]) -> bool {
        self.settled_by_first_line(head)
            || (self.types.iter())
                .all(|(_, json)| json.as_ref().is_none_or(|p| p.detect_settled(head)))
    }

    /// Whether `head`'s first line is complete and an access log's.
    fn settled_by_first_line(&self, head: &[u8]) -> bool {
        let Some(end) = head.iter().position(|&b| b == b'\n') else {
            return false;
        };
        let line = crate::parse::lines(&head[..=end], 1)
            .map(|(_, l)| l)
            .find(|l| !crate::parse::is_blank(l));
        line.is_some_and(|l| {
            self.types.iter().any(|(_, json)| json.is_none())
                && crate::parse::s3_access::looks_like(l)
        })
    }

    /// Detect a file's log type: an S3 access log line, or a JSON record (or envelope of
    /// records) with every key a JSON log type's `detect` lists; when several JSON types fit,
    /// the one that lists the most keys wins.
    pub fn detect(&self, head: &[u8]) -> Result<Arc<LogSchema>> {
        let line = crate::parse::lines(head, 1)
            .map(|(_, l)| l)
            .find(|l| !crate::parse::is_blank(l));
        let Some(line) = line else {
            // Nothing to parse: any type records it as ingested with zero lines.
            return self
                .types
                .first()
                .map(|(s, _)| s.clone())
                .ok_or_else(|| Error::invalid("no log types are defined"));
        };
        let mut best: Option<(usize, &Arc<LogSchema>)> = None;
        for (schema, json) in &self.types {
            let score = match json {
                Some(parser) => parser.detect_score(head),
                None => crate::parse::s3_access::looks_like(line).then_some(usize::MAX),
            };
            if let Some(score) = score
                && best.is_none_or(|(b, _)| score > b)
            {
                best = Some((score, schema));
            }
        }
        if let Some((_, schema)) = best {
            return Ok(schema.clone());
        }
        if looks_binary(head) {
            return Err(Error::invalid(
                "cannot tell the log type: the content is binary, neither text nor gzip (logs \
                 are UTF-8 text, plain or gzip-compressed)",
            ));
        }
        let shown: String = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        Err(Error::invalid(format!(
            "cannot tell the log type (first line starts {shown:?}); pass --log-type, or \
             --schemas DIR with the schema of a log type of your own"
        )))
    }
}

/// True when `head` (a file's first decompressed bytes) is not text: a NUL byte, or control
/// characters other than tabs and line ends in more than one byte in 32 (the test `file` and
/// git make, in short). Only used to word the error for a file no log type recognises.
fn looks_binary(head: &[u8]) -> bool {
    let control = head
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
        .count();
    head.contains(&0) || control * 32 > head.len()
}

/// Per-source counts within a transaction.
#[derive(Debug, Default, Clone)]
struct SourceCounts {
    lines: u64,
    rows: u64,
    quarantined: u64,
    notes: Vec<String>,
}

/// What a transaction produced before commit.
#[derive(Debug)]
struct TxnOutput {
    files: Vec<FileMove>,
    counts: Vec<SourceCounts>,
    matches: u64,
    /// Each local text source's whole lines read: (bytes up to the last line end, line ends).
    marks: Vec<Option<(u64, u64)>>,
}

impl TxnOutput {
    fn record(&self, txn: &str, group: &[(Source, Arc<LogSchema>)]) -> CommitRecord {
        let now = chrono::Utc::now().to_rfc3339();
        CommitRecord {
            txn: txn.into(),
            created_at: now.clone(),
            files: self.files.clone(),
            sources: group
                .iter()
                .zip(&self.counts)
                .zip(&self.marks)
                .map(|(((src, schema), c), mark)| LedgerEntry {
                    source_id: src.info.id.clone(),
                    label: src.info.label.clone(),
                    log_type: schema.log_type.clone(),
                    bytes: src.size,
                    lines: c.lines,
                    rows: c.rows,
                    quarantined: c.quarantined,
                    txn: txn.into(),
                    ingested_at: now.clone(),
                    mark: mark.and_then(|(complete, lines)| text_mark(src, complete, lines)),
                })
                .collect(),
        }
    }
}

/// Where a local file not yet ingested under its identity continues what an earlier ingest
/// stored, and the note that says so: a file that grew under its path is read on from its last
/// whole line; a copy of a file ingested before (renamed, or gzipped, by a log rotation) from
/// where that file stopped; a file that changed otherwise is read whole.
fn resume(
    src: &mut Source,
    marks: &HashMap<String, LabelMark>,
    by_first_line: &HashMap<String, LabelMark>,
) -> Option<String> {
    let by_path = marks.get(src.label()).map(|m| &m.mark);
    let mark = if by_path.is_some_and(|m| src.resume_after(m)) {
        by_path.map(|m| (m, None))
    } else {
        // Only hash the file's first line when a mark could answer it.
        let copied = (!by_first_line.is_empty())
            .then(|| src.first_line_key())
            .flatten()
            .and_then(|key| by_first_line.get(&key))
            .filter(|m| m.label != src.label() && src.resume_after(&m.mark));
        copied.map(|m| (&m.mark, Some(&m.label)))
    };
    let Some((mark, copied_from)) = mark else {
        return by_path.map(|_| {
            "changed since it was ingested (not by appending): ingested again whole".to_string()
        });
    };
    let on = format!("reading on from line {}", mark.lines + 1);
    Some(match copied_from {
        Some(label) => format!("holds the lines of {label} ingested before: {on}"),
        None if src.remaining() == 0 => {
            "touched since it was ingested, not changed: nothing new".to_string()
        }
        None => format!("grew since it was ingested: {on}"),
    })
}

/// The ledger's mark of a local text file read up to `complete` bytes of whole lines, `lines`
/// of them; `None` when the file cannot be fingerprinted (gone already): read whole next time.
fn text_mark(src: &Source, complete: u64, lines: u64) -> Option<TextMark> {
    let source::Origin::File(path) = &src.origin else {
        return None;
    };
    let (_, head, tail) = source::text_ends(path, complete).ok()?;
    Some(TextMark::from_ends(&head, &tail, complete, lines))
}

/// `(complete, line ends)` of a local text source read from `offset` (after `base` line ends)
/// as `text`: see [`TextMark`].
fn whole_lines(offset: u64, base: u64, text: &[u8]) -> (u64, u64) {
    let complete = memchr::memrchr(b'\n', text).map_or(0, |p| p + 1);
    let ends = memchr::memchr_iter(b'\n', &text[..complete]).count() as u64;
    (offset + complete as u64, base + ends)
}

enum TxnError {
    /// Source `i` of the group could not be read.
    Source(usize, Error),
    Other(Error),
}

impl From<Error> for TxnError {
    fn from(e: Error) -> Self {
        TxnError::Other(e)
    }
}

struct Chunk {
    /// Position in the order chunks were read (see [`InOrder`]).
    seq: u64,
    /// What `data` holds: part of one file, or several small files of one log type whole
    /// (see [`SMALL_FILE`]), parsed together ([`Parser::parse_parts`]).
    parts: Vec<Part>,
    data: ChunkData,
    /// The parts are whole documents, for [`Parser::parse_documents`]: one file as stored
    /// (maybe gzip), for the parser thread to decompress (so files are decompressed in
    /// parallel), or small files already decompressed on the reader.
    whole: Option<Whole>,
}

/// The bytes of a [`Chunk`].
enum ChunkData {
    /// A buffer, back to the reader (`spare`) once parsed.
    Buf(Vec<u8>),
    /// Whole lines of a large plain file, mapped ([`source::MappedLines`]); unmapped once
    /// parsed.
    Mapped(source::Window),
}

impl std::ops::Deref for ChunkData {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ChunkData::Buf(v) => v,
            ChunkData::Mapped(w) => &w.map[..w.end],
        }
    }
}

impl From<Vec<u8>> for ChunkData {
    fn from(v: Vec<u8>) -> Self {
        ChunkData::Buf(v)
    }
}

impl ChunkData {
    fn into_vec(self) -> Vec<u8> {
        match self {
            ChunkData::Buf(v) => v,
            ChunkData::Mapped(_) => self.to_vec(),
        }
    }

    /// Give a buffer back to the reader; unmap a window.
    fn recycle(self, spare: &Sender<Vec<u8>>) {
        if let ChunkData::Buf(v) = self {
            let _ = spare.try_send(v);
        }
    }
}

/// How whole files are in a [`Chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whole {
    AsStored,
    Decompressed,
}

/// Lines of one source in a chunk: `data[start..end]`, its first line numbered `first_line`.
#[derive(Debug, Clone, Copy)]
struct Part {
    src: usize,
    first_line: u64,
    start: usize,
    end: usize,
}

struct ParsedMsg {
    /// The parsed chunk's [`Chunk::seq`].
    seq: u64,
    /// The first part's source (all parts of a chunk share its log type).
    src: usize,
    /// Each part's source and what parsed from it, its rows moved to `batch` (counted in
    /// the `u64`).
    result: Result<Vec<(usize, crate::parse::Parsed, u64)>, TxnError>,
    /// The chunk's rows, sorted by time.
    batch: Option<RecordBatch>,
    /// Rules that matched rows of the parsed batch: (rule index in the log type's set, rows).
    hits: Vec<(usize, RuleMatches)>,
}

/// Run one transaction's pipeline to staged files (not yet committed).
#[allow(clippy::too_many_arguments)]
fn run_txn(
    lake: &Lake,
    rt: &tokio::runtime::Handle,
    txn: &str,
    group: &[(Source, Arc<LogSchema>)],
    opts: &IngestOptions,
    parse_time: i64,
    pb: &ProgressBar,
    detector: Option<&Detector>,
) -> Result<TxnOutput, TxnError> {
    let threads = opts.threads.max(1);
    // One parser per log type, shared by its sources: a parser sizes its builders from what
    // it parsed before, which a parser per file never learns (perf: 5,000 small files grew
    // their string columns by copying, 15% of the ingest's page faults).
    let mut by_type: HashMap<&str, Arc<dyn Parser>> = HashMap::new();
    let parsers: Vec<Arc<dyn Parser>> = group
        .iter()
        .map(|(_, s)| match by_type.get(s.log_type.as_str()) {
            Some(p) => Ok(p.clone()),
            None => {
                let p = parser_for(s.clone())?;
                by_type.insert(&s.log_type, p.clone());
                Ok(p)
            }
        })
        .collect::<Result<_>>()?;
    let (chunk_tx, chunk_rx) = bounded::<Chunk>(threads * 2);
    // Chunk buffers the parsers are done with, for the reader to fill again.
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(threads * 2 + 2);
    let (parsed_tx, parsed_rx) = bounded::<ParsedMsg>(threads * 2);
    // One credit per chunk read and not yet written: the writer takes chunks in read order,
    // so without this a slow chunk (a large document) would let the others pile up behind it.
    let in_flight = threads * 4 + 2;
    let (credit_tx, credit_rx) = bounded::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = credit_tx.send(());
    }
    let (job_tx, job_rx) = bounded::<FlushJob>(0);
    let files = Mutex::new(Vec::new());
    let encoding = Mutex::new(());
    let first_error: Mutex<Option<TxnError>> = Mutex::new(None);
    let fail = |e: TxnError| {
        let mut slot = first_error.lock().expect("not poisoned");
        slot.get_or_insert(e);
    };

    let sets: Vec<Option<Arc<RuleSet>>> = group
        .iter()
        .map(|(_, s)| detector.and_then(|d| d.sets.get(&s.log_type).cloned()))
        .collect();
    let mut counts = vec![SourceCounts::default(); group.len()];
    let mut marks = vec![None; group.len()];
    let mut matches = 0u64;
    let read_result = std::thread::scope(|s| {
        for _ in 0..threads {
            let (rx, tx) = (chunk_rx.clone(), parsed_tx.clone());
            let spare = spare_tx.clone();
            let parsers = &parsers;
            let group = &group;
            let sets = &sets;
            s.spawn(move || parse_worker(rx, tx, spare, parsers, sets, group, parse_time));
        }
        drop(parsed_tx);
        for _ in 0..threads {
            let rx = job_rx.clone();
            let (files, fail, encoding) = (&files, &fail, &encoding);
            s.spawn(move || {
                loop {
                    // One file encoded at a time (see the module doc); the lock is taken
                    // before the job so that a waiting encoder does not hold a day of rows.
                    let permit = encoding.lock().expect("not poisoned");
                    let Ok(job) = rx.recv() else { break };
                    let encoded = encode_job(&job);
                    drop(job);
                    drop(permit);
                    match encoded.and_then(|(bytes, mv)| stage(lake, rt, bytes, mv)) {
                        Ok(f) => files.lock().expect("not poisoned").push(f),
                        Err(e) => fail(e.into()),
                    }
                }
            });
        }
        drop(job_rx);
        let counts = &mut counts;
        let matches = &mut matches;
        let fail = &fail;
        let sets = &sets;
        let writer = s.spawn(move || {
            let out = Output {
                counts,
                matches,
                sets,
                detector,
            };
            let parsed = InOrder::new(parsed_rx, credit_tx);
            if let Err(e) = write_loop(parsed, job_tx, group, txn, opts, parse_time, out) {
                fail(e);
            }
        });
        let read = read_sources(
            rt,
            group,
            &parsers,
            opts.chunk_bytes,
            (&chunk_tx, &spare_rx, &credit_rx),
            pb,
            &first_error,
            &mut marks,
        );
        drop(chunk_tx);
        let _ = writer.join();
        read
    });
    if let Some(e) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    read_result?;
    Ok(TxnOutput {
        files: files.into_inner().expect("not poisoned"),
        counts,
        matches,
        marks,
    })
}

#[allow(clippy::too_many_arguments)]
fn read_sources(
    rt: &tokio::runtime::Handle,
    group: &[(Source, Arc<LogSchema>)],
    parsers: &[Arc<dyn Parser>],
    chunk_bytes: usize,
    (tx, spare, credits): (&Sender<Chunk>, &Receiver<Vec<u8>>, &Receiver<()>),
    pb: &ProgressBar,
    failed: &Mutex<Option<TxnError>>,
    marks: &mut [Option<(u64, u64)>],
) -> Result<(), TxnError> {
    let mut prefetch =
        source::Prefetch::new(rt.clone(), group.iter().map(|(s, _)| s.clone()).collect());
    // Every chunk goes out with the next read position, once the writer has room for one more
    // (a credit, see `InOrder`); false when the pipeline has stopped.
    let mut seq = 0u64;
    let mut send = |parts: Vec<Part>, data: ChunkData, whole: Option<Whole>| {
        if credits.recv().is_err() {
            return false;
        }
        let chunk = Chunk {
            seq,
            parts,
            data,
            whole,
        };
        seq += 1;
        tx.send(chunk).is_ok()
    };
    // Small files read whole, waiting to go out together in one chunk: lines, or (when
    // `pack_docs`) whole documents.
    let mut pack: Vec<Part> = Vec::new();
    let mut pack_data: Vec<u8> = Vec::new();
    let mut pack_docs = false;
    // The progress bar counts input as stored (its total is the sources' sizes): bytes read
    // as they are read, and what was not read through `Counting` (a file read twice, bytes
    // fetched whole) once its source is done.
    let counted = Arc::new(AtomicU64::new(0));
    let done = |src: &Source| {
        pb.inc(
            src.remaining()
                .saturating_sub(counted.swap(0, Ordering::Relaxed)),
        )
    };
    for (i, (src, schema)) in group.iter().enumerate() {
        if let Some((previous, _)) = i.checked_sub(1).map(|p| &group[p]) {
            done(previous);
        }
        let source_err = |e: std::io::Error| TxnError::Source(i, src.io_error(e));
        let input = match prefetch.open(i).map_err(|e| TxnError::Source(i, e))? {
            source::Input::Reader(r) => source::Input::Reader(Box::new(Counting {
                inner: r,
                pb: pb.clone(),
                counted: counted.clone(),
            })),
            fetched => fetched,
        };
        // A file of no more than a head's bytes as stored is read and decompressed whole, once:
        // its head read through a streaming gunzip, then the document inflated again on a
        // parser thread, cost more than parsing a CloudTrail delivery of a few dozen records
        // (perf, 5,000 such files: 15% of the ingest in zlib). Larger files keep their
        // decompression on the parser threads.
        let stored_len = match &input {
            source::Input::Fetched(b) => b.len() as u64,
            source::Input::Reader(_) => src.remaining(),
        };
        // A local file not compressed is text whose whole lines the ledger marks, counted on
        // from where an earlier ingest stopped.
        let (offset, base) = src.resume.map_or((0, 0), |r| (r.offset, r.lines));
        let mut text_file = None;
        // The file's bytes kept from opening it, and how.
        let (stored, mut reader): (Option<(bytes::Bytes, Whole)>, Box<dyn Read + Send>) =
            if stored_len <= source::HEAD_BYTES as u64 {
                let bytes = match input {
                    source::Input::Fetched(b) => Vec::from(b),
                    source::Input::Reader(mut r) => {
                        let mut v = Vec::with_capacity(stored_len as usize);
                        r.read_to_end(&mut v).map_err(source_err)?;
                        v
                    }
                };
                text_file = Some(!source::is_gzip(&bytes));
                let mut text = bytes::Bytes::from(source::decompress(bytes).map_err(source_err)?);
                if let Some(r) = src.resume.filter(|r| r.gzip) {
                    text = text.slice((r.offset as usize).min(text.len())..);
                }
                let reader = Box::new(std::io::Cursor::new(text.clone()));
                (Some((text, Whole::Decompressed)), reader)
            } else {
                let stored = match &input {
                    source::Input::Fetched(b) => Some((b.clone(), Whole::AsStored)),
                    source::Input::Reader(_) => None,
                };
                let mut reader = input.decompressed().map_err(source_err)?;
                // A gzip copy of text ingested before: inflate past what was stored.
                if let Some(r) = src.resume.filter(|r| r.gzip) {
                    std::io::copy(&mut (&mut reader).take(r.offset), &mut std::io::sink())
                        .map_err(source_err)?;
                }
                (stored, reader)
            };
        // Asked only where the text is kept whole (mapped windows are plain by construction).
        let text_file = || match &src.origin {
            source::Origin::File(path) => {
                text_file.unwrap_or_else(|| !source::is_gzip_file(path).unwrap_or(true))
            }
            source::Origin::Object { .. } => false,
        };
        let mut head = Vec::with_capacity(source::HEAD_BYTES);
        (&mut reader)
            .take(source::HEAD_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(source_err)?;
        // The pack so far goes out before a file not packed, so that chunks keep the files'
        // order, and before a file of another log type (a pack holds one).
        let mut flush_pack = |pack: &mut Vec<Part>, pack_data: &mut Vec<u8>, docs: bool| {
            let whole = docs.then_some(Whole::Decompressed);
            pack.is_empty()
                || send(
                    std::mem::take(pack),
                    std::mem::take(pack_data).into(),
                    whole,
                )
        };
        let same_type = pack
            .first()
            .is_none_or(|p| group[p.src].1.log_type == schema.log_type);
        if !same_type && !flush_pack(&mut pack, &mut pack_data, pack_docs) {
            return Ok(());
        }
        // A pack holds small files of one log type, all documents or all lines.
        let mut into_pack = |text: &[u8],
                             docs: bool,
                             pack: &mut Vec<Part>,
                             pack_data: &mut Vec<u8>,
                             pack_docs: &mut bool| {
            if *pack_docs != docs && !flush_pack(pack, pack_data, *pack_docs) {
                return false;
            }
            *pack_docs = docs;
            if pack_data.capacity() == 0 {
                // Room for the last file that fits and one more, so that it is not grown.
                *pack_data = spare.try_recv().unwrap_or_default();
                pack_data.clear();
                pack_data.reserve(chunk_bytes + SMALL_FILE);
            }
            let start = pack_data.len();
            pack_data.extend_from_slice(text);
            pack.push(Part {
                src: i,
                first_line: base + 1,
                start,
                end: pack_data.len(),
            });
            pack_data.len() < chunk_bytes || flush_pack(pack, pack_data, docs)
        };
        if parsers[i].whole_document(crate::parse::strip_bom(&head)) {
            drop(reader);
            // A small file, decompressed here: its records go into one batch with its
            // neighbours' (`Parser::parse_documents`), like small files' lines.
            if let Some((text, Whole::Decompressed)) = &stored {
                if text_file() {
                    marks[i] = Some(whole_lines(offset, base, text));
                }
                if !into_pack(text, true, &mut pack, &mut pack_data, &mut pack_docs) {
                    return Ok(());
                }
                continue;
            }
            if !flush_pack(&mut pack, &mut pack_data, pack_docs) {
                return Ok(());
            }
            let data = match stored {
                Some((b, _)) => Vec::from(b),
                None => Vec::from(
                    rt.block_on(src.read_all())
                        .map_err(|e| TxnError::Source(i, e))?,
                ),
            };
            if text_file() {
                marks[i] = Some(whole_lines(offset, base, &data));
            }
            let part = Part {
                src: i,
                first_line: base + 1,
                start: 0,
                end: data.len(),
            };
            if !send(vec![part], data.into(), Some(Whole::AsStored)) {
                return Ok(());
            }
            continue;
        }
        // A small file is read whole and packed with its neighbours: as a chunk of its own
        // its few rows would be a batch of their own, and a day of small files whose times
        // overlap (as AWS delivers access logs) a merge of runs of a row or two.
        let mut first = head;
        if first.len() == source::HEAD_BYTES {
            (&mut reader)
                .take((SMALL_FILE - source::HEAD_BYTES) as u64)
                .read_to_end(&mut first)
                .map_err(source_err)?;
        }
        if first.len() < SMALL_FILE {
            if text_file() {
                marks[i] = Some(whole_lines(offset, base, &first));
            }
            if !into_pack(&first, false, &mut pack, &mut pack_data, &mut pack_docs) {
                return Ok(());
            }
            continue;
        }
        if !flush_pack(&mut pack, &mut pack_data, pack_docs) {
            return Ok(());
        }
        // Send whole lines, the chunk's first `end` bytes, numbered on from the last chunk's.
        let mut line = base + 1;
        let mut send_lines = |data: ChunkData, end: usize| {
            let first_line = line;
            line += memchr::memchr_iter(b'\n', &data[..end]).count() as u64;
            let part = Part {
                src: i,
                first_line,
                start: 0,
                end,
            };
            send(vec![part], data, None)
        };
        // A large plain file is read as mapped windows instead of copied into buffers.
        if let source::Origin::File(path) = &src.origin
            && let Some(mut windows) =
                source::MappedLines::open(path, offset..src.size, chunk_bytes)
                    .map_err(source_err)?
        {
            drop(reader);
            // The head was read and counted already.
            let mut uncounted = counted.load(Ordering::Relaxed);
            // Where the window starts, and where the last whole line read ends.
            let (mut at, mut complete) = (offset, offset);
            while let Some(window) = windows.next_window().map_err(source_err)? {
                if failed.lock().expect("not poisoned").is_some() {
                    return Ok(());
                }
                let n = window.end as u64;
                if let Some(p) = memchr::memrchr(b'\n', &window.map[..window.end]) {
                    complete = at + p as u64 + 1;
                }
                at += n;
                let count = n.saturating_sub(uncounted);
                uncounted = uncounted.saturating_sub(n);
                counted.fetch_add(count, Ordering::Relaxed);
                pb.inc(count);
                let end = window.end;
                if !send_lines(ChunkData::Mapped(window), end) {
                    return Ok(());
                }
            }
            marks[i] = Some((complete, line - 1));
            continue;
        }
        let mut reader = std::io::Cursor::new(first).chain(reader);
        let mut carry: Vec<u8> = Vec::new();
        loop {
            if failed.lock().expect("not poisoned").is_some() {
                return Ok(());
            }
            // A buffer the parsers are done with is filled in place: a new one would be zeroed
            // and faulted in page by page before `read` fills it (perf: a tenth of an ingest's
            // CPU went to reading input, most of it that).
            let mut buf = spare.try_recv().unwrap_or_default();
            let have = carry.len();
            if buf.len() < have + chunk_bytes {
                // Room for a line carried over as well, so that a recycled buffer is not grown
                // (a copy into fresh pages) by the next chunk's carry.
                buf.resize((have + chunk_bytes).max(chunk_bytes + CARRY_ROOM), 0);
            }
            buf[..have].copy_from_slice(&carry);
            let n = source::read_full(&mut reader, &mut buf[have..have + chunk_bytes])
                .map_err(source_err)?;
            let filled = have + n;
            if filled == 0 {
                break;
            }
            let eof = n < chunk_bytes;
            let cut = if eof {
                filled
            } else {
                match memchr::memrchr(b'\n', &buf[..filled]) {
                    Some(p) => p + 1,
                    // A line longer than the chunk: keep reading it.
                    None => {
                        carry = buf[..filled].to_vec();
                        continue;
                    }
                }
            };
            carry = buf[cut..filled].to_vec();
            if !send_lines(buf.into(), cut) {
                return Ok(());
            }
            if eof {
                break;
            }
        }
    }
    if let Some((last, _)) = group.last() {
        done(last);
    }
    if !pack.is_empty() {
        send(
            pack,
            pack_data.into(),
            pack_docs.then_some(Whole::Decompressed),
        );
    }
    Ok(())
}

/// Counts the bytes read of a source as stored into the progress bar and `counted`.
struct Counting<R> {
    inner: R,
    pb: ProgressBar,
    counted: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counted.fetch_add(n as u64, Ordering::Relaxed);
        self.pb.inc(n as u64);
        Ok(n)
    }
}

fn parse_worker(
    rx: Receiver<Chunk>,
    tx: Sender<ParsedMsg>,
    spare: Sender<Vec<u8>>,
    parsers: &[Arc<dyn Parser>],
    sets: &[Option<Arc<RuleSet>>],
    group: &[(Source, Arc<LogSchema>)],
    parse_time: i64,
) {
    for chunk in rx {
        let first_src = chunk.parts[0].src;
        let seq = chunk.seq;
        let (mut result, batch) = parse_parts(chunk, parsers, group, parse_time, &spare);
        let batch = match batch.map(crate::lake::writer::sort_by_time) {
            Some(Ok(sorted)) => Some(sorted),
            Some(Err(e)) => {
                result = Err(e.into());
                None
            }
            None => None,
        };
        let mut hits = Vec::new();
        if let (Ok(_), Some(set), Some(batch)) = (&result, &sets[first_src], &batch) {
            match set.eval(batch) {
                Ok(h) => hits = h,
                Err(e) => result = Err(e.into()),
            }
        }
        let msg = ParsedMsg {
            seq,
            src: first_src,
            result,
            batch,
            hits,
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Parse each part of `chunk` (a whole document, part of a file, or small files of one log
/// type): what each part gave, and the chunk's rows (unsorted). The
/// chunk's buffer goes back to the reader (`spare`) once parsed rows own their values.
#[allow(clippy::type_complexity)]
fn parse_parts(
    chunk: Chunk,
    parsers: &[Arc<dyn Parser>],
    group: &[(Source, Arc<LogSchema>)],
    parse_time: i64,
    spare: &Sender<Vec<u8>>,
) -> (
    Result<Vec<(usize, crate::parse::Parsed, u64)>, TxnError>,
    Option<RecordBatch>,
) {
    let Chunk {
        parts: chunk_parts,
        data,
        whole,
        ..
    } = chunk;
    let parser = &parsers[chunk_parts[0].src];
    let parsed: Vec<Result<crate::parse::Parsed, TxnError>> = if whole == Some(Whole::AsStored) {
        // One whole document as stored: decompressed in place.
        let part = &chunk_parts[0];
        let (source, _) = &group[part.src];
        vec![match source::decompress(data.into_vec()) {
            Ok(doc) => {
                let doc = crate::parse::strip_bom(&doc);
                (parser.parse_document(doc, &source.info, parse_time)).map_err(TxnError::Other)
            }
            Err(e) => Err(TxnError::Source(part.src, source.io_error(e))),
        }]
    } else {
        let parts: Vec<crate::parse::Part<'_>> = (chunk_parts.iter())
            .map(|part| crate::parse::Part {
                // A file's start (its first line) may carry a byte-order mark.
                text: match part.first_line {
                    1 => crate::parse::strip_bom(&data[part.start..part.end]),
                    _ => &data[part.start..part.end],
                },
                first_line: part.first_line,
                source: &group[part.src].0.info,
            })
            .collect();
        let parsed = match whole {
            Some(_) => parser.parse_documents(&parts, parse_time),
            None => parser.parse_parts(&parts, parse_time),
        };
        let parsed = match parsed {
            Ok(parsed) => parsed.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(TxnError::Other(e))],
        };
        drop(parts);
        data.recycle(spare);
        parsed
    };
    let mut parts = Vec::with_capacity(chunk_parts.len());
    let mut batch = None;
    for (part, parsed) in chunk_parts.iter().zip(parsed) {
        let mut parsed = match parsed {
            Ok(p) => p,
            Err(e) => return (Err(e), None),
        };
        // All the parts' rows are in the first part's batch (`Parser::parse_parts`).
        debug_assert!(batch.is_none() || parsed.batch.is_none());
        batch = batch.or(parsed.batch.take());
        let rows = parsed.lines - parsed.quarantined.len() as u64;
        parts.push((part.src, parsed, rows));
    }
    debug_assert_eq!(
        parts.iter().map(|(_, _, rows)| rows).sum::<u64>(),
        batch
            .as_ref()
            .map_or(0, |b: &RecordBatch| b.num_rows() as u64),
        "every line is a row or quarantined"
    );
    (Ok(parts), batch)
}

/// Parsed chunks in the order they were read, whichever parser thread finishes first: which
/// file a row lands in, the order of rows of the same time within a file, and the order rule
/// matches reach the alert book are then the same on every run over the same input. Chunks
/// parsed early wait here for those before them; each chunk handed over gives the reader back
/// the credit it took to read one more, so chunks read and not yet written stay bounded.
struct InOrder {
    rx: Receiver<ParsedMsg>,
    credits: Sender<()>,
    next: u64,
    early: std::collections::BTreeMap<u64, ParsedMsg>,
}

impl InOrder {
    fn new(rx: Receiver<ParsedMsg>, credits: Sender<()>) -> Self {
        Self {
            rx,
            credits,
            next: 0,
            early: Default::default(),
        }
    }

    fn hand_over(&mut self, msg: ParsedMsg) -> Option<ParsedMsg> {
        let _ = self.credits.try_send(());
        Some(msg)
    }
}

impl Iterator for InOrder {
    type Item = ParsedMsg;

    fn next(&mut self) -> Option<ParsedMsg> {
        loop {
            if let Some(msg) = self.early.remove(&self.next) {
                self.next += 1;
                return self.hand_over(msg);
            }
            match self.rx.recv() {
                Ok(msg) if msg.seq == self.next => {
                    self.next += 1;
                    return self.hand_over(msg);
                }
                Ok(msg) => {
                    self.early.insert(msg.seq, msg);
                }
                // Parsers are done. A gap means the reader stopped early (an error it reports
                // itself): what arrived is still handed over, in order.
                Err(_) => {
                    let (_, msg) = self.early.pop_first()?;
                    return self.hand_over(msg);
                }
            }
        }
    }
}

/// Where the writer loop reports, and what it needs for rule matches.
struct Output<'a> {
    counts: &'a mut [SourceCounts],
    matches: &'a mut u64,
    sets: &'a [Option<Arc<RuleSet>>],
    detector: Option<&'a Detector>,
}

fn write_loop(
    rx: InOrder,
    jobs: Sender<FlushJob>,
    group: &[(Source, Arc<LogSchema>)],
    txn: &str,
    opts: &IngestOptions,
    parse_time: i64,
    out: Output<'_>,
) -> Result<(), TxnError> {
    let Output {
        counts,
        matches,
        sets,
        detector,
    } = out;
    let mut writer = PartitionedWriter::new(txn, opts.writer.clone());
    let mut tables: HashMap<String, (usize, usize)> = HashMap::new();
    let mut match_tables: HashMap<String, usize> = HashMap::new();
    let mut detections: HashMap<String, Vec<Detection>> = HashMap::new();
    let send = |due: Vec<FlushJob>| -> Result<()> {
        for job in due {
            jobs.send(job)
                .map_err(|_| Error::invalid("encoder threads stopped"))?;
        }
        Ok(())
    };
    for msg in rx {
        let parts = msg.result?;
        let (_, schema) = &group[msg.src];
        let (data_t, quarantine_t) = match tables.get(&schema.log_type) {
            Some(t) => *t,
            None => {
                let d = writer.add_table(Arc::new(TableSpec::for_log(schema)))?;
                let q = writer.add_table(Arc::new(TableSpec::quarantine(schema)))?;
                tables.insert(schema.log_type.clone(), (d, q));
                (d, q)
            }
        };
        send(writer.tick())?;
        if let Some(batch) = msg.batch {
            send(writer.push(data_t, batch)?)?;
        }
        for (i, parsed, rows) in parts {
            let c = &mut counts[i];
            c.notes.extend(parsed.notes);
            c.lines += parsed.lines;
            c.rows += rows;
            c.quarantined += parsed.quarantined.len() as u64;
            if !parsed.quarantined.is_empty() {
                let info = &group[i].0.info;
                let q = quarantine_batch(&schema.log_type, info, &parsed.quarantined, parse_time)?;
                send(writer.push(quarantine_t, q)?)?;
            }
        }
        if msg.hits.is_empty() {
            continue;
        }
        let (Some(set), Some(det)) = (&sets[msg.src], detector) else {
            continue;
        };
        let t = match match_tables.get(&schema.log_type) {
            Some(t) => *t,
            None => {
                let t = writer.add_table(Arc::new(TableSpec::rule_matches(schema)))?;
                match_tables.insert(schema.log_type.clone(), t);
                t
            }
        };
        let spec_schema = writer.schema(t);
        let dets = detections
            .entry(schema.log_type.clone())
            .or_insert_with(|| {
                set.rules
                    .iter()
                    .map(|r| crate::detect::detection(&r.rule))
                    .collect()
            });
        for (i, m) in &msg.hits {
            let rule = &set.rules[*i].rule;
            let batch = {
                let mut book = det.book();
                crate::detect::matches::build(
                    rule,
                    &dets[*i],
                    m,
                    &mut book,
                    parse_time,
                    &spec_schema,
                )?
            };
            if let Some(b) = batch {
                *matches += b.num_rows() as u64;
                send(writer.push_part(t, *i as u32, b)?)?;
            }
        }
    }
    Ok(send(writer.finish())?)
}

/// Quarantined lines as a batch of the quarantine table.
pub fn quarantine_batch(
    log_type: &str,
    src: &SourceInfo,
    items: &[Quarantined],
    parse_time: i64,
) -> Result<RecordBatch> {
    let n = items.len();
    let lines: Vec<u64> = items.iter().map(|q| q.line).collect();
    let columns: Vec<ArrayRef> = vec![
        repeat(log_type, n),
        row_ids(&src.id, &lines),
        Arc::new(Int64Array::from_iter_values(
            lines.iter().map(|l| *l as i64),
        )),
        Arc::new(StringArray::from_iter_values(items.iter().map(|q| &q.raw))),
        Arc::new(StringArray::from_iter_values(
            items.iter().map(|q| &q.reason),
        )),
        repeat(&src.id, n),
        repeat(&src.label, n),
        Arc::new(TimestampMicrosecondArray::from(vec![parse_time; n])),
        Arc::new(TimestampMicrosecondArray::from(vec![parse_time; n])),
    ];
    Ok(RecordBatch::try_new(quarantine_schema(), columns)?)
}
