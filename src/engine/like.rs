//! `LIKE` over string views, matched once per distinct value.
//!
//! Parquet stores a column of few distinct values (object keys under a few prefixes, user
//! agents, operations) with a dictionary per column chunk, and the reader hands DataFusion
//! string views that point into that dictionary: a row group of 100,000 rows may reference a
//! few thousand values. Arrow's `LIKE` kernel still matches every row (a substring search or a
//! regex each): `key LIKE '%customers%'` over 10M rows spent 46% of the query's CPU there.
//!
//! [`MemoLikeRule`] replaces each `LIKE` with a literal pattern over a view column in a filter
//! by a [`MemoLike`], which remembers the answer for each value a view points at (data buffer,
//! offset, length) for as long as that buffer is in use, across batches, and runs Arrow's kernel
//! only on values it has not seen. Answers are Arrow's: the kernel decides every value once.
//! Where values do not repeat (a plain-encoded, high-cardinality column) most lookups miss, and
//! after a few batches the expression goes back to the plain kernel.
//!
//! Log tables read their dictionary-encoded columns as Arrow dictionaries
//! ([`super::dict_scan`]); there the pattern is matched once per value of the column chunk's
//! dictionary (its batches share the values), and each row takes its key's answer.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, RecordBatch, Scalar, StringArray,
    UInt32Array,
};
use arrow::buffer::{BooleanBuffer, Buffer, MutableBuffer};
use arrow::compute::kernels::comparison::{ilike, like};
use arrow::compute::take;
use arrow::datatypes::{DataType, Int32Type, Schema};
use arrow::util::bit_util;
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{LikeExpr, Literal};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use super::dict_scan::{dictionary_type, padded};
use super::rewrite_filter_predicates;
use super::view_memo::{BufferMemo, DictionaryMemo, slot};

/// Data buffers remembered per expression (a scan partition reads one column chunk at a time,
/// and a few partitions run at once).
const BUFFERS: usize = 16;
/// Larger buffers are not remembered (the memo takes an eighth as many bytes as the buffer: two
/// bytes a slot, `Slot::key | matched`, keep it in cache).
const MAX_BUFFER: usize = 16 << 20;
/// Batches looked at before deciding whether values repeat enough to keep remembering.
const TRIAL_BATCHES: u64 = 8;

/// Puts a [`MemoLike`] in place of each `LIKE` over a `Utf8View` or dictionary column with a
/// literal pattern in the plan's filters.
#[derive(Debug, Default)]
pub struct MemoLikeRule;

impl PhysicalOptimizerRule for MemoLikeRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        rewrite_filter_predicates(plan, |e, schema| {
            Ok(match e.downcast_ref::<LikeExpr>() {
                Some(l) if memoizable(l, schema) => {
                    Some(Arc::new(MemoLike::new(l)) as Arc<dyn PhysicalExpr>)
                }
                _ => None,
            })
        })
    }

    fn name(&self) -> &str {
        "memo_like"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn memoizable(l: &LikeExpr, schema: &Schema) -> bool {
    let literal = l
        .pattern()
        .downcast_ref::<Literal>()
        .is_some_and(|p| !p.value().is_null());
    literal
        && l.expr()
            .data_type(schema)
            .is_ok_and(|t| t == DataType::Utf8View || t == dictionary_type())
}

/// The pattern of `l` when it is a non-NULL string literal.
fn literal_pattern(l: &LikeExpr) -> Option<&str> {
    l.pattern()
        .downcast_ref::<Literal>()
        .and_then(|p| p.value().try_as_str().flatten())
}

/// Whether `s` is literal text in a `LIKE` pattern (no wildcard, no escape).
fn plain(s: &str) -> bool {
    !s.contains(['%', '_', '\\'])
}

/// Whether Arrow's kernel matches `pattern` with a regex it compiles on each call; patterns
/// that are an equality, a prefix, a suffix or (`LIKE` only) a substring it matches directly,
/// faster than a regex does.
fn kernel_compiles_regex(pattern: &str, case_insensitive: bool) -> bool {
    let (head, tail) = (pattern.strip_suffix('%'), pattern.strip_prefix('%'));
    let simple = plain(pattern)
        || head.is_some_and(plain)
        || tail.is_some_and(plain)
        || (!case_insensitive && tail.and_then(|t| t.strip_suffix('%')).is_some_and(plain));
    !simple || (case_insensitive && !pattern.is_ascii())
}

/// A `LIKE` pattern as the regex Arrow's kernel matches it with (anchored, `%` any run, `_`
/// any one character, `\` escaping the next character, `.` matching newlines), so answers
/// are the kernel's for every pattern, including those it matches without a regex. `None`
/// when the regex does not build (the kernel then reports the error).
fn like_regex(pattern: &str, case_insensitive: bool) -> Option<regex::Regex> {
    let mut re = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars().peekable();
    if chars.peek() == Some(&'%') {
        chars.next();
    } else {
        re.push('^');
    }
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => re.push_str(&regex::escape(&next.to_string())),
                // A trailing backslash is a literal backslash.
                None => re.push_str(r"\\"),
            },
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if re.ends_with(".*") {
        re.truncate(re.len() - 2);
    } else {
        re.push('$');
    }
    regex::RegexBuilder::new(&re)
        .case_insensitive(case_insensitive)
        .dot_matches_new_line(true)
        .build()
        .ok()
}

/// Whether each of `strings` contains `finder`'s needle (0 for NULL): one search over the bytes
/// all values share, each match then placed in its value by the offsets (a match across two
/// values counts for neither), instead of a search per value, whose set-up cost more than
/// the search for keys of a few dozen bytes (q08: 5% of the CPU in Arrow's kernel).
fn contains_each(strings: &StringArray, finder: &memchr::memmem::Finder) -> Vec<u8> {
    let offsets = strings.value_offsets();
    let bytes = strings.value_data();
    let needle = finder.needle().len();
    let mut answers = vec![0u8; strings.len()];
    let end = offsets[strings.len()] as usize;
    let (mut at, mut i) = (offsets[0] as usize, 0);
    while let Some(found) = finder.find(&bytes[at..end]) {
        let start = at + found;
        // The value holding `start`: the first whose end is past it.
        i += offsets[i + 1..].partition_point(|&o| o as usize <= start);
        let value_end = offsets[i + 1] as usize;
        if start + needle <= value_end {
            answers[i] = 1;
            at = value_end;
        } else {
            at = start + 1;
        }
    }
    if let Some(nulls) = strings.nulls() {
        answers
            .iter_mut()
            .zip(nulls.iter())
            .for_each(|(a, valid)| *a &= valid as u8);
    }
    answers
}

/// `LIKE` remembering each value's answer; see the module docs.
pub struct MemoLike {
    inner: LikeExpr,
    /// The pattern compiled once (Arrow's kernel compiles a regex on every call, which cost
    /// more than matching the few values a batch adds).
    regex: Option<regex::Regex>,
    /// The literal of a case-sensitive `'%literal%'`: dictionaries are searched for it in one
    /// pass over their values' bytes ([`contains_each`]).
    substring: Option<memchr::memmem::Finder<'static>>,
    memo: Mutex<BufferMemo<u16>>,
    /// Whether each value of recent dictionaries matches (1) or not (0), [`padded`].
    dictionaries: Mutex<DictionaryMemo<Arc<Vec<u8>>>>,
    lookups: AtomicU64,
    misses: AtomicU64,
    batches: AtomicU64,
    off: AtomicBool,
}

impl MemoLike {
    pub fn new(l: &LikeExpr) -> Self {
        let regex = literal_pattern(l)
            .filter(|p| kernel_compiles_regex(p, l.case_insensitive()))
            .and_then(|p| like_regex(p, l.case_insensitive()));
        let substring = literal_pattern(l)
            .filter(|_| !l.case_insensitive())
            .and_then(|p| p.strip_prefix('%')?.strip_suffix('%'))
            .filter(|lit| !lit.is_empty() && plain(lit))
            .map(|lit| memchr::memmem::Finder::new(lit.as_bytes()).into_owned());
        MemoLike {
            regex,
            substring,
            inner: LikeExpr::new(
                l.negated(),
                l.case_insensitive(),
                Arc::clone(l.expr()),
                Arc::clone(l.pattern()),
            ),
            memo: Mutex::new(BufferMemo::new(BUFFERS, MAX_BUFFER)),
            dictionaries: Mutex::new(DictionaryMemo::new(BUFFERS)),
            lookups: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            off: AtomicBool::new(false),
        }
    }

    /// Whether this is cheap on every row and cannot fail (for [`super::eager_and`]): the
    /// pattern is valid (the kernel builds its regex from it when it needs one) and the
    /// column is a dictionary, whose rows take their value's answer.
    pub fn cheap_and_infallible(&self, schema: &Schema) -> bool {
        let valid = literal_pattern(&self.inner)
            .is_some_and(|p| like_regex(p, self.inner.case_insensitive()).is_some());
        valid
            && self
                .inner
                .expr()
                .downcast_ref::<datafusion::physical_expr::expressions::Column>()
                .is_some_and(|c| {
                    schema.fields().get(c.index()).map(|f| f.data_type())
                        == Some(&dictionary_type())
                })
    }

    /// Keep remembering only if the memo answered at least half the values of the first
    /// batches (`values` looked at, `misses` matched by the kernel).
    fn judge(&self, values: u64, misses: u64) {
        let looked = self.lookups.fetch_add(values, Ordering::Relaxed) + values;
        let missed = self.misses.fetch_add(misses, Ordering::Relaxed) + misses;
        let batches = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        if batches >= TRIAL_BATCHES && missed * 2 > looked {
            self.off.store(true, Ordering::Relaxed);
            self.memo.lock().expect("not poisoned").clear();
        }
    }

    /// Arrow's kernel on the rows `pending` of `views`.
    fn kernel(
        &self,
        views: &arrow::array::StringViewArray,
        pending: &[u32],
        batch: &RecordBatch,
    ) -> DfResult<BooleanArray> {
        let values = take(views, &UInt32Array::from(pending.to_vec()), None)?;
        let ColumnarValue::Scalar(pattern) = self.inner.pattern().evaluate(batch)? else {
            unreachable!("the pattern is a literal")
        };
        let pattern = pattern.to_scalar()?;
        Ok(if self.inner.case_insensitive() {
            ilike(&values, &pattern)?
        } else {
            like(&values, &pattern)?
        })
    }

    /// Whether each of a dictionary's values matches (ignoring `NOT`), worked out once per
    /// dictionary (a column chunk's batches share its values), [`padded`] with 0.
    fn dictionary_answers(&self, values: &ArrayRef) -> DfResult<Arc<Vec<u8>>> {
        let mut dictionaries = self.dictionaries.lock().expect("not poisoned");
        if !dictionaries.touch(values) {
            let strings = values.as_string::<i32>();
            let answers: Vec<u8> = match (&self.regex, &self.substring) {
                (Some(r), _) => strings
                    .iter()
                    .map(|v| v.is_some_and(|v| r.is_match(v)) as u8)
                    .collect(),
                (None, Some(finder)) => contains_each(strings, finder),
                (None, None) => {
                    let pattern = literal_pattern(&self.inner).map(str::to_string);
                    let pattern = Scalar::new(StringArray::from(vec![pattern]));
                    let matched = if self.inner.case_insensitive() {
                        ilike(strings, &pattern)?
                    } else {
                        like(strings, &pattern)?
                    };
                    (0..matched.len())
                        .map(|i| (matched.is_valid(i) && matched.value(i)) as u8)
                        .collect()
                }
            };
            dictionaries.insert(values, Arc::new(padded(answers, 0)));
        }
        Ok(Arc::clone(dictionaries.last()))
    }

    /// Each row's answer: its key's value's, looked up in a word per 64 rows.
    fn dictionary_matches(&self, d: &DictionaryArray<Int32Type>) -> DfResult<BooleanArray> {
        let answers = self.dictionary_answers(d.values())?;
        let mask = answers.len() - 1;
        let keys = d.keys();
        let n = keys.len();
        let flip = self.inner.negated() as u64;
        let words: Vec<u64> = keys
            .values()
            .chunks(64)
            .map(|chunk| {
                let mut word = 0u64;
                for (j, &k) in chunk.iter().enumerate() {
                    // In bounds by the mask, without a branch: a NULL row's key may be
                    // anything, and its answer is masked by the nulls below.
                    let a = answers[k as usize & mask] as u64;
                    word |= (a ^ flip) << j;
                }
                word
            })
            .collect();
        Ok(BooleanArray::new(
            BooleanBuffer::new(Buffer::from_vec(words), 0, n),
            keys.nulls().cloned(),
        ))
    }

    fn matches(
        &self,
        views: &arrow::array::StringViewArray,
        batch: &RecordBatch,
    ) -> DfResult<BooleanArray> {
        let n = views.len();
        let raw = views.views();
        let nulls = views.nulls();
        // Take this batch's buffers out of the shared memo (another partition may use others).
        let mut entries = self
            .memo
            .lock()
            .expect("not poisoned")
            .take(views.data_buffers());
        let negated = self.inner.negated();
        let mut out = MutableBuffer::from_len_zeroed(n.div_ceil(64) * 8);
        let mut pending: Vec<u32> = Vec::new();
        {
            // Answers go into a word per 64 rows, kept in a register: setting each row's bit
            // in memory made every row wait for the previous row's write to the same byte.
            // Rows are checked for NULL only when the memo does not know their view: the
            // answer for a NULL row is masked by the array's nulls anyway.
            let words = out.typed_data_mut::<u64>();
            let flip = negated as u64;
            let mut current: (usize, &[u16]) = (usize::MAX, &[]);
            for (w, chunk) in raw.chunks(64).enumerate() {
                let mut word = 0u64;
                for (j, &v) in chunk.iter().enumerate() {
                    if let Some(s) = slot(v) {
                        if s.buffer != current.0 {
                            let slots = match entries.get(s.buffer) {
                                Some(Some(e)) => &e.slots[..],
                                _ => &[],
                            };
                            current = (s.buffer, slots);
                        }
                        if let Some(&known) = current.1.get(s.index)
                            && known & !1 == s.key
                        {
                            // Branch-free: which rows match is unpredictable.
                            word |= (((known & 1) as u64) ^ flip) << j;
                            continue;
                        }
                    }
                    let i = w * 64 + j;
                    if !nulls.is_some_and(|nb| nb.is_null(i)) {
                        pending.push(i as u32);
                    }
                }
                words[w] = word;
            }
        }
        if !pending.is_empty() {
            let decided: BooleanArray = match &self.regex {
                Some(r) => pending
                    .iter()
                    .map(|&i| Some(r.is_match(views.value(i as usize))))
                    .collect(),
                None => self.kernel(views, &pending, batch)?,
            };
            for (k, &i) in pending.iter().enumerate() {
                let matched = decided.value(k);
                if matched != negated {
                    bit_util::set_bit(out.as_slice_mut(), i as usize);
                }
                if let Some(s) = slot(raw[i as usize])
                    && let Some(Some(e)) = entries.get_mut(s.buffer)
                {
                    e.slots[s.index] = s.key | matched as u16;
                }
            }
        }
        self.memo.lock().expect("not poisoned").put_back(entries);
        self.judge((n - views.null_count()) as u64, pending.len() as u64);
        Ok(BooleanArray::new(
            BooleanBuffer::new(out.into(), 0, n),
            nulls.cloned(),
        ))
    }
}

impl PhysicalExpr for MemoLike {
    fn data_type(&self, schema: &Schema) -> DfResult<DataType> {
        self.inner.data_type(schema)
    }

    fn nullable(&self, schema: &Schema) -> DfResult<bool> {
        self.inner.nullable(schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        if self.off.load(Ordering::Relaxed) {
            return self.inner.evaluate(batch);
        }
        match self.inner.expr().evaluate(batch)? {
            ColumnarValue::Array(a) if a.data_type() == &DataType::Utf8View => Ok(
                ColumnarValue::Array(Arc::new(self.matches(a.as_string_view(), batch)?)),
            ),
            // Values that are NULL (never in a Parquet dictionary) go to the kernel.
            ColumnarValue::Array(a)
                if a.data_type() == &dictionary_type()
                    && a.as_dictionary::<Int32Type>().values().null_count() == 0 =>
            {
                Ok(ColumnarValue::Array(Arc::new(
                    self.dictionary_matches(a.as_dictionary::<Int32Type>())?,
                )))
            }
            _ => self.inner.evaluate(batch),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![self.inner.expr(), self.inner.pattern()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        let inner = LikeExpr::new(
            self.inner.negated(),
            self.inner.case_insensitive(),
            Arc::clone(&children[0]),
            Arc::clone(&children[1]),
        );
        Ok(Arc::new(MemoLike::new(&inner)))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}

impl fmt::Display for MemoLike {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl fmt::Debug for MemoLike {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MemoLike").field(&self.inner).finish()
    }
}

impl PartialEq for MemoLike {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}

impl Eq for MemoLike {}

impl Hash for MemoLike {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::view_memo::MAX_LEN;
    use arrow::array::{ArrayRef, StringViewArray};
    use arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::col;

    fn expr(pattern: &str, negated: bool, case_insensitive: bool) -> (MemoLike, LikeExpr) {
        expr_over(DataType::Utf8View, pattern, negated, case_insensitive)
    }

    fn expr_over(
        ty: DataType,
        pattern: &str,
        negated: bool,
        case_insensitive: bool,
    ) -> (MemoLike, LikeExpr) {
        let schema = Schema::new(vec![Field::new("s", ty, true)]);
        let s = col("s", &schema).unwrap();
        let p: Arc<dyn PhysicalExpr> = Arc::new(Literal::new(ScalarValue::Utf8View(Some(
            pattern.to_string(),
        ))));
        let plain = LikeExpr::new(negated, case_insensitive, s, p);
        (MemoLike::new(&plain), plain)
    }

    fn batch(a: ArrayRef) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("s", DataType::Utf8View, true)]);
        RecordBatch::try_new(Arc::new(schema), vec![a]).unwrap()
    }

    fn eval(e: &dyn PhysicalExpr, b: &RecordBatch) -> BooleanArray {
        e.evaluate(b)
            .unwrap()
            .into_array(b.num_rows())
            .unwrap()
            .as_boolean()
            .clone()
    }

    /// Batches whose views point into one shared buffer, as Parquet dictionary pages give.
    fn dictionary_batches(values: &[Option<String>], rows: &[Vec<u32>]) -> Vec<RecordBatch> {
        let dict = StringViewArray::from_iter(values.iter().cloned());
        rows.iter()
            .map(|r| batch(take(&dict, &UInt32Array::from(r.clone()), None).unwrap()))
            .collect()
    }

    /// The same rows as dictionary arrays over one values array, each batch a new array object
    /// over the same buffers as the Parquet reader hands them out (NULL values are NULL keys),
    /// some rows masked NULL when `mask_seed` is odd.
    fn dictionary_array_batches(
        values: &[Option<String>],
        rows: &[Vec<u32>],
        mask_seed: u64,
    ) -> Vec<RecordBatch> {
        let shared: ArrayRef = Arc::new(StringArray::from_iter(
            values.iter().map(|v| Some(v.clone().unwrap_or_default())),
        ));
        let schema = Arc::new(Schema::new(vec![Field::new("s", dictionary_type(), true)]));
        rows.iter()
            .map(|r| {
                let keys =
                    arrow::array::Int32Array::from_iter(r.iter().enumerate().map(|(j, &i)| {
                        let masked = mask_seed % 2 == 1 && (mask_seed >> (j % 61)) & 1 == 1;
                        (values[i as usize].is_some() && !masked).then_some(i as i32)
                    }));
                let fresh = arrow::array::make_array(shared.to_data());
                let d = DictionaryArray::<Int32Type>::try_new(keys, fresh).unwrap();
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(d)]).unwrap()
            })
            .collect()
    }

    /// `b` with some rows NULL that still carry their value's view, as arrays do after a
    /// filter or a null-padding reader: the memo must not treat them as values.
    fn mask_some(b: &RecordBatch, seed: u64) -> RecordBatch {
        let a = b.column(0).as_string_view();
        let keep: arrow::buffer::NullBuffer = (0..a.len())
            .map(|i| a.is_valid(i) && (seed >> (i % 61)) & 1 == 0)
            .collect();
        let masked =
            StringViewArray::try_new(a.views().clone(), a.data_buffers().to_vec(), Some(keep))
                .unwrap();
        batch(Arc::new(masked))
    }

    proptest::proptest! {
        /// Every answer is the kernel's, batch after batch over shared buffers.
        #[test]
        fn answers_are_the_kernels(
            values in proptest::collection::vec(
                proptest::option::weighted(0.9, "[abAB%_\\\\\néÉǅ.*]{0,30}"), 1..40),
            rows in proptest::collection::vec(proptest::collection::vec(0u32..1000, 0..60), 1..12),
            pattern in "[abAé%_\\\\.*]{0,6}",
            negated: bool,
            case_insensitive: bool,
            mask_seed: u64,
        ) {
            let rows: Vec<Vec<u32>> = rows
                .into_iter()
                .map(|r| r.into_iter().map(|i| i % values.len() as u32).collect())
                .collect();
            let (memo, plain) = expr(&pattern, negated, case_insensitive);
            for b in dictionary_batches(&values, &rows) {
                let b = if mask_seed % 2 == 0 { b } else { mask_some(&b, mask_seed) };
                let want = plain.evaluate(&b).map(|v| v.into_array(b.num_rows()).unwrap());
                match want {
                    Ok(want) => proptest::prop_assert_eq!(&eval(&memo, &b), want.as_boolean()),
                    // An invalid pattern (a trailing escape) fails the same way.
                    Err(_) => proptest::prop_assert!(memo.evaluate(&b).is_err()),
                }
            }
            // Dictionary arrays: the answers of the kernel over the same rows as views.
            let (memo, _) = expr_over(dictionary_type(), &pattern, negated, case_insensitive);
            for b in dictionary_array_batches(&values, &rows, mask_seed) {
                let views = arrow::compute::cast(b.column(0), &DataType::Utf8View).unwrap();
                let want = plain
                    .evaluate(&batch(views))
                    .map(|v| v.into_array(b.num_rows()).unwrap());
                match want {
                    Ok(want) => proptest::prop_assert_eq!(&eval(&memo, &b), want.as_boolean()),
                    Err(_) => proptest::prop_assert!(memo.evaluate(&b).is_err()),
                }
            }
            proptest::prop_assert!(memo.dictionaries.lock().unwrap().len() <= 1);
        }

        /// One search over a dictionary's bytes answers as the kernel does per value: matches
        /// across two values count for neither, NULL values never match.
        #[test]
        fn substring_search_over_all_values_is_the_kernels(
            values in proptest::collection::vec(
                proptest::option::weighted(0.9, "[abé]{0,6}"), 0..40),
            needle in "[abé]{1,3}",
            sliced in 0usize..3,
        ) {
            let all = StringArray::from(values);
            let start = sliced.min(all.len());
            let strings = all.slice(start, all.len() - start);
            let finder = memchr::memmem::Finder::new(needle.as_bytes());
            let pattern = Scalar::new(StringArray::from(vec![format!("%{needle}%")]));
            let want = like(&strings, &pattern).unwrap();
            let want: Vec<u8> =
                (0..want.len()).map(|i| (want.is_valid(i) && want.value(i)) as u8).collect();
            proptest::prop_assert_eq!(contains_each(&strings, &finder), want);
        }
    }

    #[test]
    fn overlapping_views_are_told_apart() {
        let text = "xxxxxxxxxxxxxxxxxxxxxcustomersyyyyyyyyyyyyyyyyyyyyyyyy";
        let buffer = Buffer::from(text.as_bytes());
        let view = |offset: u32, len: u32| {
            let s = &text.as_bytes()[offset as usize..(offset + len) as usize];
            let mut prefix = [0u8; 4];
            prefix.copy_from_slice(&s[..4]);
            (len as u128) | ((u32::from_le_bytes(prefix) as u128) << 32) | ((offset as u128) << 96)
        };
        // Same length at offsets 1 apart (9 and 10 share a slot), and same offset with
        // different lengths.
        let views: Vec<u128> = [
            (0, 20),
            (1, 20),
            (10, 13),
            (10, 30),
            (9, 20),
            (10, 20),
            (16, 14),
        ]
        .iter()
        .map(|&(o, l)| view(o, l))
        .collect();
        let a = StringViewArray::try_new(views.into(), vec![buffer], None).unwrap();
        let b = batch(Arc::new(a));
        let (memo, plain) = expr("%customers%", false, false);
        for _ in 0..3 {
            assert_eq!(eval(&memo, &b), eval(&plain, &b));
        }
        assert_eq!(
            eval(&memo, &b)
                .iter()
                .map(|v| v.unwrap())
                .collect::<Vec<_>>(),
            [false, false, false, true, false, true, true]
        );
    }

    #[test]
    fn values_too_long_to_remember_are_matched_each_time() {
        let long = format!("{}customers", "x".repeat(MAX_LEN as usize));
        let values = vec![Some(long), Some("a-short-customers-key".into()), None];
        let rows = vec![vec![0, 1, 2, 0], vec![1, 0, 0]];
        let (memo, plain) = expr("%customers", false, false);
        for b in dictionary_batches(&values, &rows) {
            assert_eq!(eval(&memo, &b), eval(&plain, &b));
        }
    }

    #[test]
    fn values_that_do_not_repeat_switch_the_memo_off() {
        let (memo, plain) = expr("%7%", false, false);
        for k in 0..TRIAL_BATCHES + 2 {
            let a: StringViewArray = (0..500)
                .map(|i| Some(format!("unique-value-number-{k}-{i}")))
                .collect();
            let b = batch(Arc::new(a));
            assert_eq!(eval(&memo, &b), eval(&plain, &b));
        }
        assert!(memo.off.load(Ordering::Relaxed));
        let (memo, _) = expr("%7%", false, false);
        let values: Vec<Option<String>> = (0..50)
            .map(|i| Some(format!("a-long-repeated-value-{i}")))
            .collect();
        let rows: Vec<Vec<u32>> = (0..TRIAL_BATCHES + 2)
            .map(|k| (0..500).map(|i| ((i * 7 + k) % 50) as u32).collect())
            .collect();
        for b in dictionary_batches(&values, &rows) {
            eval(&memo, &b);
        }
        assert!(!memo.off.load(Ordering::Relaxed));
    }
}
