//! Rule-match rows: the matching events with the rule and alert they belong to, for
//! `panther_rule_matches.<table>` (Panther's columns `p_rule_id`, `p_alert_id`,
//! `p_alert_creation_time`, `p_alert_update_time`, `p_rule_severity`, `p_rule_tags`, plus
//! `p_alert_title` and `p_alert_context`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use arrow::compute::filter;
use arrow::datatypes::{DataType, Field, SchemaRef, TimestampMicrosecondType};

use super::alert::{AlertBook, Detection, Hit, Observed, alert_id, window_start};
use super::eval::RuleMatches;
use super::rule::Rule;
use crate::error::{Error, Result};
use crate::parse::standard::repeat;
use crate::schema::TIMESTAMP;

/// Columns a rule-match table adds to its log table.
pub fn match_fields() -> Vec<Field> {
    vec![
        Field::new("p_rule_id", DataType::Utf8, false),
        Field::new("p_rule_severity", DataType::Utf8, false),
        Field::new(
            "p_rule_tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new("p_alert_id", DataType::Utf8, false),
        Field::new("p_alert_title", DataType::Utf8, false),
        Field::new("p_alert_context", DataType::Utf8, true),
        Field::new("p_alert_creation_time", TIMESTAMP, false),
        Field::new("p_alert_update_time", TIMESTAMP, false),
    ]
}

/// Count `m`'s rows into `book` and build their rule-match rows (of `schema`). Rows of alerts
/// the book does not count (replay of existing alerts) are left out; `None` when none is left.
pub fn build(
    rule: &Rule,
    det: &Detection,
    m: &RuleMatches,
    book: &mut AlertBook,
    now: i64,
    schema: &SchemaRef,
) -> Result<Option<RecordBatch>> {
    let times = m
        .rows
        .column_by_name("p_event_time")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| Error::invalid("rule matches lack p_event_time"))?;
    let n = m.rows.num_rows();
    let mut keep = Vec::with_capacity(n);
    let mut ids = StringBuilder::with_capacity(n, n * 32);
    let mut created = Vec::with_capacity(n);
    // The alert ids of the batch's (dedup string, window) pairs: a batch's matches fall in few
    // alerts, often not on consecutive rows (an id costs about 1,000 instructions to make).
    let mut known: HashMap<(&str, i64), String> = HashMap::new();
    for r in 0..n {
        let t = times.value(r);
        let dedup = m.dedups.value(r);
        let window = window_start(t, det.dedup_period_minutes);
        let id: &str = known
            .entry((dedup, window))
            .or_insert_with(|| alert_id(det.origin, &det.id, dedup, window));
        let hit = Hit {
            id,
            window,
            event_time: t,
            title: m.titles.value(r),
            dedup,
        };
        match book.observe(det, &hit, now) {
            Observed::Counted { created_at } => {
                keep.push(true);
                ids.append_value(id);
                created.push(created_at);
            }
            Observed::Existing => keep.push(false),
        }
    }
    let kept = created.len();
    if kept == 0 {
        return Ok(None);
    }
    let mask = BooleanArray::from(keep);
    let pick = |a: &ArrayRef| -> Result<ArrayRef> {
        Ok(if kept == n {
            a.clone()
        } else {
            filter(a, &mask)?
        })
    };
    let mut columns: Vec<ArrayRef> = m.rows.columns().iter().map(pick).collect::<Result<_>>()?;
    let mut tags = ListBuilder::new(StringBuilder::new());
    for _ in 0..kept {
        for t in &rule.tags {
            tags.values().append_value(t);
        }
        tags.append(true);
    }
    let context: ArrayRef = match &m.context {
        Some(c) => pick(&(Arc::new(c.clone()) as ArrayRef))?,
        None => Arc::new(StringArray::new_null(kept)),
    };
    columns.extend([
        repeat(&rule.id, kept),
        repeat(rule.severity.as_str(), kept),
        Arc::new(tags.finish()) as ArrayRef,
        Arc::new(ids.finish()),
        pick(&(Arc::new(m.titles.clone()) as ArrayRef))?,
        context,
        Arc::new(TimestampMicrosecondArray::from(created)),
        Arc::new(TimestampMicrosecondArray::from(vec![now; kept])),
    ]);
    let schema = crate::lake::writer::typed_as(schema, &columns);
    Ok(Some(RecordBatch::try_new(schema, columns)?))
}
