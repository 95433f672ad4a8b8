//! The interactive SQL shell (`seclake repl`).
//!
//! Statements may span lines and end with `;`. Each is parsed before anything runs (a syntax
//! error runs nothing), then executed with the elapsed time and row count printed after the
//! result. Display is cut at a row limit (`\maxrows`) with a note. Ctrl-C cancels a running
//! query and returns to the prompt; errors never end the session. History persists in
//! `~/.seclake_history` (or `$SECLAKE_HISTORY`). With standard input not a terminal, the
//! input is run as a script, so `echo 'SELECT 1;' | seclake repl` works.
//!
//! Backslash commands: see [`Command`].

pub mod helper;

use std::io::{IsTerminal, Read, Write};
use std::str::FromStr;
use std::time::Instant;

use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use rustyline::error::ReadlineError;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::Format;
use helper::{Names, ReplHelper};

/// Split SQL text into statements at `;` outside strings and comments (each without its `;`,
/// empty ones dropped). Fails on text that cannot be tokenized (an unterminated string).
pub fn split_statements(sql: &str) -> Result<Vec<String>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| Error::invalid(format!("syntax error: {e}")))?;
    let mut out = Vec::new();
    let mut cur = String::new();
    for t in tokens {
        if t == Token::SemiColon {
            push_stmt(&mut out, &mut cur);
        } else {
            cur.push_str(&t.to_string());
        }
    }
    push_stmt(&mut out, &mut cur);
    Ok(out)
}

fn push_stmt(out: &mut Vec<String>, cur: &mut String) {
    let s = std::mem::take(cur);
    let only_comments = s
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with("--"));
    if !only_comments {
        out.push(s.trim().to_string());
    }
}

/// A backslash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `\?` or `\h`: help.
    Help,
    /// `\q`: quit.
    Quit,
    /// `\d`: list tables; `\d TABLE`: its columns and partitions.
    Describe(Option<String>),
    /// `\format [FMT]`: show or set the output format.
    Format(Option<Format>),
    /// `\timing [on|off]`: toggle elapsed-time display.
    Timing(Option<bool>),
    /// `\maxrows N`: rows shown before the display is cut (0 = no limit).
    MaxRows(usize),
    /// `\maxwidth N`: characters a table cell shows before it is cut (0 = no limit).
    MaxWidth(usize),
    /// `\i FILE`: run the statements in a file.
    Include(String),
    /// `\run NAME`: run a saved or scheduled query over its lookback window ending now.
    Run(String),
}

impl Command {
    /// Help text listing every command.
    pub const HELP: &'static str = "\
\\?, \\h          this help
\\q              quit (also Ctrl-D)
\\d              list tables
\\d TABLE        columns and partitions of a table (db.table or table)
\\format [FMT]   show or set the output format: table, csv, tsv, json, ndjson
\\timing [on|off] show elapsed time and row count after results (default on)
\\maxrows N      rows shown before the display is cut (0: no limit; default 40)
\\maxwidth N     characters a table cell shows before it is cut with … (0: no limit; default
                60 on a terminal)
\\i FILE         run the SQL statements in FILE
\\run NAME       run a saved or scheduled query (seclake schedule list) over its window
SQL statements end with ';' and may span lines. Ctrl-C cancels a running query.
DuckDB's and sqlite's spellings work too: .tables, .schema [TABLE], .mode FMT, .timer on|off,
.maxrows N, .maxwidth N, .read FILE, .help, .quit (.exit).";

    /// Whether a line is a command rather than SQL: it starts with `\` (psql) or `.` (DuckDB,
    /// sqlite), which no SQL statement does.
    pub fn starts(line: &str) -> bool {
        matches!(line.trim_start().as_bytes().first(), Some(b'\\' | b'.'))
    }
}

/// DuckDB's and sqlite's dot commands, as the backslash command each stands for, and `.mode`'s
/// names for output formats.
fn dot_alias(cmd: &str, arg: Option<&str>) -> Option<(&'static str, Option<String>)> {
    let to = match cmd.to_ascii_lowercase().as_str() {
        ".help" => "\\?",
        ".quit" | ".exit" | ".q" => "\\q",
        ".tables" => return Some(("\\d", None)),
        ".schema" | ".describe" | ".d" => "\\d",
        ".timer" => "\\timing",
        ".maxrows" => "\\maxrows",
        ".maxwidth" => "\\maxwidth",
        ".read" => "\\i",
        ".run" => "\\run",
        ".mode" => {
            let mode = arg.map(|a| match a.to_ascii_lowercase().as_str() {
                "box" | "duckbox" | "table" | "markdown" => "table".to_string(),
                "tabs" => "tsv".to_string(),
                "jsonlines" => "ndjson".to_string(),
                _ => a.to_string(),
            });
            return Some(("\\format", mode));
        }
        _ => return None,
    };
    Some((to, arg.map(str::to_string)))
}

impl FromStr for Command {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().trim_end_matches(';').trim();
        let (cmd, arg) = match s.split_once(char::is_whitespace) {
            Some((c, a)) => (c, Some(a.trim()).filter(|a| !a.is_empty())),
            None => (s, None),
        };
        let alias;
        let (cmd, arg) = if cmd.starts_with('.') {
            alias = dot_alias(cmd, arg).ok_or_else(|| {
                Error::invalid(format!("unknown command {cmd}; \\? lists commands"))
            })?;
            (alias.0, alias.1.as_deref())
        } else {
            (cmd, arg)
        };
        let number = || {
            arg.and_then(|a| a.parse().ok())
                .ok_or_else(|| Error::invalid(format!("{cmd} takes a number")))
        };
        Ok(match cmd {
            "\\?" | "\\h" | "\\help" => Command::Help,
            "\\q" | "\\quit" => Command::Quit,
            "\\d" => Command::Describe(arg.map(str::to_string)),
            "\\format" | "\\pset" => Command::Format(arg.map(str::parse).transpose()?),
            "\\timing" => Command::Timing(match arg {
                None => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(a) => {
                    return Err(Error::invalid(format!(
                        "\\timing takes on or off, not {a:?}"
                    )));
                }
            }),
            "\\maxrows" => Command::MaxRows(number()?),
            "\\maxwidth" => Command::MaxWidth(number()?),
            "\\i" => Command::Include(
                arg.ok_or_else(|| Error::invalid("\\i takes a file name"))?
                    .to_string(),
            ),
            "\\run" => Command::Run(
                arg.ok_or_else(|| Error::invalid("\\run takes a query name"))?
                    .to_string(),
            ),
            _ => {
                return Err(Error::invalid(format!(
                    "unknown command {cmd}; \\? lists commands"
                )));
            }
        })
    }
}

/// A display limit as said back: `none` for 0.
fn limit_text(n: usize) -> String {
    if n == 0 { "none".into() } else { n.to_string() }
}

/// REPL state.
pub struct Repl<'e> {
    engine: &'e Engine,
    /// Saved and scheduled queries `\run` can run.
    pub saved: Vec<std::sync::Arc<crate::detect::schedule::SavedQuery>>,
    pub format: Format,
    pub timing: bool,
    pub max_rows: usize,
    /// Characters a table cell shows before it is cut (0: no limit).
    pub max_width: usize,
}

/// What to do after a command.
enum Flow {
    Continue,
    Quit,
}

impl<'e> Repl<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        Repl {
            engine,
            saved: Vec::new(),
            format: Format::Table,
            timing: true,
            max_rows: 40,
            max_width: if std::io::stdout().is_terminal() {
                crate::output::TERMINAL_MAX_CELL
            } else {
                0
            },
        }
    }

    /// Run interactively (terminal) or as a script (piped input).
    pub async fn run(&mut self) -> Result<()> {
        if !std::io::stdin().is_terminal() {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::io("stdin", e))?;
            let mut out = std::io::stdout().lock();
            self.run_script(&text, &mut out).await;
            return Ok(());
        }
        self.interactive().await
    }

    async fn interactive(&mut self) -> Result<()> {
        let mut rl = rustyline::Editor::<ReplHelper, rustyline::history::DefaultHistory>::new()
            .map_err(|e| Error::invalid(format!("cannot start line editor: {e}")))?;
        let helper = ReplHelper::default();
        let names = helper.completions.names.clone();
        rl.set_helper(Some(helper));
        let history = history_path();
        let _ = rl.load_history(&history);
        println!(
            "seclake {} — SQL over {}. \\? for help, \\q to quit.",
            env!("CARGO_PKG_VERSION"),
            self.engine.lake_url()
        );
        loop {
            if let Ok(n) = self.names().await {
                *names.write().expect("not poisoned") = n;
            }
            match rl.readline("seclake> ") {
                Ok(line) => {
                    let _ = rl.add_history_entry(line.as_str());
                    let mut out = std::io::stdout().lock();
                    if let Flow::Quit = self.run_input(&line, &mut out).await {
                        break;
                    }
                }
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("error: {e}");
                    break;
                }
            }
        }
        let _ = rl.save_history(&history);
        Ok(())
    }

    /// Run a script's lines: backslash commands on their own lines, SQL statements between.
    pub async fn run_script(&mut self, text: &str, out: &mut impl Write) {
        let mut sql = String::new();
        for line in text.lines() {
            if Command::starts(line) && sql.trim().is_empty() {
                if let Flow::Quit = self.run_input(line, out).await {
                    return;
                }
                continue;
            }
            sql.push_str(line);
            sql.push('\n');
            if helper::is_complete(&sql) {
                let input = std::mem::take(&mut sql);
                if let Flow::Quit = self.run_input(&input, out).await {
                    return;
                }
            }
        }
        if !sql.trim().is_empty() {
            self.run_input(&sql, out).await;
        }
    }

    /// Run one complete input: a backslash command or SQL statements. Errors are printed.
    async fn run_input(&mut self, input: &str, out: &mut impl Write) -> Flow {
        let input = input.trim();
        if input.is_empty() {
            return Flow::Continue;
        }
        let result = if Command::starts(input) {
            match input.parse::<Command>() {
                Ok(Command::Quit) => return Flow::Quit,
                Ok(c) => Box::pin(self.command(c, out)).await,
                Err(e) => Err(e),
            }
        } else {
            self.sql(input, out).await
        };
        if let Err(e) = result {
            let _ = writeln!(out, "error: {e}");
        }
        let _ = out.flush();
        Flow::Continue
    }

    async fn command(&mut self, c: Command, out: &mut impl Write) -> Result<()> {
        let w = |e| Error::io("stdout", e);
        match c {
            Command::Help => writeln!(out, "{}", Command::HELP).map_err(w),
            Command::Quit => Ok(()),
            Command::Format(None) => writeln!(out, "format: {}", self.format).map_err(w),
            Command::Format(Some(f)) => {
                self.format = f;
                writeln!(out, "format set to {f}").map_err(w)
            }
            Command::Timing(v) => {
                self.timing = v.unwrap_or(!self.timing);
                writeln!(out, "timing {}", if self.timing { "on" } else { "off" }).map_err(w)
            }
            Command::MaxWidth(n) => {
                self.max_width = n;
                writeln!(out, "cell width limit: {}", limit_text(n)).map_err(w)
            }
            Command::MaxRows(n) => {
                self.max_rows = n;
                writeln!(out, "display limit: {}", limit_text(n)).map_err(w)
            }
            Command::Describe(None) => {
                self.sql(
                    "SELECT table_schema AS database, table_name AS \"table\", table_type FROM information_schema.tables \
                     WHERE table_schema <> 'information_schema' ORDER BY 1, 2;",
                    out,
                )
                .await
            }
            Command::Describe(Some(t)) => self.describe(&t, out).await,
            Command::Run(name) => {
                let q = self
                    .saved
                    .iter()
                    .find(|q| q.query_name == name)
                    .cloned()
                    .ok_or_else(|| Error::invalid(format!("no saved query {name:?}")))?;
                let sql = q.sql_for(chrono::Utc::now())?;
                self.sql(&sql, out).await
            }
            Command::Include(file) => {
                let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
                Box::pin(self.run_script(&text, out)).await;
                Ok(())
            }
        }
    }

    async fn describe(&mut self, table: &str, out: &mut impl Write) -> Result<()> {
        let (db, name) = table.split_once('.').unwrap_or(("panther_logs", table));
        let (db, name) = (db.replace('\'', ""), name.replace('\'', ""));
        self.sql(
            &format!(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                 WHERE table_schema = '{db}' AND table_name = '{name}' ORDER BY ordinal_position;"
            ),
            out,
        )
        .await?;
        if crate::engine::LAKE_DATABASES.contains(&db.as_str()) {
            self.sql(
                &format!(
                    "SELECT year, month, day, count(*) AS rows FROM {db}.{name} \
                     GROUP BY year, month, day ORDER BY year, month, day;"
                ),
                out,
            )
            .await?;
        }
        Ok(())
    }

    /// Parse every statement first (a syntax error runs nothing), then run each.
    async fn sql(&mut self, input: &str, out: &mut impl Write) -> Result<()> {
        let statements = split_statements(input)?;
        for s in &statements {
            DFParser::parse_sql(s).map_err(|e| Error::invalid(format!("syntax error: {e}")))?;
        }
        self.engine.refresh().await?;
        for s in &statements {
            let started = Instant::now();
            let run = self
                .engine
                .print(s, self.format, (self.max_rows, self.max_width), out);
            let rows = tokio::select! {
                r = run => r?,
                _ = tokio::signal::ctrl_c() => {
                    writeln!(out, "query cancelled").map_err(|e| Error::io("stdout", e))?;
                    return Ok(());
                }
            };
            if self.timing {
                let secs = started.elapsed().as_secs_f64();
                let cut = if self.max_rows > 0 && rows > self.max_rows {
                    format!(
                        " (showing the first {}; \\maxrows to change)",
                        self.max_rows
                    )
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "{rows} row{} in {secs:.3}s{cut}",
                    if rows == 1 { "" } else { "s" }
                )
                .map_err(|e| Error::io("stdout", e))?;
            }
        }
        Ok(())
    }

    async fn names(&self) -> Result<Names> {
        self.engine.refresh().await?;
        let ctx = self.engine.ctx();
        let mut names = Names::default();
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::invalid("no catalog"))?;
        for db in catalog.schema_names() {
            if let Some(schema) = catalog.schema(&db) {
                for t in schema.table_names() {
                    if let Ok(Some(p)) = schema.table(&t).await {
                        names
                            .columns
                            .extend(p.schema().fields().iter().map(|f| f.name().clone()));
                    }
                    names.tables.push(format!("{db}.{t}"));
                }
            }
            names.databases.push(db);
        }
        names.functions = ctx.state().scalar_functions().keys().cloned().collect();
        names
            .functions
            .extend(crate::engine::macros::NAMES.iter().map(|m| m.to_string()));
        names.columns.sort();
        names.columns.dedup();
        Ok(names)
    }
}

fn history_path() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("SECLAKE_HISTORY") {
        return p.into();
    }
    std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
        .join(".seclake_history")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_outside_strings_and_comments() {
        let s =
            split_statements("SELECT ';' AS a; -- x; y\nSELECT 2;;\n-- only a comment\n").unwrap();
        assert_eq!(
            s,
            vec![
                "SELECT ';' AS a".to_string(),
                "-- x; y\nSELECT 2".to_string()
            ]
        );
        assert!(split_statements("SELECT 'open").is_err());
    }

    #[test]
    fn parses_commands() {
        assert_eq!("\\d".parse::<Command>().unwrap(), Command::Describe(None));
        assert_eq!(
            "\\d panther_logs.aws_s3serveraccess"
                .parse::<Command>()
                .unwrap(),
            Command::Describe(Some("panther_logs.aws_s3serveraccess".into()))
        );
        assert_eq!(
            "\\format csv".parse::<Command>().unwrap(),
            Command::Format(Some(Format::Csv))
        );
        assert_eq!(
            "\\timing off".parse::<Command>().unwrap(),
            Command::Timing(Some(false))
        );
        assert_eq!(
            "\\maxrows 5".parse::<Command>().unwrap(),
            Command::MaxRows(5)
        );
        assert_eq!(
            "\\i x.sql".parse::<Command>().unwrap(),
            Command::Include("x.sql".into())
        );
        assert!("\\format xml".parse::<Command>().is_err());
        assert!("\\nope".parse::<Command>().is_err());
        assert_eq!("\\q".parse::<Command>().unwrap(), Command::Quit);
    }

    #[test]
    fn parses_duckdb_and_sqlite_dot_commands() {
        let parse = |s: &str| s.parse::<Command>().unwrap();
        assert_eq!(parse(".tables"), Command::Describe(None));
        assert_eq!(
            parse(".schema aws_cloudtrail"),
            Command::Describe(Some("aws_cloudtrail".into()))
        );
        assert_eq!(parse(".mode csv"), Command::Format(Some(Format::Csv)));
        assert_eq!(parse(".mode box"), Command::Format(Some(Format::Table)));
        assert_eq!(
            parse(".mode jsonlines"),
            Command::Format(Some(Format::Ndjson))
        );
        assert_eq!(parse(".mode"), Command::Format(None));
        assert_eq!(parse(".timer on"), Command::Timing(Some(true)));
        assert_eq!(parse(".read x.sql"), Command::Include("x.sql".into()));
        assert_eq!(parse(".maxwidth 0"), Command::MaxWidth(0));
        assert_eq!(parse("\\maxwidth 30"), Command::MaxWidth(30));
        assert!("\\maxwidth wide".parse::<Command>().is_err());
        assert_eq!(parse(".exit"), Command::Quit);
        assert_eq!(parse(".QUIT;"), Command::Quit);
        let err = ".nope".parse::<Command>().unwrap_err().to_string();
        assert!(err.contains("unknown command .nope"), "{err}");
        assert!(".mode line".parse::<Command>().is_err());
        assert!(Command::starts("  .tables") && Command::starts("\\d"));
        assert!(!Command::starts("SELECT 1") && !Command::starts(""));
    }
}
