//! Scheduled and saved queries: `queries/scheduled/*.yml` and `queries/saved/*.yml`.
//!
//! ```yaml
//! QueryName: s3-object-errors
//! Schedule: {CronExpression: "0 * * * *", TimeoutMinutes: 5}   # or RateMinutes: 15
//! LookbackMinutes: 60
//! Query: |
//!   SELECT requester, COUNT(*) AS err_count FROM panther_logs.aws_s3serveraccess
//!   WHERE ${partitions} AND p_event_time >= ${window_start} AND p_event_time < ${window_end}
//!   GROUP BY requester
//! Threshold: {Condition: err_count > 100}     # or {Rows: 0}: more than N rows
//! Severity: Medium
//! Title: concat('S3 errors by ', requester)    # SQL over a result row
//! ```
//!
//! A query without `Schedule` is a saved query: run by name with `seclake query --saved` or
//! `\run` in the REPL. The window is `[slot - LookbackMinutes, slot)` where `slot` is the
//! schedule time the run is for (now, for saved queries). In the SQL, `${window_start}` and
//! `${window_end}` are `TIMESTAMP` literals and `${partitions}` is a predicate on the
//! `year`/`month`/`day` partition columns covering the window, so the query reads only those
//! folders; `Params` work as in rules.
//!
//! Running: [`Runner::run_due`] runs each enabled scheduled query whose schedule fired since its last
//! recorded run, once (missed slots collapse into the latest). A run holds the lock
//! `schedule-<name>` (a crashed holder's lock goes stale), runs the query read-only with its
//! timeout, turns results that cross the threshold into alerts through the shared pipeline
//! ([`super::alert`]), and commits, in one transaction, the alert versions, outbox items, the
//! rows that alerted (`_seclake/schedule/results/<name>/<slot>.parquet`) and the run record
//! (`_seclake/schedule/runs/<name>/<slot>.json`). A failed or timed-out run is recorded with
//! its error and counts as done: the next slot runs as usual.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use super::alert::{self, AlertBook, Detection, Origin};
use super::cron::Cron;
use super::eval::{compile_expr, expr_session, null_as_false};
use super::rule::{Severity, expand};
use super::sink;
use super::{day_number, ts_literal};
use crate::config::Config;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::lake::commit::{self, CommitRecord, FileMove};
use crate::lake::lock::{self, LockOptions};
use crate::lake::writer::{cast_batch, plain_schema};
use crate::lake::{Lake, paths};
use crate::schema::Registry;

/// When a query runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ScheduleSpec {
    #[serde(default)]
    pub cron_expression: Option<String>,
    #[serde(default)]
    pub rate_minutes: Option<u32>,
    /// Cancel the query after this many minutes (fractions allowed).
    #[serde(default = "five")]
    pub timeout_minutes: f64,
}

fn five() -> f64 {
    5.0
}
fn sixty() -> u32 {
    60
}
fn yes() -> bool {
    true
}
fn medium() -> Severity {
    Severity::Medium
}

/// When results raise an alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Threshold {
    /// Alert (once per run) when the result has more than this many rows.
    #[serde(default)]
    pub rows: Option<u64>,
    /// Alert for each result row where this SQL boolean expression holds.
    #[serde(default)]
    pub condition: Option<String>,
}

/// A scheduled or saved query as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SavedQuery {
    pub query_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub schedule: Option<ScheduleSpec>,
    #[serde(default = "sixty")]
    pub lookback_minutes: u32,
    pub query: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub threshold: Option<Threshold>,
    #[serde(default = "medium")]
    pub severity: Severity,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub dedup: Option<String>,
    #[serde(default = "sixty")]
    pub dedup_period_minutes: u32,
    #[serde(default)]
    pub output_ids: Option<Vec<String>>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(skip)]
    pub file: String,
    #[serde(skip)]
    pub when: Option<When>,
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum When {
    Cron(Cron),
    /// Every N minutes, at multiples of N since the epoch.
    Every(u32),
}

impl When {
    /// The latest slot at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            When::Cron(c) => c.last_at_or_before(t),
            When::Every(n) => {
                let p = i64::from(*n) * 60;
                DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(p), 0)
            }
        }
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            When::Cron(c) => c.next_after(t),
            When::Every(n) => {
                let p = i64::from(*n) * 60;
                DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(p) + p, 0)
            }
        }
    }
}

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            When::Cron(c) => write!(f, "cron {c}"),
            When::Every(n) => write!(f, "every {n} min"),
        }
    }
}

impl SavedQuery {
    /// Parse one query file; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self> {
        let mut q: SavedQuery = serde_yaml::from_str(text).map_err(|source| Error::Yaml {
            file: file.to_string(),
            source,
        })?;
        q.file = file.to_string();
        if q.query_name.is_empty()
            || !q
                .query_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(q.error("QueryName must be letters, digits, '-', '_' or '.'"));
        }
        if let Some(s) = &q.schedule {
            q.when = Some(match (&s.cron_expression, s.rate_minutes) {
                (Some(c), None) => {
                    When::Cron(c.parse().map_err(|e: Error| q.error(e.to_string()))?)
                }
                (None, Some(n)) if n > 0 => When::Every(n),
                _ => {
                    return Err(q.error(
                        "Schedule needs exactly one of CronExpression or RateMinutes (> 0)",
                    ));
                }
            });
        }
        if let Some(t) = &q.threshold
            && t.rows.is_some() == t.condition.is_some()
        {
            return Err(q.error("Threshold needs exactly one of Rows or Condition"));
        }
        Ok(q)
    }

    fn error(&self, m: impl Into<String>) -> Error {
        Error::Detection {
            file: self.file.clone(),
            id: self.query_name.clone(),
            message: m.into(),
        }
    }

    /// The SQL for the window ending at `slot`.
    pub fn sql_for(&self, slot: DateTime<Utc>) -> Result<String> {
        let end = slot.timestamp_micros();
        let start = end - i64::from(self.lookback_minutes) * 60_000_000;
        for k in ["window_start", "window_end", "partitions"] {
            if self.params.contains_key(k) {
                return Err(self.error(format!("Params may not define the built-in {k}")));
            }
        }
        // Built-ins are SQL fragments, not values: substituted before the user's params.
        let mut sql = self.query.clone();
        for (k, v) in [
            ("${window_start}", ts_literal(start)),
            ("${window_end}", ts_literal(end)),
            ("${partitions}", partition_predicate(start, end)),
        ] {
            sql = sql.replace(k, &v);
        }
        expand(&sql, &self.params).map_err(|m| self.error(format!("Query: {m}")))
    }

    fn detection(&self) -> Detection {
        Detection {
            origin: Origin::ScheduledQuery,
            id: self.query_name.clone(),
            severity: self.severity,
            threshold: 1,
            dedup_period_minutes: self.dedup_period_minutes,
            destinations: self.output_ids.clone(),
            runbook: self.runbook.clone(),
            reference: self.reference.clone(),
        }
    }
}

/// A predicate on `year`, `month`, `day` true for the partitions holding `[start, end)`.
pub fn partition_predicate(start: i64, end: i64) -> String {
    format!(
        "(year * 10000 + month * 100 + day BETWEEN {} AND {})",
        day_number(start),
        day_number((end - 1).max(start))
    )
}

/// The queries that ship with seclake, compiled in.
const BUILTIN: &[(&str, &str)] = &[
    (
        "scheduled/s3-object-errors.yml",
        include_str!("../../queries/scheduled/s3-object-errors.yml"),
    ),
    (
        "scheduled/s3-denied-spike-by-ip.yml",
        include_str!("../../queries/scheduled/s3-denied-spike-by-ip.yml"),
    ),
    (
        "scheduled/s3-first-seen-requester.yml",
        include_str!("../../queries/scheduled/s3-first-seen-requester.yml"),
    ),
    (
        "saved/s3-top-requesters.yml",
        include_str!("../../queries/saved/s3-top-requesters.yml"),
    ),
];

/// Every query: shipped, then each folder's `*.yml` (same name replaces). Sorted by name.
pub fn load(dirs: &[&Path]) -> Result<Vec<Arc<SavedQuery>>> {
    let mut by_name = BTreeMap::new();
    for (file, text) in super::content_files("", BUILTIN, dirs)? {
        let q = SavedQuery::from_yaml(&file, &text)?;
        by_name.insert(q.query_name.clone(), q);
    }
    Ok(by_name.into_values().map(Arc::new).collect())
}

/// What one run did; stored as its run record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub query: String,
    /// The schedule slot (window end), RFC 3339.
    pub slot: String,
    pub window_start: String,
    pub started_at: String,
    pub ended_at: String,
    pub rows: u64,
    /// Result rows that crossed the threshold.
    pub hits: u64,
    pub alerts_raised: usize,
    pub alerts_changed: usize,
    pub error: Option<String>,
}

/// `20200512T100000Z`: a slot as a sortable key.
pub fn slot_key(slot: DateTime<Utc>) -> String {
    slot.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The newest run record of `name`. Record keys sort by slot, so the listing starts a week
/// back and reads one page on S3 however many runs a query has made (a cron of
/// `schedule run-due` asks this for every query every minute); the whole folder is listed
/// only when the week holds no run.
pub async fn last_run(lake: &Lake, name: &str) -> Result<Option<RunRecord>> {
    let dir = paths::schedule_runs_dir(name);
    let week_ago = paths::schedule_run(name, &slot_key(Utc::now() - chrono::Duration::days(7)));
    let mut runs = lake.list_after(&dir, &week_ago).await?;
    if runs.is_empty() {
        runs = lake.list(&dir).await?;
    }
    runs.sort_by(|a, b| a.location.cmp(&b.location));
    let Some(last) = runs.last() else {
        return Ok(None);
    };
    let Some(body) = lake.get_opt(&last.location).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|source| Error::Json {
            context: last.location.to_string(),
            source,
        })
}

/// The slot `q` is due for at `now`: the latest slot at or before `now` that is after its last
/// recorded run (`None`: not due, or not scheduled).
pub fn due_slot(
    q: &SavedQuery,
    last: Option<&RunRecord>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let slot = q.when.as_ref()?.last_at_or_before(now)?;
    let last = last.and_then(|r| DateTime::parse_from_rfc3339(&r.slot).ok());
    match last {
        Some(l) if l.with_timezone(&Utc) >= slot => None,
        _ => Some(slot),
    }
}

/// Shared things a run needs.
pub struct Runner<'a> {
    pub lake: &'a Lake,
    pub registry: Arc<Registry>,
    pub config: &'a Config,
    /// The clock.
    pub now: DateTime<Utc>,
}

/// Outcome of trying to run one query.
#[derive(Debug)]
pub enum RunOutcome {
    Ran(RunRecord),
    /// Another process holds the query's lock.
    Busy(String),
    /// Nothing to do (already ran for its latest slot).
    NotDue,
}

impl Runner<'_> {
    /// Run every enabled scheduled query that is due. One failure does not stop the others.
    pub async fn run_due(&self, queries: &[Arc<SavedQuery>]) -> Vec<(String, Result<RunOutcome>)> {
        let mut out = Vec::new();
        for q in queries.iter().filter(|q| q.enabled && q.when.is_some()) {
            let r = self.run(q, true).await;
            out.push((q.query_name.clone(), r));
        }
        out
    }

    /// Run `q` for its latest slot (`only_if_due`: unless it already ran for it).
    pub async fn run(&self, q: &SavedQuery, only_if_due: bool) -> Result<RunOutcome> {
        let name = &q.query_name;
        let guard = match lock::acquire(
            self.lake,
            &format!("schedule-{name}"),
            LockOptions::default(),
        )
        .await
        {
            Ok(g) => g,
            Err(Error::Locked(who)) => return Ok(RunOutcome::Busy(who)),
            Err(e) => return Err(e),
        };
        let result = self.run_locked(q, only_if_due).await;
        guard.release().await?;
        result
    }

    async fn run_locked(&self, q: &SavedQuery, only_if_due: bool) -> Result<RunOutcome> {
        let name = &q.query_name;
        // Under the lock: the run-due check, and cleanup of this query's abandoned staging.
        let last = last_run(self.lake, name).await?;
        let slot = match (&q.when, only_if_due) {
            (_, true) => match due_slot(q, last.as_ref(), self.now) {
                Some(s) => s,
                None => return Ok(RunOutcome::NotDue),
            },
            (Some(w), false) => w.last_at_or_before(self.now).unwrap_or(self.now),
            (None, false) => self.now,
        };
        self.clean_staging(name).await?;
        let started = Utc::now();
        let minutes = q.schedule.as_ref().map_or(5.0, |s| s.timeout_minutes);
        let timeout = Duration::from_secs_f64(60.0 * minutes.clamp(0.001, 1440.0));
        let result = tokio::time::timeout(timeout, self.query(q, slot)).await;
        let batches = match result {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "timed out after {minutes} min; the query was cancelled"
            )),
        };
        let txn = commit::new_txn_id();
        let staging = paths::schedule_staging_dir(name, &txn);
        let mut record = RunRecord {
            query: name.clone(),
            slot: slot.to_rfc3339(),
            window_start: (slot - chrono::Duration::minutes(i64::from(q.lookback_minutes)))
                .to_rfc3339(),
            started_at: started.to_rfc3339(),
            ended_at: String::new(),
            rows: 0,
            hits: 0,
            alerts_raised: 0,
            alerts_changed: 0,
            error: None,
        };
        let mut files = Vec::new();
        match batches {
            Err(e) => record.error = Some(e),
            Ok((schema, batches)) => {
                record.rows = batches.iter().map(|b| b.num_rows() as u64).sum();
                let mut book = AlertBook::load(self.lake).await?;
                let hits = hits(q, &schema, &batches)?;
                record.hits = hits.as_ref().map_or(0, |h| h.num_rows() as u64);
                if let Some(h) = hits {
                    let det = q.detection();
                    let titles = column_str(&h, "p_alert_title");
                    let dedups = column_str(&h, "p_alert_dedup");
                    let mut ids = Vec::with_capacity(h.num_rows());
                    let t = slot.timestamp_micros();
                    let window = alert::window_start(t, det.dedup_period_minutes);
                    for r in 0..h.num_rows() {
                        let id = alert::alert_id(det.origin, &det.id, dedups.value(r), window);
                        let hit = alert::Hit {
                            id: &id,
                            window,
                            event_time: t,
                            title: titles.value(r),
                            dedup: dedups.value(r),
                        };
                        book.observe(&det, &hit, Utc::now().timestamp_micros());
                        ids.push(id);
                    }
                    record.alerts_raised = book.newly_raised().len();
                    record.alerts_changed = book.changes().len();
                    files.extend(
                        alert::stage(self.lake, &txn, &staging, &book, |a| {
                            self.config
                                .destinations_for(a.severity, q.output_ids.as_deref())
                        })
                        .await?,
                    );
                    let with_ids = add_column(&h, "p_alert_id", Arc::new(StringArray::from(ids)))?;
                    let with_ids = cast_batch(&with_ids, &plain_schema(&with_ids.schema()))?;
                    let mut buf = Vec::new();
                    let mut w = ArrowWriter::try_new(&mut buf, with_ids.schema(), None)?;
                    w.write(&with_ids)?;
                    w.close()?;
                    let staged = staging.clone().join("results.parquet");
                    files.push(FileMove {
                        staged: staged.to_string(),
                        target: paths::schedule_results(name, &slot_key(slot)).to_string(),
                        rows: with_ids.num_rows() as u64,
                        bytes: buf.len() as u64,
                        replaces: vec![],
                    });
                    self.lake.put(&staged, buf).await?;
                }
            }
        }
        record.ended_at = Utc::now().to_rfc3339();
        let body = serde_json::to_vec_pretty(&record).map_err(|source| Error::Json {
            context: format!("run record {name}"),
            source,
        })?;
        let staged = staging.clone().join("run.json");
        files.push(FileMove {
            staged: staged.to_string(),
            target: paths::schedule_run(name, &slot_key(slot)).to_string(),
            rows: 1,
            bytes: body.len() as u64,
            replaces: vec![],
        });
        self.lake.put(&staged, body).await?;
        commit::commit(
            self.lake,
            &CommitRecord {
                txn,
                created_at: Utc::now().to_rfc3339(),
                files,
                sources: vec![],
            },
        )
        .await?;
        if let Some(root) = self.lake.local_root() {
            let _ = std::fs::remove_dir_all(root.join(staging.as_ref()));
        }
        Ok(RunOutcome::Ran(record))
    }

    /// Remove staging of this query's runs that never committed (a crash mid-run).
    async fn clean_staging(&self, name: &str) -> Result<()> {
        let root = object_store::path::Path::from(format!("{}/schedule/staging", paths::STATE));
        let list = self.lake.store().list_with_delimiter(Some(&root)).await?;
        for dir in list.common_prefixes {
            let Some(folder) = dir.filename() else {
                continue;
            };
            let Some(txn) = folder.strip_prefix(&format!("{name}.")) else {
                continue;
            };
            if self
                .lake
                .get_opt(&paths::commit_record(txn))
                .await?
                .is_some()
            {
                continue; // committed; ingest's recovery rolls it forward if needed
            }
            match self.lake.local_root() {
                Some(r) => {
                    let _ = std::fs::remove_dir_all(r.join(dir.as_ref()));
                }
                None => {
                    for m in self.lake.list(&dir).await? {
                        self.lake.delete_opt(&m.location).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Run the query read-only for the window ending at `slot`.
    async fn query(
        &self,
        q: &SavedQuery,
        slot: DateTime<Utc>,
    ) -> Result<(Arc<Schema>, Vec<RecordBatch>)> {
        let sql = q.sql_for(slot)?;
        let engine = Engine::open(
            self.lake,
            self.registry.clone(),
            EngineOptions { read_only: true },
        )
        .await?;
        let df = engine.sql(&sql).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok((schema, batches))
    }

    /// Deliver pending alerts if no ingest holds the lake (an ingest delivers them itself).
    pub async fn deliver(&self) -> Result<Option<sink::DeliveryReport>> {
        match lock::acquire(self.lake, "ingest", LockOptions::default()).await {
            Ok(g) => {
                let r = sink::deliver_pending(self.lake, self.config).await;
                g.release().await?;
                r.map(Some)
            }
            Err(Error::Locked(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn column_str(b: &RecordBatch, name: &str) -> StringArray {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .cloned()
        .unwrap_or_else(|| StringArray::from(vec![""; b.num_rows()]))
}

fn add_column(b: &RecordBatch, name: &str, col: ArrayRef) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| (**f).clone()).collect();
    fields.push(Field::new(name, col.data_type().clone(), true));
    let mut cols = b.columns().to_vec();
    cols.push(col);
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// The result rows that cross `q`'s threshold, with `p_alert_title` and `p_alert_dedup`
/// columns; `None` when nothing crosses it.
fn hits(
    q: &SavedQuery,
    schema: &Arc<Schema>,
    batches: &[RecordBatch],
) -> Result<Option<RecordBatch>> {
    let all = concat_batches(schema, batches)?;
    let ctx = expr_session()?;
    let compile = |what: &str, sql: &str, want: fn(&DataType) -> bool| {
        let sql = expand(sql, &q.params).map_err(|m| q.error(format!("{what}: {m}")))?;
        compile_expr(&ctx, schema, &sql, want).map_err(|m| q.error(format!("{what}: {m}")))
    };
    let rows = match q.threshold.as_ref().and_then(|t| t.condition.as_deref()) {
        Some(cond) => {
            let e = compile("Threshold.Condition", cond, |t| {
                matches!(t, DataType::Boolean | DataType::Null)
            })?;
            let mask = e.evaluate(&all)?.into_array(all.num_rows())?;
            let mask = mask
                .as_any()
                .downcast_ref::<arrow::array::BooleanArray>()
                .cloned()
                .ok_or_else(|| q.error("Threshold.Condition is not boolean"))?;
            filter_record_batch(&all, &null_as_false(mask))?
        }
        None => {
            let limit = q.threshold.as_ref().and_then(|t| t.rows).unwrap_or(0);
            if (all.num_rows() as u64) <= limit {
                all.slice(0, 0)
            } else {
                all
            }
        }
    };
    if rows.num_rows() == 0 {
        return Ok(None);
    }
    let n = rows.num_rows();
    let stringy = |t: &DataType| arrow::compute::can_cast_types(t, &DataType::Utf8);
    let eval_str = |what: &str, sql: Option<&str>, default: &StringArray| -> Result<StringArray> {
        match sql {
            Some(s) => {
                let e = compile(what, s, stringy)?;
                let v = e.evaluate(&rows)?.into_array(n)?;
                let v = arrow::compute::cast(&v, &DataType::Utf8)?;
                let v = arrow::array::AsArray::as_string::<i32>(&v).clone();
                Ok((0..n)
                    .map(|i| {
                        Some(if arrow::array::Array::is_valid(&v, i) {
                            v.value(i)
                        } else {
                            default.value(i)
                        })
                    })
                    .collect())
            }
            None => Ok(default.clone()),
        }
    };
    let names = StringArray::from(vec![q.query_name.as_str(); n]);
    let titles = eval_str("Title", q.title.as_deref(), &names)?;
    // Row-count thresholds make one alert per run: dedup on the title of the first row.
    let row_mode = q.threshold.as_ref().is_none_or(|t| t.condition.is_none());
    let dedups = if row_mode && q.dedup.is_none() {
        StringArray::from(vec![titles.value(0); n])
    } else {
        eval_str("Dedup", q.dedup.as_deref(), &titles)?
    };
    let (rows, titles, dedups) = if row_mode {
        // One hit per run; the rows are kept with it.
        (rows, StringArray::from(vec![titles.value(0); n]), dedups)
    } else {
        (rows, titles, dedups)
    };
    let b = add_column(&rows, "p_alert_title", Arc::new(titles))?;
    Ok(Some(add_column(&b, "p_alert_dedup", Arc::new(dedups))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn q(schedule: &str) -> SavedQuery {
        SavedQuery::from_yaml(
            "q.yml",
            &format!("QueryName: q\nSchedule: {schedule}\nLookbackMinutes: 90\nQuery: SELECT 1 WHERE ${{partitions}} AND t >= ${{window_start}} AND t < ${{window_end}}\n"),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn last_run_is_the_newest_record_old_or_recent() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let put = |slot: DateTime<Utc>| {
            let lake = lake.clone();
            async move {
                let body = serde_json::to_vec(&rec(&slot.to_rfc3339())).unwrap();
                lake.put(&paths::schedule_run("q", &slot_key(slot)), body)
                    .await
                    .unwrap();
            }
        };
        assert_eq!(last_run(&lake, "q").await.unwrap(), None);
        // Only runs older than a week: found by listing the whole folder.
        for s in [
            "2020-05-12T10:00:00Z",
            "2020-05-12T11:00:00Z",
            "2019-12-31T23:00:00Z",
        ] {
            put(at(s)).await;
        }
        let last = last_run(&lake, "q").await.unwrap().unwrap();
        assert_eq!(at(&last.slot), at("2020-05-12T11:00:00Z"));
        // Recent runs: the listing starts a week back and still finds the newest.
        let now = Utc::now();
        for h in [30, 2, 50] {
            put(now - chrono::Duration::hours(h)).await;
        }
        let last = last_run(&lake, "q").await.unwrap().unwrap();
        assert_eq!(
            slot_key(at(&last.slot)),
            slot_key(now - chrono::Duration::hours(2))
        );
    }

    fn rec(slot: &str) -> RunRecord {
        RunRecord {
            query: "q".into(),
            slot: slot.into(),
            window_start: String::new(),
            started_at: String::new(),
            ended_at: String::new(),
            rows: 0,
            hits: 0,
            alerts_raised: 0,
            alerts_changed: 0,
            error: None,
        }
    }

    #[test]
    fn window_parameters() {
        let sql = q("{RateMinutes: 60}")
            .sql_for(at("2020-05-12T01:00:00Z"))
            .unwrap();
        assert_eq!(
            sql,
            "SELECT 1 WHERE (year * 10000 + month * 100 + day BETWEEN 20200511 AND 20200512) \
             AND t >= TIMESTAMP '2020-05-11T23:30:00.000000' AND t < TIMESTAMP '2020-05-12T01:00:00.000000'"
        );
    }

    #[test]
    fn missed_slots_run_once_and_never_twice() {
        let q = q("{CronExpression: '0 * * * *'}");
        let now = at("2020-05-12T10:20:00Z");
        assert_eq!(due_slot(&q, None, now), Some(at("2020-05-12T10:00:00Z")));
        // Down since 06:00: one run, for the latest slot.
        let last = rec("2020-05-12T06:00:00+00:00");
        assert_eq!(
            due_slot(&q, Some(&last), now),
            Some(at("2020-05-12T10:00:00Z"))
        );
        let last = rec("2020-05-12T10:00:00+00:00");
        assert_eq!(due_slot(&q, Some(&last), now), None);
        assert_eq!(
            due_slot(&q, Some(&last), at("2020-05-12T11:00:00Z")),
            Some(at("2020-05-12T11:00:00Z"))
        );
    }

    #[test]
    fn every_n_minutes() {
        let w = When::Every(15);
        assert_eq!(
            w.last_at_or_before(at("2020-05-12T10:20:00Z")),
            Some(at("2020-05-12T10:15:00Z"))
        );
        assert_eq!(
            w.next_after(at("2020-05-12T10:15:00Z")),
            Some(at("2020-05-12T10:30:00Z"))
        );
    }

    #[test]
    fn invalid_files() {
        for (body, want) in [
            (
                "QueryName: q\nQuery: x\nSchedule: {}\n",
                "exactly one of CronExpression",
            ),
            (
                "QueryName: q\nQuery: x\nSchedule: {CronExpression: '* * *'}\n",
                "expected 5 fields",
            ),
            (
                "QueryName: q\nQuery: x\nThreshold: {}\n",
                "exactly one of Rows",
            ),
            ("QueryName: 'a b'\nQuery: x\n", "QueryName"),
            ("QueryName: q\nQuery: x\nLookback: 5\n", "unknown field"),
        ] {
            let e = SavedQuery::from_yaml("q.yml", body)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want) && e.contains("q.yml"), "{e}");
        }
    }

    #[test]
    fn shipped_queries_load() {
        let qs = load(&[]).unwrap();
        assert!(
            qs.iter()
                .any(|q| q.query_name == "s3-object-errors" && q.when.is_some())
        );
        assert!(qs.iter().any(|q| q.when.is_none()));
    }
}
