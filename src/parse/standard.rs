//! Panther's standard fields, appended to every parsed batch.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampMicrosecondArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::SourceInfo;
use super::indicators::IndicatorPlan;
use crate::error::Result;
use crate::schema::LogSchema;

/// Builds the `p_` columns and indicator lists for one log type.
#[derive(Debug, Clone)]
pub struct StandardFields {
    schema: Arc<LogSchema>,
    arrow: SchemaRef,
    indicators: IndicatorPlan,
}

impl StandardFields {
    /// For batches of `schema`.
    pub fn new(schema: Arc<LogSchema>) -> Self {
        let indicators = IndicatorPlan::new(&schema);
        let arrow = schema.arrow_schema();
        StandardFields {
            schema,
            arrow,
            indicators,
        }
    }

    /// Assemble the final batch from the declared `columns`, the event time of each row and
    /// the physical line number each row came from.
    pub fn finish(
        &self,
        columns: Vec<ArrayRef>,
        event_times: Vec<i64>,
        lines: &[u64],
        source: &SourceInfo,
        parse_time: i64,
    ) -> Result<RecordBatch> {
        let indicators = self.indicators.build(&columns, event_times.len());
        self.assemble(columns, indicators, event_times, lines, source, parse_time)
    }

    /// Assemble the final batch from the declared `columns` and `indicators` (the `p_any_*`
    /// lists in [`LogSchema::indicator_columns`] order) computed by the parser itself.
    pub fn assemble(
        &self,
        mut columns: Vec<ArrayRef>,
        indicators: Vec<ArrayRef>,
        event_times: Vec<i64>,
        lines: &[u64],
        source: &SourceInfo,
        parse_time: i64,
    ) -> Result<RecordBatch> {
        let rows = event_times.len();
        columns.push(repeat(&self.schema.log_type, rows));
        columns.push(row_ids(&source.id, lines));
        columns.push(Arc::new(TimestampMicrosecondArray::from(event_times)));
        columns.push(Arc::new(TimestampMicrosecondArray::from(vec![
            parse_time;
            rows
        ])));
        columns.push(repeat(&source.id, rows));
        columns.push(repeat(&source.label, rows));
        columns.extend(indicators);
        Ok(RecordBatch::try_new(self.arrow.clone(), columns)?)
    }
}

/// A string column holding `value` `rows` times.
pub fn repeat(value: &str, rows: usize) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows, rows * value.len());
    for _ in 0..rows {
        b.append_value(value);
    }
    Arc::new(b.finish())
}

/// `p_row_id`: the first 16 hex digits of the source id, then the line number in hex. Unique
/// per (source, line), the same on every re-parse, and compresses well (shared prefix).
pub fn row_ids(source_id: &str, lines: &[u64]) -> ArrayRef {
    let prefix = &source_id[..source_id.len().min(16)];
    let mut b = StringBuilder::with_capacity(lines.len(), lines.len() * 24);
    let mut s = String::with_capacity(32);
    for &line in lines {
        s.clear();
        s.push_str(prefix);
        let _ = write!(s, "{line:08x}");
        b.append_value(&s);
    }
    Arc::new(b.finish())
}
