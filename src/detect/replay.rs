//! `seclake detect`: run rules over events already in the lake (new rules, backfills).
//!
//! Same semantics as detection on ingest — the same compiled rules, dedup windows and alert
//! ids — with one difference: alerts that already exist are left as they are (their events
//! were counted when they were ingested), so replaying a range twice, or over data whose
//! alerts were raised on ingest, creates nothing twice. New alerts and their rule matches
//! are committed in one transaction under the ingest lock.

use std::sync::Arc;

use futures::StreamExt;

use super::alert::{self, AlertBook};
use super::eval::RuleSet;
use super::rule::Rule;
use super::sink::{self, DeliveryReport};
use super::{day_number, ts_literal};
use crate::config::Config;
use crate::engine::{Engine, EngineOptions};
use crate::error::Result;
use crate::lake::commit::{self, CommitRecord};
use crate::lake::lock;
use crate::lake::writer::{PartitionedWriter, TableSpec, WriterConfig, cast_batch, stage_job};
use crate::lake::{LOGS_DB, Lake};
use crate::schema::Registry;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Events with `p_event_time >= since` (µs)...
    pub since: i64,
    /// ... and `< until`, when given.
    pub until: Option<i64>,
    pub rules: Vec<Arc<Rule>>,
    pub config: Config,
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct ReplaySummary {
    /// Events the rules were evaluated on.
    pub events: u64,
    /// Matches that belong to new alerts (written to `panther_rule_matches`).
    pub matches: u64,
    pub alerts_raised: usize,
    pub alerts_changed: usize,
    pub delivery: DeliveryReport,
    /// Time spent evaluating rules (conditions, titles, dedup strings, context), not reading.
    pub eval_time: std::time::Duration,
    /// Of which conditions alone.
    pub condition_time: std::time::Duration,
}

/// Replay `opts.rules` over the lake's events in the time range.
pub async fn replay(
    lake: &Lake,
    registry: Arc<Registry>,
    opts: &ReplayOptions,
) -> Result<ReplaySummary> {
    lock::holding(lake, "ingest", replay_locked(lake, registry, opts)).await
}

async fn replay_locked(
    lake: &Lake,
    registry: Arc<Registry>,
    opts: &ReplayOptions,
) -> Result<ReplaySummary> {
    commit::recover(lake).await?;
    let mut summary = ReplaySummary::default();
    let mut book = AlertBook::load(lake).await?.only_new();
    let engine = Engine::open(lake, registry.clone(), EngineOptions { read_only: true }).await?;
    let tables = lake.tables().await?;
    let txn = commit::new_txn_id();
    let mut writer = PartitionedWriter::new(&txn, WriterConfig::default());
    let mut files = Vec::new();
    let now = chrono::Utc::now().timestamp_micros();
    for schema in registry.iter() {
        let table = schema.table();
        if !tables.iter().any(|(d, t)| d == LOGS_DB && *t == table) {
            continue;
        }
        let arrow_schema = schema.arrow_schema();
        let set = RuleSet::compile(&opts.rules, &schema.log_type, &arrow_schema)?;
        if set.rules.is_empty() {
            continue;
        }
        let detections: Vec<_> = set
            .rules
            .iter()
            .map(|r| super::detection(&r.rule))
            .collect();
        let t = writer.add_table(Arc::new(TableSpec::rule_matches(schema)))?;
        let match_schema = writer.schema(t);
        let cols: Vec<String> = arrow_schema
            .fields()
            .iter()
            .map(|f| format!("\"{}\"", f.name()))
            .collect();
        let mut filter = format!(
            "p_event_time >= {} AND year * 10000 + month * 100 + day >= {}",
            ts_literal(opts.since),
            day_number(opts.since)
        );
        if let Some(u) = opts.until {
            filter.push_str(&format!(
                " AND p_event_time < {} AND year * 10000 + month * 100 + day <= {}",
                ts_literal(u),
                day_number(u)
            ));
        }
        let sql = format!(
            "SELECT {} FROM {LOGS_DB}.{table} WHERE {filter} ORDER BY p_event_time",
            cols.join(", ")
        );
        let mut stream = engine.sql(&sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            // The lake's string columns read back as views: cast to the parser's types, which
            // the rules were compiled for.
            let batch = cast_batch(&batch?, &arrow_schema)?;
            summary.events += batch.num_rows() as u64;
            let started = std::time::Instant::now();
            let (hits, conditions) = set.eval_timed(&batch)?;
            summary.eval_time += started.elapsed();
            summary.condition_time += conditions;
            for (i, m) in hits {
                let rule = &set.rules[i].rule;
                if let Some(b) =
                    super::matches::build(rule, &detections[i], &m, &mut book, now, &match_schema)?
                {
                    summary.matches += b.num_rows() as u64;
                    for job in writer.push_part(t, i as u32, b)? {
                        files.push(stage_job(lake, &job).await?);
                    }
                }
            }
        }
    }
    for job in writer.finish() {
        files.push(stage_job(lake, &job).await?);
    }
    let moves = alert::stage(
        lake,
        &txn,
        &crate::lake::paths::staging_dir(&txn),
        &book,
        |a| crate::detect::destinations_for(&opts.config, &opts.rules, a),
    )
    .await?;
    summary.alerts_raised = book.newly_raised().len();
    summary.alerts_changed = book.changes().len();
    files.extend(moves);
    if !files.is_empty() {
        let record = CommitRecord {
            txn: txn.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
            files,
            sources: vec![],
        };
        commit::commit(lake, &record).await?;
    }
    summary.delivery = sink::deliver_pending(lake, &opts.config).await?;
    Ok(summary)
}
