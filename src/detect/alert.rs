//! Alerts: one pipeline for rules, scheduled queries and policies.
//!
//! A detection reports *hits* (an event time, a title, a dedup string). Hits of one detection
//! and dedup string whose event times fall in the same dedup window form one alert. Windows
//! are aligned to the epoch (`[k·period, (k+1)·period)` of event time), so the alert a hit
//! belongs to — and its id, a hash of detection, dedup string and window — does not depend
//! on the order files are ingested in, and replaying old data finds the same alerts. An alert
//! is *raised* when its event count reaches the detection's threshold; later hits update its
//! count and last-seen time.
//!
//! Storage: every change writes a new version of the alert; a transaction's versions are one
//! Parquet file, `_seclake/alerts/<txn>.parquet`, committed with the transaction's data (so
//! alert state and rule matches are exactly-once together). The newest version of each alert
//! is the alert (`panther_views.alerts`). An alert raised in a transaction also gets an outbox
//! item, `_seclake/outbox/<alert id>.json`, committed with it and removed once every
//! destination has it ([`super::sink`]). Ingest merges the version files once there are many
//! ([`compact`]).
//!
//! [`AlertBook`] holds the state in memory: committed alerts, and the changes of the open
//! transaction, which are kept or dropped as a whole.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use super::rule::Severity;
use crate::error::{Error, Result};
use crate::lake::commit::FileMove;
use crate::lake::{Lake, paths};
use crate::schema::TIMESTAMP;

/// What kind of detection raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Rule,
    ScheduledQuery,
    Policy,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Rule => "rule",
            Origin::ScheduledQuery => "scheduled_query",
            Origin::Policy => "policy",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "rule" => Origin::Rule,
            "scheduled_query" => Origin::ScheduledQuery,
            "policy" => Origin::Policy,
            _ => return Err(Error::invalid(format!("unknown alert origin {s:?}"))),
        })
    }
}

/// What the alert pipeline needs to know about a detection.
#[derive(Debug, Clone)]
pub struct Detection {
    pub origin: Origin,
    pub id: String,
    pub severity: Severity,
    pub threshold: u32,
    pub dedup_period_minutes: u32,
    /// Destination names; every configured destination when `None`.
    pub destinations: Option<Vec<String>>,
    pub runbook: Option<String>,
    pub reference: Option<String>,
}

/// An alert (one version of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub origin: Origin,
    pub detection_id: String,
    pub severity: Severity,
    pub title: String,
    pub dedup: String,
    /// Start of the dedup window (µs since the epoch, UTC).
    pub window_start: i64,
    pub first_event_time: i64,
    pub last_event_time: i64,
    pub event_count: i64,
    pub threshold: i64,
    /// The event count reached the threshold.
    pub raised: bool,
    pub created_at: i64,
    pub raised_at: Option<i64>,
    pub updated_at: i64,
    pub version: i64,
    pub runbook: Option<String>,
    pub reference: Option<String>,
}

/// Id of the alert for `detection`, `dedup` and the window starting at `window_start`.
///
/// The 128-bit xxh3 of `origin \0 detection \0 dedup \0 window_start` (decimal) as 32
/// lowercase hex digits. Ids are stored with the alerts they name, so this must never change;
/// it is written out by hand because `format!` took 2,800 instructions a call, 4% of an
/// ingest with rules.
pub fn alert_id(origin: Origin, detection: &str, dedup: &str, window_start: i64) -> String {
    use std::io::Write;
    let origin = origin.as_str();
    let mut key = Vec::with_capacity(origin.len() + detection.len() + dedup.len() + 24);
    for part in [origin, detection, dedup] {
        key.extend_from_slice(part.as_bytes());
        key.push(0);
    }
    write!(key, "{window_start}").expect("writing to a Vec");
    let hash = xxhash_rust::xxh3::xxh3_128(&key);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (i, h) in hex.iter_mut().enumerate() {
        *h = HEX[(hash >> (124 - 4 * i)) as usize & 0xf];
    }
    String::from_utf8(hex.to_vec()).expect("hex digits")
}

/// Start of the dedup window holding `event_time`.
pub fn window_start(event_time: i64, period_minutes: u32) -> i64 {
    let p = i64::from(period_minutes.max(1)) * 60_000_000;
    event_time - event_time.rem_euclid(p)
}

/// One event (or result row) of a detection, and the alert it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// [`alert_id`] of the detection, dedup string and window.
    pub id: &'a str,
    /// [`window_start`] of the event time.
    pub window: i64,
    pub event_time: i64,
    pub title: &'a str,
    pub dedup: &'a str,
}

/// What happened to an alert on one hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Counted; the alert's id and creation time.
    Counted { created_at: i64 },
    /// Not counted: the alert existed before and the book only adds new alerts (replay).
    Existing,
}

/// Alert state: committed alerts plus the open transaction's changes.
#[derive(Debug, Default)]
pub struct AlertBook {
    committed: HashMap<String, Alert>,
    pending: HashMap<String, Alert>,
    /// Replay mode: hits of alerts that already existed before are not counted again.
    only_new: bool,
}

impl AlertBook {
    /// The lake's alerts (newest version of each).
    pub async fn load(lake: &Lake) -> Result<Self> {
        let mut committed: HashMap<String, Alert> = HashMap::new();
        for a in read_versions(lake, &version_files(lake).await?).await? {
            match committed.get(&a.alert_id) {
                Some(old) if old.version >= a.version => {}
                _ => {
                    committed.insert(a.alert_id.clone(), a);
                }
            }
        }
        Ok(AlertBook {
            committed,
            pending: HashMap::new(),
            only_new: false,
        })
    }

    /// Count only hits of alerts that did not exist when the book was loaded (for replays:
    /// existing alerts already counted their events).
    pub fn only_new(mut self) -> Self {
        self.only_new = true;
        self
    }

    /// Every known alert (committed and pending), newest version.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.pending.values().chain(
            self.committed
                .iter()
                .filter(|(id, _)| !self.pending.contains_key(*id))
                .map(|(_, a)| a),
        )
    }

    /// Count one hit of `det` into its alert.
    pub fn observe(&mut self, det: &Detection, hit: &Hit<'_>, now: i64) -> Observed {
        let Hit {
            id,
            window,
            event_time,
            title,
            dedup,
        } = *hit;
        if self.only_new && self.committed.contains_key(id) {
            return Observed::Existing;
        }
        let alert = match self.pending.get_mut(id) {
            Some(a) => a,
            None => {
                let a = match self.committed.get(id) {
                    Some(a) => Alert {
                        version: a.version + 1,
                        ..a.clone()
                    },
                    None => Alert {
                        alert_id: id.to_string(),
                        origin: det.origin,
                        detection_id: det.id.clone(),
                        severity: det.severity,
                        title: title.to_string(),
                        dedup: dedup.to_string(),
                        window_start: window,
                        first_event_time: event_time,
                        last_event_time: event_time,
                        event_count: 0,
                        threshold: i64::from(det.threshold),
                        raised: false,
                        created_at: now,
                        raised_at: None,
                        updated_at: now,
                        version: 1,
                        runbook: det.runbook.clone(),
                        reference: det.reference.clone(),
                    },
                };
                self.pending.entry(id.to_string()).or_insert(a)
            }
        };
        alert.event_count += 1;
        alert.first_event_time = alert.first_event_time.min(event_time);
        alert.last_event_time = alert.last_event_time.max(event_time);
        alert.updated_at = now;
        if !alert.raised && alert.event_count >= alert.threshold {
            alert.raised = true;
            alert.raised_at = Some(now);
        }
        Observed::Counted {
            created_at: alert.created_at,
        }
    }

    /// Alerts changed by the open transaction.
    pub fn changes(&self) -> Vec<&Alert> {
        let mut v: Vec<_> = self.pending.values().collect();
        v.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        v
    }

    /// Alerts the open transaction raised (not raised before it).
    pub fn newly_raised(&self) -> Vec<&Alert> {
        self.changes()
            .into_iter()
            .filter(|a| a.raised && !self.committed.get(&a.alert_id).is_some_and(|c| c.raised))
            .collect()
    }

    /// A copy holding `book`'s open changes and the committed versions they replace (enough
    /// for [`stage`]).
    pub fn snapshot_of(book: &AlertBook) -> AlertBook {
        AlertBook {
            committed: book
                .pending
                .keys()
                .filter_map(|id| book.committed.get(id).map(|a| (id.clone(), a.clone())))
                .collect(),
            pending: book.pending.clone(),
            only_new: book.only_new,
        }
    }

    /// Keep the open transaction's changes.
    pub fn commit(&mut self) {
        for (id, a) in self.pending.drain() {
            self.committed.insert(id, a);
        }
    }

    /// Drop the open transaction's changes.
    pub fn rollback(&mut self) {
        self.pending.clear();
    }
}

/// Schema of stored alert versions.
pub fn alert_schema() -> SchemaRef {
    let ts = |n: &str, null: bool| Field::new(n, TIMESTAMP, null);
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        s("alert_id", false),
        s("origin", false),
        s("detection_id", false),
        s("severity", false),
        s("title", false),
        s("dedup", false),
        ts("window_start", false),
        ts("first_event_time", false),
        ts("last_event_time", false),
        Field::new("event_count", DataType::Int64, false),
        Field::new("threshold", DataType::Int64, false),
        Field::new("raised", DataType::Boolean, false),
        ts("created_at", false),
        ts("raised_at", true),
        ts("updated_at", false),
        Field::new("version", DataType::Int64, false),
        s("runbook", true),
        s("reference", true),
    ]))
}

/// Alerts as a batch of [`alert_schema`].
pub fn to_batch(alerts: &[&Alert]) -> Result<RecordBatch> {
    let str_col = |f: &dyn Fn(&Alert) -> Option<&str>| -> ArrayRef {
        Arc::new(alerts.iter().map(|a| f(a)).collect::<StringArray>())
    };
    let ts_col = |f: &dyn Fn(&Alert) -> Option<i64>| -> ArrayRef {
        Arc::new(
            alerts
                .iter()
                .map(|a| f(a))
                .collect::<TimestampMicrosecondArray>(),
        )
    };
    let int_col = |f: &dyn Fn(&Alert) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(alerts.iter().map(|a| f(a))))
    };
    let columns = vec![
        str_col(&|a| Some(&a.alert_id)),
        str_col(&|a| Some(a.origin.as_str())),
        str_col(&|a| Some(&a.detection_id)),
        str_col(&|a| Some(a.severity.as_str())),
        str_col(&|a| Some(&a.title)),
        str_col(&|a| Some(&a.dedup)),
        ts_col(&|a| Some(a.window_start)),
        ts_col(&|a| Some(a.first_event_time)),
        ts_col(&|a| Some(a.last_event_time)),
        int_col(&|a| a.event_count),
        int_col(&|a| a.threshold),
        Arc::new(BooleanArray::from_iter(
            alerts.iter().map(|a| Some(a.raised)),
        )),
        ts_col(&|a| Some(a.created_at)),
        ts_col(&|a| a.raised_at),
        ts_col(&|a| Some(a.updated_at)),
        int_col(&|a| a.version),
        str_col(&|a| a.runbook.as_deref()),
        str_col(&|a| a.reference.as_deref()),
    ];
    Ok(RecordBatch::try_new(alert_schema(), columns)?)
}

/// Alerts from a batch of [`alert_schema`].
pub fn from_batch(b: &RecordBatch) -> Result<Vec<Alert>> {
    let col = |n: &str| {
        b.column_by_name(n)
            .ok_or_else(|| Error::invalid(format!("alert file lacks column {n}")))
    };
    let s = |n: &str| -> Result<StringArray> {
        Ok(arrow::compute::cast(col(n)?, &DataType::Utf8)?
            .as_string::<i32>()
            .clone())
    };
    let t = |n: &str| -> Result<arrow::array::PrimitiveArray<TimestampMicrosecondType>> {
        Ok(col(n)?.as_primitive::<TimestampMicrosecondType>().clone())
    };
    let i = |n: &str| -> Result<Int64Array> {
        Ok(col(n)?
            .as_primitive::<arrow::datatypes::Int64Type>()
            .clone())
    };
    let (id, origin, det, sev, title, dedup) = (
        s("alert_id")?,
        s("origin")?,
        s("detection_id")?,
        s("severity")?,
        s("title")?,
        s("dedup")?,
    );
    let (ws, fe, le, ca, ra, ua) = (
        t("window_start")?,
        t("first_event_time")?,
        t("last_event_time")?,
        t("created_at")?,
        t("raised_at")?,
        t("updated_at")?,
    );
    let (count, thr, ver) = (i("event_count")?, i("threshold")?, i("version")?);
    let raised = col("raised")?.as_boolean().clone();
    let (runbook, reference) = (s("runbook")?, s("reference")?);
    let opt = |a: &StringArray, r: usize| a.is_valid(r).then(|| a.value(r).to_string());
    (0..b.num_rows())
        .map(|r| {
            Ok(Alert {
                alert_id: id.value(r).into(),
                origin: Origin::parse(origin.value(r))?,
                detection_id: det.value(r).into(),
                severity: sev.value(r).parse()?,
                title: title.value(r).into(),
                dedup: dedup.value(r).into(),
                window_start: ws.value(r),
                first_event_time: fe.value(r),
                last_event_time: le.value(r),
                event_count: count.value(r),
                threshold: thr.value(r),
                raised: raised.value(r),
                created_at: ca.value(r),
                raised_at: ra.is_valid(r).then(|| ra.value(r)),
                updated_at: ua.value(r),
                version: ver.value(r),
                runbook: opt(&runbook, r),
                reference: opt(&reference, r),
            })
        })
        .collect()
}

/// An alert waiting for delivery, and the destinations that still lack it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxItem {
    pub alert: Alert,
    pub destinations: Vec<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// The stored alert version files.
async fn version_files(lake: &Lake) -> Result<Vec<object_store::path::Path>> {
    Ok(lake
        .list(&paths::alerts_dir())
        .await?
        .into_iter()
        .map(|m| m.location)
        .filter(|p| p.as_ref().ends_with(".parquet"))
        .collect())
}

/// Every alert version in `files`.
async fn read_versions(lake: &Lake, files: &[object_store::path::Path]) -> Result<Vec<Alert>> {
    let mut out = Vec::new();
    for f in files {
        let bytes = lake.store().get(f).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        for batch in reader {
            out.extend(from_batch(&batch?)?);
        }
    }
    Ok(out)
}

/// Alert versions as a Parquet file.
fn encode(alerts: &[&Alert]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, alert_schema(), None)?;
    w.write(&to_batch(alerts)?)?;
    w.close()?;
    Ok(buf)
}

/// Alert version files beyond which [`compact`] merges them (`SECLAKE_ALERTS_COMPACT_AT`
/// changes it, for tests).
fn compact_at() -> usize {
    crate::lake::count_from_env("SECLAKE_ALERTS_COMPACT_AT", 64)
}

/// Merge the alert version files into one when there are more than 64 (`SECLAKE_ALERTS_COMPACT_AT`); returns
/// how many were merged. Every transaction that changes alerts adds a file, and every ingest,
/// scheduled run and replay reads them all: a cron ingest every five minutes made 3,000 in
/// ten days, and a three-line ingest then took 6.6 s. Every version is kept (the
/// `panther_views.alert_versions` history). Safe against crashes and concurrent writers: the
/// merged file is complete before anything is deleted, only files it holds are deleted, and a
/// version found twice (a crash between the two steps, or two merges at once) is one version.
pub async fn compact(lake: &Lake) -> Result<Option<usize>> {
    let files = version_files(lake).await?;
    if files.len() <= compact_at() {
        return Ok(None);
    }
    let mut seen = std::collections::HashSet::new();
    let mut all = Vec::new();
    for f in files.chunks(64) {
        for a in read_versions(lake, f).await? {
            if seen.insert((a.alert_id.clone(), a.version)) {
                all.push(a);
            }
        }
    }
    let mut refs: Vec<&Alert> = all.iter().collect();
    refs.sort_unstable_by_key(|a| (a.alert_id.as_str(), a.version));
    lake.put(
        &paths::alerts_file(&crate::lake::commit::new_txn_id()),
        encode(&refs)?,
    )
    .await?;
    let merged = files.len();
    lake.delete_all(files).await?;
    Ok(Some(merged))
}

/// Stage the open transaction's alert versions and outbox items of `txn` in the folder
/// `staging`; returns the moves that place them at commit. `destinations_for` says where a
/// raised alert must go.
pub async fn stage(
    lake: &Lake,
    txn: &str,
    staging: &object_store::path::Path,
    book: &AlertBook,
    destinations_for: impl Fn(&Alert) -> Vec<String>,
) -> Result<Vec<FileMove>> {
    let changes = book.changes();
    if changes.is_empty() {
        return Ok(vec![]);
    }
    let mut moves = Vec::new();
    let buf = encode(&changes)?;
    let staged = staging.clone().join("alerts.parquet");
    moves.push(FileMove {
        staged: staged.to_string(),
        target: paths::alerts_file(txn).to_string(),
        rows: changes.len() as u64,
        bytes: buf.len() as u64,
        replaces: vec![],
    });
    lake.put(&staged, buf).await?;
    for a in book.newly_raised() {
        let destinations = destinations_for(a);
        if destinations.is_empty() {
            continue;
        }
        let item = OutboxItem {
            alert: a.clone(),
            destinations,
            attempts: 0,
            last_error: None,
        };
        let body = serde_json::to_vec_pretty(&item).map_err(|source| Error::Json {
            context: format!("outbox item {}", a.alert_id),
            source,
        })?;
        let staged = staging.clone().join(format!("outbox-{}.json", a.alert_id));
        moves.push(FileMove {
            staged: staged.to_string(),
            target: paths::outbox_item(&a.alert_id).to_string(),
            rows: 1,
            bytes: body.len() as u64,
            replaces: vec![],
        });
        lake.put(&staged, body).await?;
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(threshold: u32) -> Detection {
        Detection {
            origin: Origin::Rule,
            id: "R".into(),
            severity: Severity::Low,
            threshold,
            dedup_period_minutes: 60,
            destinations: None,
            runbook: None,
            reference: None,
        }
    }

    const HOUR: i64 = 3_600_000_000;

    /// Ids as the first version computed them: stored alerts are found by them.
    fn alert_id_as_first_written(o: Origin, detection: &str, dedup: &str, window: i64) -> String {
        let key = format!("{}\0{detection}\0{dedup}\0{window}", o.as_str());
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
    }

    proptest::proptest! {
        #[test]
        fn alert_ids_never_change(
            o in proptest::sample::select(vec![Origin::Rule, Origin::ScheduledQuery, Origin::Policy]),
            detection in ".{0,12}",
            dedup in "(.|\\x00){0,40}",
            window in proptest::num::i64::ANY,
        ) {
            proptest::prop_assert_eq!(
                alert_id(o, &detection, &dedup, window),
                alert_id_as_first_written(o, &detection, &dedup, window)
            );
        }
    }

    #[test]
    fn an_alert_id_is_pinned() {
        assert_eq!(
            alert_id(
                Origin::Rule,
                "AWS.S3.ServerAccess.Error",
                "arn:aws:iam::1:user/x",
                HOUR
            ),
            "61470421ef3d57e6df7132f3e44a24bf"
        );
    }

    #[test]
    fn windows_are_aligned_and_ids_stable() {
        assert_eq!(window_start(HOUR + 5, 60), HOUR);
        assert_eq!(window_start(-5, 60), -HOUR);
        assert_eq!(
            alert_id(Origin::Rule, "R", "d", HOUR),
            alert_id(Origin::Rule, "R", "d", HOUR)
        );
        assert_ne!(
            alert_id(Origin::Rule, "R", "d", HOUR),
            alert_id(Origin::Rule, "R", "d", 2 * HOUR)
        );
    }

    #[test]
    fn threshold_raises_once_and_rollback_forgets() {
        let d = det(3);
        let mut book = AlertBook::default();
        let id = alert_id(Origin::Rule, "R", "x", 0);
        for t in 0..2 {
            book.observe(
                &d,
                &Hit {
                    id: &id,
                    window: 0,
                    event_time: t,
                    title: "T",
                    dedup: "x",
                },
                100,
            );
        }
        assert!(book.newly_raised().is_empty());
        book.commit();
        book.observe(
            &d,
            &Hit {
                id: &id,
                window: 0,
                event_time: 7,
                title: "T",
                dedup: "x",
            },
            200,
        );
        assert_eq!(book.newly_raised().len(), 1);
        book.rollback();
        assert_eq!(book.alerts().next().unwrap().event_count, 2);
        book.observe(
            &d,
            &Hit {
                id: &id,
                window: 0,
                event_time: 7,
                title: "T",
                dedup: "x",
            },
            200,
        );
        book.commit();
        book.observe(
            &d,
            &Hit {
                id: &id,
                window: 0,
                event_time: 8,
                title: "T",
                dedup: "x",
            },
            300,
        );
        assert!(book.newly_raised().is_empty(), "raised only once");
        let a = book.changes()[0].clone();
        assert_eq!((a.event_count, a.version, a.raised_at), (4, 3, Some(200)));
        let round = from_batch(&to_batch(&[&a]).unwrap()).unwrap();
        assert_eq!(round, vec![a]);
    }

    #[tokio::test]
    async fn an_interrupted_merge_leaves_each_version_once() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let d = det(1);
        let mut book = AlertBook::default();
        let mut written = Vec::new();
        for (i, dedup) in ["a", "b", "a", "c"].iter().enumerate() {
            let id = alert_id(Origin::Rule, "R", dedup, 0);
            let hit = Hit {
                id: &id,
                window: 0,
                event_time: i as i64,
                title: "T",
                dedup,
            };
            book.observe(&d, &hit, 100);
            let file = paths::alerts_file(&format!("t{i}"));
            lake.put(&file, encode(&book.changes()).unwrap())
                .await
                .unwrap();
            written.push(file);
            book.commit();
        }
        // Killed after a merge wrote its file, before it deleted what it merged: every version
        // is there twice.
        let all: Vec<Alert> = read_versions(&lake, &written).await.unwrap();
        let refs: Vec<&Alert> = all.iter().collect();
        lake.put(&paths::alerts_file("t9"), encode(&refs).unwrap())
            .await
            .unwrap();
        let before = AlertBook::load(&lake).await.unwrap();
        assert_eq!(compact(&lake).await.unwrap(), None, "5 files: not yet");
        for i in 0..60 {
            lake.put(
                &paths::alerts_file(&format!("u{i:02}")),
                encode(&[]).unwrap(),
            )
            .await
            .unwrap();
        }
        assert_eq!(compact(&lake).await.unwrap(), Some(65));
        let files = version_files(&lake).await.unwrap();
        assert_eq!(files.len(), 1);
        let versions = read_versions(&lake, &files).await.unwrap();
        assert_eq!(versions.len(), 4, "a twice (v1, v2), b, c: {versions:?}");
        let after = AlertBook::load(&lake).await.unwrap();
        let sorted = |b: &AlertBook| {
            let mut v: Vec<Alert> = b.alerts().cloned().collect();
            v.sort_by(|x, y| x.alert_id.cmp(&y.alert_id));
            v
        };
        assert_eq!(sorted(&before), sorted(&after));
    }

    #[test]
    fn replay_skips_existing_alerts() {
        let d = det(1);
        let mut book = AlertBook::default();
        let id = alert_id(Origin::Rule, "R", "x", 0);
        book.observe(
            &d,
            &Hit {
                id: &id,
                window: 0,
                event_time: 1,
                title: "T",
                dedup: "x",
            },
            1,
        );
        book.commit();
        let mut book = book.only_new();
        assert_eq!(
            book.observe(
                &d,
                &Hit {
                    id: &id,
                    window: 0,
                    event_time: 1,
                    title: "T",
                    dedup: "x"
                },
                2
            ),
            Observed::Existing
        );
        assert!(book.changes().is_empty());
    }
}
