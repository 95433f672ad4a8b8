//! Test harness: a temporary lake and the real `seclake` binary. A failing command panics
//! with the command line, its output and a listing of the lake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::AsArray;
use tempfile::TempDir;

/// Path of the repository's bundled sample data.
pub fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/s3-access-logs")
}

/// A temporary folder holding a lake (`lake/`) and inputs; or, for [`TestLake::on_s3`], a
/// lake on the test S3 server.
pub struct TestLake {
    pub dir: TempDir,
    /// `--lake` when not the local `lake/` folder.
    location: Option<String>,
    /// Where the lake's objects are on disk (the S3 server's folder of the lake prefix).
    root: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl TestLake {
    pub fn new() -> Self {
        TestLake {
            dir: tempfile::tempdir().expect("tempdir"),
            location: None,
            root: None,
            env: Vec::new(),
        }
    }

    /// A lake at `s3://<bucket_prefix>` on `server`; commands get the server's environment.
    pub fn on_s3(server: &crate::s3server::S3Server, bucket_prefix: &str) -> Self {
        TestLake {
            location: Some(format!("s3://{bucket_prefix}")),
            root: Some(server.file(bucket_prefix)),
            env: server.env(),
            ..Self::new()
        }
    }

    /// Where the lake's files are on disk (for an S3 lake, on the server's side).
    pub fn lake(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| self.dir.path().join("lake"))
    }

    /// Set an environment variable for every command.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// A path inside the temp folder (not the lake).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `seclake --lake <lake> <args>`, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin!("seclake"));
        match &self.location {
            Some(l) => c.arg("--lake").arg(l),
            None => c.arg("--lake").arg(self.lake()),
        };
        c.args(args)
            .env_remove("SECLAKE_LAKE")
            .envs(self.env.iter().cloned());
        c
    }

    /// Run and return the output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn seclake")
    }

    /// Run with `input` on stdin (a REPL script): the output, stdout and stderr captured.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn seclake");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Run, expect exit code `code`, return stdout.
    pub fn run_code(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        if out.status.code() != Some(code) {
            panic!(
                "seclake {} exited {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}\n--- lake\n{}",
                args.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.listing()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run, expect success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run_code(args, 0)
    }

    /// `seclake query --format csv SQL`, expecting success: the CSV text.
    pub fn csv(&self, sql: &str) -> String {
        self.ok(&["query", "--format", "csv", sql])
    }

    /// Every file under the lake, relative, sorted.
    pub fn listing(&self) -> String {
        let mut out = Vec::new();
        walk(&self.lake(), &self.lake(), &mut out);
        out.sort();
        out.join("\n")
    }

    /// Files under the lake whose relative path starts with `prefix` and ends with `suffix`.
    pub fn files(&self, prefix: &str, suffix: &str) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.lake(), &self.lake(), &mut out);
        out.retain(|p| p.starts_with(prefix) && p.ends_with(suffix));
        out.sort();
        out
    }
}

/// Every file under `dir`, as paths relative to `root`, appended to `out`.
pub fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// The first line of a command's output that starts (after indentation) with `prefix`.
pub fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"))
}

/// The next value of a xorshift sequence (seeded by the caller): spread-out, repeatable
/// delays for the crash tests.
pub fn next_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Start `cmd` with its output discarded, and kill it (SIGKILL) if it still runs after
/// `delay`. Returns whether it was killed mid-way.
pub fn kill_after(mut cmd: Command, delay: std::time::Duration) -> bool {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn seclake");
    std::thread::sleep(delay);
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    killed
}

/// Copy the bundled sample into `dest`.
pub fn copy_sample(dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(sample_dir()).unwrap().flatten() {
        std::fs::copy(e.path(), dest.join(e.file_name())).unwrap();
    }
}

/// Run SQL against the lake with DataFusion directly, tables registered as the query command
/// would. Returns rows rendered as pretty text.
pub fn sql(lake: &Path, query: &str) -> Vec<arrow::record_batch::RecordBatch> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = seclake_session(lake).await;
        ctx.sql(query).await.unwrap().collect().await.unwrap()
    })
}

async fn seclake_session(lake: &Path) -> datafusion::prelude::SessionContext {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::{
        ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
    };
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;
    let ctx = SessionContext::new();
    for db in ["panther_logs", "panther_quarantine"] {
        let dbdir = lake.join(db);
        let Ok(rd) = std::fs::read_dir(&dbdir) else {
            continue;
        };
        ctx.sql(&format!("CREATE SCHEMA IF NOT EXISTS {db}"))
            .await
            .unwrap();
        for t in rd.flatten() {
            let name = t.file_name().to_string_lossy().to_string();
            let url = ListingTableUrl::parse(format!("{}/", t.path().display())).unwrap();
            let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![
                    ("year".into(), DataType::Int32),
                    ("month".into(), DataType::Int32),
                    ("day".into(), DataType::Int32),
                ]);
            let cfg = ListingTableConfig::new(url)
                .with_listing_options(opts)
                .infer_schema(&ctx.state())
                .await
                .unwrap();
            let table = ListingTable::try_new(cfg).unwrap();
            ctx.register_table(format!("{db}.{name}"), Arc::new(table))
                .unwrap();
        }
    }
    ctx
}

/// A query engine (built-in schemas, default options) over the local lake at `lake`.
pub async fn engine(lake: &Path) -> seclake::engine::Engine {
    let lake = seclake::lake::Lake::open(lake.to_str().unwrap()).unwrap();
    let reg = std::sync::Arc::new(seclake::schema::Registry::builtin().unwrap());
    seclake::engine::Engine::open(&lake, reg, Default::default())
        .await
        .unwrap()
}

/// Total rows of a query's batches.
pub fn rows(batches: &[arrow::record_batch::RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// The single i64 value of a one-row, one-column result.
pub fn scalar_i64(batches: &[arrow::record_batch::RecordBatch]) -> i64 {
    use arrow::array::AsArray;
    let b = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
    b.column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

/// A local HTTP server that records request bodies and answers with a settable status (each
/// response closes its connection). For webhook tests.
pub struct HookServer {
    pub url: String,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl HookServer {
    pub fn start(path: &str) -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let (b, s) = (bodies.clone(), status.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut r = BufReader::new(conn);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                b.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                let code = s.load(Ordering::SeqCst);
                let _ = write!(
                    r.get_mut(),
                    "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        HookServer {
            url,
            bodies,
            status,
        }
    }
}

/// Every row of the Parquet file at `path`, as the batches the reader returns.
pub fn read_parquet(path: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Each rule-match file, and how many distinct rules its rows belong to.
pub fn rules_per_file(t: &TestLake) -> Vec<(String, usize)> {
    t.files("panther_rule_matches/aws_s3serveraccess", ".parquet")
        .into_iter()
        .map(|f| {
            let mut rules = std::collections::BTreeSet::new();
            for b in read_parquet(&t.lake().join(&f)) {
                let ids = b.column_by_name("p_rule_id").unwrap().as_string::<i32>();
                rules.extend(ids.iter().flatten().map(str::to_string));
            }
            (f, rules.len())
        })
        .collect()
}

/// Write `text` gzip-compressed to `path`, creating its folder.
pub fn gzip(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
}
