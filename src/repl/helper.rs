//! The rustyline helper: when a statement is complete, and what to complete a word with.
//! The logic lives in plain functions ([`is_complete`], [`Completions::complete`]) so it is
//! tested without a terminal.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

/// SQL keywords offered by completion.
const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "DISTINCT",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS NULL",
    "IS NOT NULL",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "AS",
    "JOIN",
    "LEFT JOIN",
    "INNER JOIN",
    "ON",
    "UNION ALL",
    "WITH",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DESC",
    "ASC",
    "EXPLAIN",
    "ANALYZE",
    "SHOW TABLES",
    "TIMESTAMP",
    "INTERVAL",
    "CAST",
    "NULL",
    "TRUE",
    "FALSE",
];

/// True when the input is ready to run: a command (`\\d`, `.tables`), or SQL ending in `;`.
pub fn is_complete(input: &str) -> bool {
    let t = input.trim();
    t.is_empty() || super::Command::starts(t) || t.ends_with(';')
}

/// Names known to the session, refreshed before each prompt.
#[derive(Debug, Default, Clone)]
pub struct Names {
    pub databases: Vec<String>,
    /// `db.table` names.
    pub tables: Vec<String>,
    pub columns: Vec<String>,
    pub functions: Vec<String>,
}

/// What completion offers.
#[derive(Debug, Default, Clone)]
pub struct Completions {
    pub names: Arc<RwLock<Names>>,
}

impl Completions {
    /// Start of the word at `pos` and its candidates.
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |i| i + 1);
        let word = &before[start..];
        if word.is_empty() {
            return (start, vec![]);
        }
        let lower = word.to_ascii_lowercase();
        let names = self.names.read().expect("not poisoned");
        let mut out: Vec<String> = Vec::new();
        if word.contains('.') {
            out.extend(
                names
                    .tables
                    .iter()
                    .filter(|t| t.starts_with(&lower))
                    .cloned(),
            );
        } else {
            let upper = word.to_ascii_uppercase();
            let kw = KEYWORDS.iter().filter(|k| k.starts_with(&upper));
            // Keep the user's case for keywords typed in lower case.
            let lower_case = word.chars().all(|c| !c.is_ascii_uppercase());
            out.extend(kw.map(|k| {
                if lower_case {
                    k.to_ascii_lowercase()
                } else {
                    k.to_string()
                }
            }));
            for list in [&names.databases, &names.columns, &names.functions] {
                out.extend(list.iter().filter(|n| n.starts_with(&lower)).cloned());
            }
            out.extend(
                names
                    .tables
                    .iter()
                    .filter_map(|t| t.split_once('.').map(|(_, t)| t))
                    .filter(|t| t.starts_with(&lower))
                    .map(str::to_string),
            );
        }
        out.sort();
        out.dedup();
        (start, out)
    }
}

/// The REPL's rustyline helper.
#[derive(Default)]
pub struct ReplHelper {
    pub completions: Completions,
}

impl Completer for ReplHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, words) = self.completions.complete(line, pos);
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.clone(),
                    replacement: w,
                })
                .collect(),
        ))
    }
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        Cow::Borrowed(prompt)
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness() {
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT 1\nFROM t"));
        assert!(is_complete("SELECT 1\nFROM t;"));
        assert!(is_complete("  \\d  "));
        assert!(is_complete(""));
    }

    #[test]
    fn completes_keywords_tables_columns() {
        let c = Completions::default();
        *c.names.write().unwrap() = Names {
            databases: vec!["panther_logs".into()],
            tables: vec!["panther_logs.aws_s3serveraccess".into()],
            columns: vec!["requester".into(), "remoteip".into()],
            functions: vec!["glob_match".into()],
        };
        assert_eq!(c.complete("SEL", 3), (0, vec!["SELECT".to_string()]));
        assert_eq!(c.complete("sel", 3), (0, vec!["select".to_string()]));
        assert_eq!(
            c.complete("SELECT re", 9),
            (7, vec!["remoteip".into(), "requester".into()])
        );
        assert_eq!(
            c.complete("FROM panther_logs.aws", 21),
            (5, vec!["panther_logs.aws_s3serveraccess".to_string()])
        );
        assert_eq!(
            c.complete("FROM aws_s", 10),
            (5, vec!["aws_s3serveraccess".to_string()])
        );
        assert_eq!(
            c.complete("WHERE glob", 10).1,
            vec!["glob_match".to_string()]
        );
        assert!(c.complete("SELECT ", 7).1.is_empty());
    }
}
