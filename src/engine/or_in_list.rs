//! `x = 1 OR x = 2 OR x = 3` over an integer column in filters evaluated as `x IN (1, 2, 3)`.
//!
//! DataFusion's simplifier turns an `IN` list of up to three literals into a chain of `OR`ed
//! equalities, each a full pass over the column and each `OR` another pass over the answers.
//! Its own `IN` expression, given literals of a fixed-width integer type, compares every value
//! with the whole list in one branchless pass. For the seed query's `httpstatus IN (400, 403,
//! 405)` the three comparisons were 8% of the CPU.
//!
//! [`OrInListRule`] puts an `IN` list back in place of each `OR` of equalities between one
//! integer column and literals (and of such `IN` lists), in every filter's predicate. SQL gives
//! both forms the same answer on every row: NULL when the column is NULL, else whether the value
//! is one of the literals.

use std::sync::Arc;

use arrow::datatypes::Schema;
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, InListExpr, Literal, in_list};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use super::rewrite_filter_predicates;

/// Puts `IN` lists in place of `OR`s of equalities on one integer column (see the module docs).
#[derive(Debug, Default)]
pub struct OrInListRule;

impl PhysicalOptimizerRule for OrInListRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        rewrite_filter_predicates(plan, or_as_in_list)
    }

    fn name(&self) -> &str {
        "or_in_list"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `e` as one `IN` list when it is an `OR` of equalities (or `IN` lists) between the same
/// integer column and literals; `None` otherwise.
fn or_as_in_list(
    e: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> DfResult<Option<Arc<dyn PhysicalExpr>>> {
    let Some(or) = e.downcast_ref::<BinaryExpr>() else {
        return Ok(None);
    };
    if *or.op() != Operator::Or {
        return Ok(None);
    }
    let (Some((lc, mut list)), Some((rc, right))) = (
        column_in(or.left(), schema)?,
        column_in(or.right(), schema)?,
    ) else {
        return Ok(None);
    };
    if lc != rc {
        return Ok(None);
    }
    list.extend(right);
    let column = Arc::new(lc) as Arc<dyn PhysicalExpr>;
    Ok(Some(in_list(column, list, &false, schema)?))
}

/// A column and the literals it is compared with.
type ColumnIn = (Column, Vec<Arc<dyn PhysicalExpr>>);

/// The column and literals of `e` when it is `column = literal`, `literal = column` or
/// `column IN (literals)` over an integer column.
fn column_in(e: &Arc<dyn PhysicalExpr>, schema: &Schema) -> DfResult<Option<ColumnIn>> {
    let (column, list) = if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        if *b.op() != Operator::Eq {
            return Ok(None);
        }
        let (l, r) = (b.left(), b.right());
        match (l.downcast_ref::<Column>(), r.downcast_ref::<Column>()) {
            (Some(c), None) if r.downcast_ref::<Literal>().is_some() => (c, vec![Arc::clone(r)]),
            (None, Some(c)) if l.downcast_ref::<Literal>().is_some() => (c, vec![Arc::clone(l)]),
            _ => return Ok(None),
        }
    } else if let Some(i) = e.downcast_ref::<InListExpr>() {
        match i.expr().downcast_ref::<Column>() {
            Some(c)
                if !i.negated()
                    && i.list()
                        .iter()
                        .all(|l| l.downcast_ref::<Literal>().is_some()) =>
            {
                (c, i.list().to_vec())
            }
            _ => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let ty = column.data_type(schema)?;
    if !ty.is_integer() {
        return Ok(None);
    }
    // Both sides of `=` have the same type once DataFusion's coercion ran; a list whose
    // literals do not is left alone rather than trusted.
    for l in &list {
        if l.data_type(schema)? != ty {
            return Ok(None);
        }
    }
    Ok(Some((column.clone(), list)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::{col, lit};
    use proptest::prelude::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("m", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
        ])
    }

    fn eq(l: Arc<dyn PhysicalExpr>, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, Operator::Eq, r))
    }

    fn or(l: Arc<dyn PhysicalExpr>, r: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, Operator::Or, r))
    }

    /// Rewrites bottom-up, as the rule's walk does.
    fn rewrite(e: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        use datafusion::common::tree_node::{Transformed, TreeNode};
        e.transform_up(|e| {
            Ok(match or_as_in_list(&e, &schema())? {
                Some(new) => Transformed::yes(new),
                None => Transformed::no(e),
            })
        })
        .unwrap()
        .data
    }

    #[test]
    fn an_or_chain_on_one_integer_column_becomes_one_in_list() {
        let s = schema();
        let n = || col("n", &s).unwrap();
        let e = or(
            or(eq(n(), lit(400i32)), eq(lit(403i32), n())),
            eq(n(), lit(405i32)),
        );
        let r = rewrite(e);
        let i = r.downcast_ref::<InListExpr>().expect("an IN list");
        assert_eq!(i.list().len(), 3);
        assert_eq!(r.to_string(), "n@0 IN (SET) ([400, 403, 405])");
    }

    #[test]
    fn other_shapes_stay_as_they_are() {
        let s = schema();
        let (n, m, sc) = (
            col("n", &s).unwrap(),
            col("m", &s).unwrap(),
            col("s", &s).unwrap(),
        );
        let kept = [
            // two columns
            or(eq(n.clone(), lit(1i32)), eq(m.clone(), lit(2i32))),
            // not an equality
            or(
                eq(n.clone(), lit(1i32)),
                Arc::new(BinaryExpr::new(n.clone(), Operator::Gt, lit(5i32))),
            ),
            // strings
            or(eq(sc.clone(), lit("a")), eq(sc, lit("b"))),
            // NOT IN
            or(
                eq(n.clone(), lit(1i32)),
                in_list(n.clone(), vec![lit(2i32)], &true, &s).unwrap(),
            ),
            // column = column
            or(eq(n.clone(), m), eq(n, lit(1i32))),
        ];
        for e in kept {
            assert_eq!(rewrite(Arc::clone(&e)).to_string(), e.to_string());
        }
    }

    proptest! {
        /// Same answer (NULLs included) as the `OR` chain, on random values and lists.
        #[test]
        fn agrees_with_the_or_chain(
            values in proptest::collection::vec(proptest::option::of(-4i32..8), 0..64),
            list in proptest::collection::vec(-4i32..8, 2..6),
        ) {
            let s = Arc::new(schema());
            let n = || col("n", &s).unwrap();
            let chain = list
                .iter()
                .map(|v| eq(n(), lit(*v)))
                .reduce(or)
                .unwrap();
            let rows = values.len();
            let batch = RecordBatch::try_new(
                Arc::clone(&s),
                vec![
                    Arc::new(Int32Array::from(values)) as ArrayRef,
                    Arc::new(Int32Array::from(vec![0; rows])),
                    Arc::new(StringArray::from(vec!["x"; rows])),
                ],
            )
            .unwrap();
            let rewritten = rewrite(Arc::clone(&chain));
            prop_assert!(rewritten.downcast_ref::<InListExpr>().is_some());
            let want = chain.evaluate(&batch).unwrap().into_array(rows).unwrap();
            let got = rewritten.evaluate(&batch).unwrap().into_array(rows).unwrap();
            prop_assert_eq!(&got, &want);
        }
    }
}
