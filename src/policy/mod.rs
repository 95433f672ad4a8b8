//! Cloud security posture: resource snapshots and policies over them.
//!
//! - [`resource`]: bucket snapshots (Panther's shape or AWS Config items) →
//!   `panther_cloudsecurity.aws_s3_bucket`, exactly once per file (same ledger as ingest).
//! - Policies (`queries/policies/*.yml`, [`Policy`]): a SQL boolean expression that is true
//!   when a resource is compliant (NULL counts as not compliant), with suppressions (resource
//!   id patterns) and embedded tests.
//! - [`evaluate`]: every enabled policy over the newest snapshot of each resource; one result
//!   per (policy, resource), PASS, FAIL or ERROR (an error isolates to its resource), written
//!   to `panther_cloudsecurity.compliance`; failures become alerts through the shared pipeline,
//!   deduplicated per policy and resource over the policy's dedup period (a day by default),
//!   so an unchanged failure does not alert on every run.

pub mod resource;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;
use serde::Deserialize;

use crate::config::Config;
use crate::detect::alert::{self, AlertBook, Detection, Hit, Origin};
use crate::detect::eval::{compile_expr, expr_session};
use crate::detect::rule::{Severity, expand};
use crate::detect::sink::{self, DeliveryReport};
use crate::engine::udf::Glob;
use crate::engine::{Engine, EngineOptions};
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::lake::commit::{self, CommitRecord, LedgerEntry};
use crate::lake::lock;
use crate::lake::writer::{PartitionedWriter, TableSpec, WriterConfig, cast_batch, stage_job};
use crate::schema::{Registry, TIMESTAMP};
use resource::{S3_BUCKET, S3_BUCKET_TABLE};

/// The database of resources and compliance results.
pub const DB: &str = "panther_cloudsecurity";
/// The compliance results table.
pub const COMPLIANCE_TABLE: &str = "compliance";

fn yes() -> bool {
    true
}
fn day() -> u32 {
    1440
}

/// One embedded policy test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PolicyTest {
    pub name: String,
    /// True when the resource is compliant.
    pub expected_result: bool,
    pub resource: serde_json::Value,
}

/// A policy as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Policy {
    #[serde(rename = "PolicyID")]
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub resource_types: Vec<String>,
    pub severity: Severity,
    #[serde(default)]
    pub description: String,
    /// SQL boolean expression: true when the resource is compliant.
    pub condition: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml::Value>,
    /// Resource id patterns (fnmatch) the policy does not apply to.
    #[serde(default)]
    pub suppressions: Vec<String>,
    #[serde(default = "day")]
    pub dedup_period_minutes: u32,
    #[serde(default)]
    pub output_ids: Option<Vec<String>>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub tests: Vec<PolicyTest>,
    #[serde(skip)]
    pub file: String,
}

impl Policy {
    pub fn from_yaml(file: &str, text: &str) -> Result<Self> {
        let mut p: Policy = serde_yaml::from_str(text).map_err(|source| Error::Yaml {
            file: file.into(),
            source,
        })?;
        p.file = file.into();
        if let Some(t) = p.resource_types.iter().find(|t| *t != S3_BUCKET) {
            return Err(p.error(format!("unknown resource type {t:?} (known: {S3_BUCKET})")));
        }
        for s in &p.suppressions {
            Glob::new(s).map_err(|e| p.error(format!("suppression {s:?}: {e}")))?;
        }
        Ok(p)
    }

    fn error(&self, m: impl Into<String>) -> Error {
        Error::Detection {
            file: self.file.clone(),
            id: self.id.clone(),
            message: m.into(),
        }
    }

    fn detection(&self) -> Detection {
        Detection {
            origin: Origin::Policy,
            id: self.id.clone(),
            severity: self.severity,
            threshold: 1,
            dedup_period_minutes: self.dedup_period_minutes,
            destinations: self.output_ids.clone(),
            runbook: self.runbook.clone(),
            reference: self.reference.clone(),
        }
    }
}

/// A policy compiled for the bucket table.
pub struct Compiled {
    pub policy: Arc<Policy>,
    expr: Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    /// `Suppressions`, compiled once.
    suppressions: Vec<Glob>,
}

impl Compiled {
    pub fn new(policy: Arc<Policy>) -> Result<Self> {
        let ctx = expr_session()?;
        let sql = expand(&policy.condition, &policy.params)
            .map_err(|m| policy.error(format!("Condition: {m}")))?;
        let expr = compile_expr(&ctx, &resource::bucket_schema(), &sql, |t| {
            matches!(t, DataType::Boolean | DataType::Null)
        })
        .map_err(|m| policy.error(format!("Condition: {m}; it must be a boolean expression")))?;
        let suppressions = policy
            .suppressions
            .iter()
            .map(|s| Glob::new(s).map_err(|e| policy.error(format!("suppression {s:?}: {e}"))))
            .collect::<Result<_>>()?;
        Ok(Compiled {
            policy,
            expr,
            suppressions,
        })
    }

    /// Whether a suppression pattern matches the resource id.
    fn suppressed(&self, resource_id: &str) -> bool {
        self.suppressions.iter().any(|g| g.is_match(resource_id))
    }

    /// Compliance of each row: `Ok(true)` PASS, `Ok(false)` FAIL (NULL counts as FAIL),
    /// `Err` ERROR with the reason. A batch-level error is retried row by row, so an error
    /// stays with the resource that caused it.
    pub fn eval(&self, batch: &RecordBatch) -> Vec<Result<bool, String>> {
        let whole = |b: &RecordBatch| -> Result<BooleanArray, String> {
            let v = self
                .expr
                .evaluate(b)
                .and_then(|v| v.into_array(b.num_rows()))
                .map_err(|e| e.find_root().to_string())?;
            v.as_boolean_opt()
                .cloned()
                .ok_or_else(|| "condition is not boolean".to_string())
        };
        match whole(batch) {
            Ok(b) => (0..b.len())
                .map(|i| Ok(b.is_valid(i) && b.value(i)))
                .collect(),
            Err(_) if batch.num_rows() > 1 => (0..batch.num_rows())
                .flat_map(|i| self.eval(&batch.slice(i, 1)))
                .collect(),
            Err(e) => vec![Err(e)],
        }
    }
}

/// The policies that ship with seclake, compiled in.
const BUILTIN: &[(&str, &str)] = &[
    (
        "s3_bucket_encryption.yml",
        include_str!("../../queries/policies/s3_bucket_encryption.yml"),
    ),
    (
        "s3_bucket_kms_encryption.yml",
        include_str!("../../queries/policies/s3_bucket_kms_encryption.yml"),
    ),
    (
        "s3_bucket_public_read.yml",
        include_str!("../../queries/policies/s3_bucket_public_read.yml"),
    ),
    (
        "s3_bucket_public_write.yml",
        include_str!("../../queries/policies/s3_bucket_public_write.yml"),
    ),
    (
        "s3_bucket_versioning.yml",
        include_str!("../../queries/policies/s3_bucket_versioning.yml"),
    ),
    (
        "s3_bucket_logging.yml",
        include_str!("../../queries/policies/s3_bucket_logging.yml"),
    ),
    (
        "s3_bucket_mfa_delete.yml",
        include_str!("../../queries/policies/s3_bucket_mfa_delete.yml"),
    ),
    (
        "s3_bucket_public_access_block.yml",
        include_str!("../../queries/policies/s3_bucket_public_access_block.yml"),
    ),
    (
        "s3_bucket_secure_access.yml",
        include_str!("../../queries/policies/s3_bucket_secure_access.yml"),
    ),
    (
        "s3_bucket_object_lock.yml",
        include_str!("../../queries/policies/s3_bucket_object_lock.yml"),
    ),
];

/// Every policy: shipped, then each folder's `*.yml` (same id replaces). Sorted by id.
pub fn load(dirs: &[&Path]) -> Result<Vec<Arc<Policy>>> {
    let mut by_id = BTreeMap::new();
    for (file, text) in crate::detect::content_files("policies/", BUILTIN, dirs)? {
        let p = Policy::from_yaml(&file, &text)?;
        by_id.insert(p.id.clone(), p);
    }
    Ok(by_id.into_values().map(Arc::new).collect())
}

/// Resources (Panther shape or AWS Config items) as a bucket-table batch.
pub fn resources_batch(docs: &[serde_json::Value], now: i64) -> Result<RecordBatch> {
    let mut norm = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        match resource::normalize(d) {
            Ok(Some(r)) => norm.push(r),
            Ok(None) => {}
            Err(m) => return Err(Error::invalid(format!("resource {}: {m}", i + 1))),
        }
    }
    resource::to_batch(
        &norm,
        &resource::Origin {
            source_id: "test",
            label: "test",
            default_time: now,
            parse_time: now,
        },
    )
}

/// Outcome of one policy test.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub policy: String,
    pub test: String,
    pub failure: Option<String>,
}

/// Run every policy's embedded tests.
pub fn run_tests(policies: &[Arc<Policy>]) -> Vec<TestOutcome> {
    let now = chrono::Utc::now().timestamp_micros();
    let mut out = Vec::new();
    for p in policies {
        let o = |test: &str, failure: Option<String>| TestOutcome {
            policy: p.id.clone(),
            test: test.into(),
            failure,
        };
        let c = match Compiled::new(p.clone()) {
            Ok(c) => c,
            Err(e) => {
                out.push(o("(compile)", Some(e.to_string())));
                continue;
            }
        };
        if p.tests.is_empty() {
            out.push(o("(tests)", Some("the policy has no Tests".into())));
        }
        for t in &p.tests {
            let r = resources_batch(std::slice::from_ref(&t.resource), now).map(|b| c.eval(&b));
            out.push(match r {
                Err(e) => o(&t.name, Some(e.to_string())),
                Ok(v) if v.len() != 1 => o(&t.name, Some("not an S3 bucket resource".into())),
                Ok(v) => match &v[0] {
                    Err(e) => o(&t.name, Some(format!("error: {e}"))),
                    Ok(got) => o(
                        &t.name,
                        (*got != t.expected_result)
                            .then(|| format!("expected {}, got {got}", t.expected_result)),
                    ),
                },
            });
        }
    }
    out
}

/// What a resources ingest did.
#[derive(Debug, Default, Clone)]
pub struct ResourceSummary {
    pub files: usize,
    pub skipped: usize,
    pub resources: usize,
    /// Documents of other resource types, not stored.
    pub other_types: usize,
}

/// Ingest resource snapshot files (files, folders, globs) exactly once.
pub async fn ingest_resources(lake: &Lake, args: &[String]) -> Result<ResourceSummary> {
    let found = crate::ingest::source::discover(args, lake.stores()).await?;
    lock::holding(lake, "ingest", async {
        commit::recover(lake).await?;
        let ledger = commit::ledger_ids(lake).await?;
        let mut summary = ResourceSummary::default();
        let txn = commit::new_txn_id();
        let mut writer = PartitionedWriter::new(&txn, WriterConfig::default());
        let spec = Arc::new(TableSpec::new(
            DB,
            S3_BUCKET_TABLE,
            S3_BUCKET,
            resource::bucket_schema(),
            vec!["raw".into(), "p_row_id".into()],
            vec![],
        ));
        let t = writer.add_table(spec)?;
        let mut files = Vec::new();
        let mut sources = Vec::new();
        let now = chrono::Utc::now();
        for found in found {
            let src = match found {
                crate::ingest::source::Found::Source(s) => s,
                crate::ingest::source::Found::Failed(name, why) => {
                    return Err(Error::invalid(format!("{name}: {why}")));
                }
            };
            if ledger.contains(&src.info.id) {
                summary.skipped += 1;
                continue;
            }
            let stored = src.read_all().await?;
            let text = crate::ingest::source::decompress(stored.to_vec())
                .map_err(|e| src.io_error(e))
                .and_then(|b| {
                    String::from_utf8(b).map_err(|e| {
                        Error::invalid(format!("{}: not UTF-8 text: {e}", src.label()))
                    })
                })?;
            let label = src.info.label.clone();
            let docs = resource::documents(&text, &label)?;
            let mut norm = Vec::new();
            for (i, d) in docs.iter().enumerate() {
                match resource::normalize(d) {
                    Ok(Some(r)) => norm.push(r),
                    Ok(None) => summary.other_types += 1,
                    Err(m) => {
                        return Err(Error::invalid(format!("{label}: resource {}: {m}", i + 1)));
                    }
                }
            }
            let mtime = src.modified.unwrap_or(now);
            let batch = resource::to_batch(
                &norm,
                &resource::Origin {
                    source_id: &src.info.id,
                    label: &label,
                    default_time: mtime.timestamp_micros(),
                    parse_time: now.timestamp_micros(),
                },
            )?;
            summary.files += 1;
            summary.resources += norm.len();
            sources.push(LedgerEntry {
                source_id: src.info.id.clone(),
                label,
                log_type: S3_BUCKET.into(),
                bytes: src.size,
                lines: docs.len() as u64,
                rows: norm.len() as u64,
                quarantined: 0,
                txn: txn.clone(),
                ingested_at: now.to_rfc3339(),
                mark: None,
            });
            for job in writer.push(t, batch)? {
                files.push(stage_job(lake, &job).await?);
            }
        }
        for job in writer.finish() {
            files.push(stage_job(lake, &job).await?);
        }
        if !sources.is_empty() {
            let record = CommitRecord {
                txn,
                created_at: now.to_rfc3339(),
                files,
                sources,
            };
            commit::commit(lake, &record).await?;
        }
        Ok(summary)
    })
    .await
}

/// One policy's counts in an evaluation.
#[derive(Debug, Default, Clone)]
pub struct PolicyCounts {
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
    pub suppressed: usize,
}

/// What [`evaluate`] did.
#[derive(Debug, Default)]
pub struct EvalSummary {
    pub resources: usize,
    pub by_policy: BTreeMap<String, (Severity, PolicyCounts)>,
    /// (policy, resource, error) for every ERROR.
    pub errors: Vec<(String, String, String)>,
    pub alerts_raised: usize,
    pub delivery: DeliveryReport,
}

/// Schema of `panther_cloudsecurity.compliance`.
pub fn compliance_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("policy_id", DataType::Utf8, false),
        Field::new("resource_id", DataType::Utf8, false),
        Field::new("resource_type", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("snapshot_time", TIMESTAMP, false),
        Field::new("p_event_time", TIMESTAMP, false),
    ]))
}

/// Evaluate `policies` (enabled ones, unless named) over the newest snapshot of each resource.
pub async fn evaluate(
    lake: &Lake,
    registry: Arc<Registry>,
    policies: &[Arc<Policy>],
    config: &Config,
) -> Result<EvalSummary> {
    let compiled: Vec<Compiled> = policies
        .iter()
        .map(|p| Compiled::new(p.clone()))
        .collect::<Result<_>>()?;
    lock::holding(lake, "ingest", async {
        commit::recover(lake).await?;
        let mut summary = EvalSummary::default();
        let engine = Engine::open(lake, registry, EngineOptions { read_only: true }).await?;
        let has_table = lake.tables().await?.iter().any(|(d, t)| d == DB && t == S3_BUCKET_TABLE);
        let schema = resource::bucket_schema();
        let mut batches = Vec::new();
        if has_table {
            let cols: Vec<String> = schema.fields().iter().map(|f| format!("\"{}\"", f.name())).collect();
            let sql = format!(
                "SELECT {c} FROM (SELECT {c}, row_number() OVER (PARTITION BY resource_id ORDER BY snapshot_time DESC, p_parse_time DESC) AS rn \
                 FROM {DB}.{S3_BUCKET_TABLE}) WHERE rn = 1 ORDER BY resource_id",
                c = cols.join(", ")
            );
            let mut stream = engine.sql(&sql).await?.execute_stream().await?;
            while let Some(b) = stream.next().await {
                batches.push(cast_batch(&b?, &schema)?);
            }
        }
        let now = chrono::Utc::now().timestamp_micros();
        let mut book = AlertBook::load(lake).await?;
        let (mut pid, mut rid, mut status, mut sev, mut err, mut snap) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for b in &batches {
            summary.resources += b.num_rows();
            let ids = b.column(0).as_string::<i32>().clone();
            let snaps = b
                .column_by_name("snapshot_time")
                .map(|c| c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().clone())
                .ok_or_else(|| Error::invalid("resources lack snapshot_time"))?;
            for c in &compiled {
                let p = &c.policy;
                let counts = &mut summary
                    .by_policy
                    .entry(p.id.clone())
                    .or_insert((p.severity, PolicyCounts::default()))
                    .1;
                let det = p.detection();
                for (i, r) in c.eval(b).into_iter().enumerate() {
                    let id = ids.value(i);
                    if c.suppressed(id) {
                        counts.suppressed += 1;
                        continue;
                    }
                    let (st, e) = match r {
                        Ok(true) => {
                            counts.pass += 1;
                            ("PASS", None)
                        }
                        Ok(false) => {
                            counts.fail += 1;
                            let window = alert::window_start(now, det.dedup_period_minutes);
                            let aid = alert::alert_id(det.origin, &det.id, id, window);
                            let title = format!(
                                "{} failed on {id}",
                                p.display_name.as_deref().unwrap_or(&p.id)
                            );
                            let hit = Hit {
                                id: &aid,
                                window,
                                event_time: now,
                                title: &title,
                                dedup: id,
                            };
                            book.observe(&det, &hit, now);
                            ("FAIL", None)
                        }
                        Err(e) => {
                            counts.error += 1;
                            summary.errors.push((p.id.clone(), id.to_string(), e.clone()));
                            ("ERROR", Some(e))
                        }
                    };
                    pid.push(p.id.clone());
                    rid.push(id.to_string());
                    status.push(st);
                    sev.push(p.severity.as_str());
                    err.push(e);
                    snap.push(snaps.value(i));
                }
            }
        }
        let txn = commit::new_txn_id();
        let mut files = Vec::new();
        if !pid.is_empty() {
            let n = pid.len();
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(pid)),
                Arc::new(StringArray::from(rid)),
                Arc::new(StringArray::from(vec![S3_BUCKET; n])),
                Arc::new(StringArray::from(status)),
                Arc::new(StringArray::from(sev)),
                Arc::new(StringArray::from(err)),
                Arc::new(TimestampMicrosecondArray::from(snap)),
                Arc::new(TimestampMicrosecondArray::from(vec![now; n])),
            ];
            let batch = RecordBatch::try_new(compliance_schema(), cols)?;
            let mut writer = PartitionedWriter::new(&txn, WriterConfig::default());
            let t = writer.add_table(Arc::new(TableSpec::new(
                DB,
                COMPLIANCE_TABLE,
                "Seclake.Compliance",
                compliance_schema(),
                vec![],
                vec![],
            )))?;
            for job in writer.push(t, batch)?.into_iter().chain(writer.finish()) {
                files.push(stage_job(lake, &job).await?);
            }
        }
        summary.alerts_raised = book.newly_raised().len();
        files.extend(
            alert::stage(lake, &txn, &crate::lake::paths::staging_dir(&txn), &book, |a| {
                let only = policies
                    .iter()
                    .find(|p| p.id == a.detection_id)
                    .and_then(|p| p.output_ids.as_deref());
                config.destinations_for(a.severity, only)
            })
            .await?,
        );
        if !files.is_empty() {
            commit::commit(
                lake,
                &CommitRecord {
                    txn,
                    created_at: chrono::Utc::now().to_rfc3339(),
                    files,
                    sources: vec![],
                },
            )
            .await?;
        }
        summary.delivery = sink::deliver_pending(lake, config).await?;
        Ok(summary)
    })
    .await
}
