//! `AND` in filters without DataFusion's pre-selection when its right side is cheap and cannot
//! fail.
//!
//! DataFusion evaluates `a AND b` by evaluating `a`, and when at most a fifth of the rows pass
//! it, copying those rows of the whole batch out (every column, not only those `b` reads),
//! evaluating `b` on the copy and scattering the answers back, a run of rows at a time. For a
//! `b` like `httpstatus IN (400, 403, 405)` that machinery costs more than `b` on every row:
//! in the seed query (q01) the copy and the scatter were about 15% of the CPU.
//!
//! [`EagerAndRule`] replaces, in each filter's predicate, an `AND` whose right side is made
//! only of columns, literals, comparisons, `IN` lists of literals, `IS [NOT] NULL`, `NOT`,
//! `AND` and `OR` (and `LIKE` with a valid pattern over a dictionary column, see
//! [`super::like`]) by an [`EagerAnd`], which evaluates both sides on the whole batch and
//! combines them with SQL's three-valued `AND` (Arrow's `and_kleene`, as DataFusion does when
//! it does not short-circuit). Such a right side cannot fail on any row, so evaluating it on
//! rows the left side rejects changes no answer and raises no error. When the left side
//! rejects every row, the right side is not evaluated at all, as before.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::kernels::boolean::and_kleene;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, Literal, NotExpr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use super::like::MemoLike;
use super::rewrite_filter_predicates;

/// Puts an [`EagerAnd`] in place of each `AND` with a cheap, infallible right side in the
/// plan's filters.
#[derive(Debug, Default)]
pub struct EagerAndRule;

impl PhysicalOptimizerRule for EagerAndRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        rewrite_filter_predicates(plan, |e, schema| {
            Ok(match e.downcast_ref::<BinaryExpr>() {
                Some(b) if *b.op() == Operator::And && infallible(b.right(), schema) => {
                    Some(Arc::new(EagerAnd {
                        left: Arc::clone(b.left()),
                        right: Arc::clone(b.right()),
                    }) as Arc<dyn PhysicalExpr>)
                }
                _ => None,
            })
        })
    }

    fn name(&self) -> &str {
        "eager_and"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `e` is cheap on every row and cannot fail on any (see the module docs).
fn infallible(e: &Arc<dyn PhysicalExpr>, schema: &Schema) -> bool {
    let infallible = |e| infallible(e, schema);
    if e.downcast_ref::<Column>().is_some() || e.downcast_ref::<Literal>().is_some() {
        return true;
    }
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        use Operator::*;
        return matches!(
            b.op(),
            Eq | NotEq | Lt | LtEq | Gt | GtEq | And | Or | IsDistinctFrom | IsNotDistinctFrom
        ) && infallible(b.left())
            && infallible(b.right());
    }
    if let Some(i) = e.downcast_ref::<InListExpr>() {
        return infallible(i.expr())
            && i.list()
                .iter()
                .all(|l| l.downcast_ref::<Literal>().is_some());
    }
    if let Some(n) = e.downcast_ref::<IsNullExpr>() {
        return infallible(n.arg());
    }
    if let Some(n) = e.downcast_ref::<IsNotNullExpr>() {
        return infallible(n.arg());
    }
    if let Some(n) = e.downcast_ref::<NotExpr>() {
        return infallible(n.arg());
    }
    // A `LIKE` over a dictionary looks each row's answer up by its key.
    if let Some(l) = e.downcast_ref::<MemoLike>() {
        return l.cheap_and_infallible(schema);
    }
    false
}

/// Whether `e` needs parentheses as a side of `AND` (only `OR` binds looser).
fn binds_looser(e: &Arc<dyn PhysicalExpr>) -> bool {
    e.downcast_ref::<BinaryExpr>()
        .is_some_and(|b| *b.op() == Operator::Or)
}

/// `left AND right` evaluated on every row; see the module docs.
#[derive(Debug, Clone)]
pub struct EagerAnd {
    left: Arc<dyn PhysicalExpr>,
    right: Arc<dyn PhysicalExpr>,
}

impl PhysicalExpr for EagerAnd {
    fn data_type(&self, _schema: &Schema) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, schema: &Schema) -> DfResult<bool> {
        Ok(self.left.nullable(schema)? || self.right.nullable(schema)?)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        let rows = batch.num_rows();
        let left = self.left.evaluate(batch)?;
        let rejects_all = match &left {
            ColumnarValue::Array(a) => {
                let b = a.as_boolean();
                b.null_count() == 0 && b.true_count() == 0
            }
            ColumnarValue::Scalar(s) => s == &false.into(),
        };
        if rejects_all {
            return Ok(left);
        }
        let right = self.right.evaluate(batch)?;
        let (l, r) = (left.into_array(rows)?, right.into_array(rows)?);
        Ok(ColumnarValue::Array(Arc::new(and_kleene(
            l.as_boolean(),
            r.as_boolean(),
        )?)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.left, &self.right]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(EagerAnd {
            left: Arc::clone(&children[0]),
            right: Arc::clone(&children[1]),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, |f, side| side.fmt_sql(f))
    }
}

impl fmt::Display for EagerAnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, |f, side| write!(f, "{side}"))
    }
}

impl EagerAnd {
    /// `left AND right` as DataFusion writes an `AND`: a side that is an `OR` in parentheses.
    fn write(
        &self,
        f: &mut fmt::Formatter<'_>,
        side: impl Fn(&mut fmt::Formatter<'_>, &Arc<dyn PhysicalExpr>) -> fmt::Result,
    ) -> fmt::Result {
        for (i, e) in [&self.left, &self.right].into_iter().enumerate() {
            if i == 1 {
                f.write_str(" AND ")?;
            }
            if binds_looser(e) {
                f.write_str("(")?;
                side(f, e)?;
                f.write_str(")")?;
            } else {
                side(f, e)?;
            }
        }
        Ok(())
    }
}

impl PartialEq for EagerAnd {
    fn eq(&self, other: &Self) -> bool {
        self.left.as_ref() == other.left.as_ref() && self.right.as_ref() == other.right.as_ref()
    }
}

impl Eq for EagerAnd {}

impl Hash for EagerAnd {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.left.hash(state);
        self.right.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::dict_scan::dictionary_type;
    use arrow::array::{ArrayRef, BooleanArray, Int32Array, StringArray, StringViewArray};
    use arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::LikeExpr;
    use datafusion::physical_expr::expressions::{col, in_list, is_not_null, lit};
    use proptest::prelude::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new("n", DataType::Int32, true),
            Field::new("d", dictionary_type(), true),
        ])
    }

    fn batch(rows: &[(Option<u8>, Option<i32>)]) -> RecordBatch {
        let values = || rows.iter().map(|(s, _)| s.map(|s| format!("value-{s}")));
        let s: ArrayRef = Arc::new(StringViewArray::from_iter(values()));
        let n: ArrayRef = Arc::new(Int32Array::from_iter(rows.iter().map(|(_, n)| *n)));
        let d =
            arrow::compute::cast(&StringArray::from_iter(values()), &dictionary_type()).unwrap();
        RecordBatch::try_new(Arc::new(schema()), vec![s, n, d]).unwrap()
    }

    /// `LIKE` as the plan has it once [`super::super::like::MemoLikeRule`] ran.
    fn memo_like(column: &str, pattern: &str) -> Arc<dyn PhysicalExpr> {
        let c = col(column, &schema()).unwrap();
        let p = lit(ScalarValue::Utf8(Some(pattern.into())));
        Arc::new(MemoLike::new(&LikeExpr::new(false, false, c, p)))
    }

    /// `s IS NOT NULL AND n IN (1, 3)` and `(s = 'value-2') AND (n > 0 OR n IS NULL)`.
    fn predicates() -> Vec<Arc<dyn PhysicalExpr>> {
        let schema = schema();
        let s = col("s", &schema).unwrap();
        let n = col("n", &schema).unwrap();
        let in13 = in_list(Arc::clone(&n), vec![lit(1i32), lit(3i32)], &false, &schema).unwrap();
        let eq2: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::clone(&s),
            Operator::Eq,
            lit(ScalarValue::Utf8View(Some("value-2".into()))),
        ));
        let pos: Arc<dyn PhysicalExpr> =
            Arc::new(BinaryExpr::new(Arc::clone(&n), Operator::Gt, lit(0i32)));
        let pos_or_null: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            pos,
            Operator::Or,
            Arc::new(IsNullExpr::new(Arc::clone(&n))),
        ));
        vec![
            Arc::new(BinaryExpr::new(
                is_not_null(s).unwrap(),
                Operator::And,
                in13,
            )),
            Arc::new(BinaryExpr::new(eq2, Operator::And, pos_or_null)),
            Arc::new(BinaryExpr::new(
                Arc::new(BinaryExpr::new(n, Operator::Lt, lit(2i32))),
                Operator::And,
                memo_like("d", "%e-_"),
            )),
        ]
    }

    fn eager(p: &Arc<dyn PhysicalExpr>) -> EagerAnd {
        let b = p.downcast_ref::<BinaryExpr>().unwrap();
        assert!(infallible(b.right(), &schema()));
        EagerAnd {
            left: Arc::clone(b.left()),
            right: Arc::clone(b.right()),
        }
    }

    fn answers(e: &dyn PhysicalExpr, b: &RecordBatch) -> BooleanArray {
        e.evaluate(b)
            .unwrap()
            .into_array(b.num_rows())
            .unwrap()
            .as_boolean()
            .clone()
    }

    proptest! {
        /// The same answers as DataFusion's `AND`, NULLs included, whatever share of rows the
        /// left side keeps (so with and without its pre-selection).
        #[test]
        fn answers_are_datafusions(
            rows in proptest::collection::vec(
                (proptest::option::of(0u8..6), proptest::option::of(-2i32..5)), 0..200),
        ) {
            let b = batch(&rows);
            for p in predicates() {
                prop_assert_eq!(answers(&eager(&p), &b), answers(p.as_ref(), &b));
            }
        }
    }

    #[test]
    fn only_cheap_infallible_right_sides_qualify() {
        let schema = schema();
        let n = col("n", &schema).unwrap();
        let div: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(BinaryExpr::new(
                lit(10i32),
                Operator::Divide,
                Arc::clone(&n),
            )),
            Operator::Gt,
            lit(1i32),
        ));
        // `n <> 0 AND 10 / n > 1` must keep its short circuit: division by zero fails.
        assert!(!infallible(&div, &schema));
        // `LIKE` over views matches the values it has not seen yet on every row.
        assert!(!infallible(&memo_like("s", "%e-_"), &schema));
        for p in predicates() {
            let b = p.downcast_ref::<BinaryExpr>().unwrap();
            assert!(infallible(b.right(), &schema));
        }
    }

    #[test]
    fn shown_as_datafusion_shows_and() {
        for p in predicates() {
            assert_eq!(eager(&p).to_string(), p.to_string());
        }
    }
}
