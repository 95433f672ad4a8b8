//! The commit protocol: how an ingest becomes visible exactly once.
//!
//! A transaction writes its Parquet files under `_seclake/staging/<txn>/`, where no reader
//! looks. Then:
//!
//! 1. **Commit**: the commit record `_seclake/commits/<txn>.json` is created (create-if-absent,
//!    written whole in one step). It lists every staged file with its final key, and every
//!    source with its counts. Its existence is the commit point.
//! 2. **Finalize** (roll forward): each staged file is renamed to its final key inside the
//!    table, and the files it replaces (compaction, [`super::compact`]) are deleted; the
//!    ledger file of the transaction's sources is written; the `.done` marker is written; the
//!    staging folder is removed.
//!
//! Invariants:
//! - No reader sees a partial file: files are complete before they are staged (object stores
//!   write whole objects; the local store writes a temporary file and renames it), and they
//!   enter a table only by rename (on S3, which has no rename: a server-side copy, which
//!   appears whole, then deletion of the staged copy).
//! - The commit record is created with create-if-absent (`If-None-Match: *` on S3); a create
//!   whose answer was lost is retried and finds its own body there, which is success
//!   ([`create`]), so a dropped connection cannot turn a commit into a spurious failure.
//! - Every finalize ends by rewriting `_seclake/version`, which readers watch to know when
//!   their cached listings are stale.
//! - A transaction's data reaches the tables if and only if its commit record exists.
//!   [`recover`] rolls every committed-but-unfinished transaction forward and deletes the
//!   staging of every uncommitted one, so a crash at any moment followed by a re-run leaves
//!   each source in the lake exactly once.
//! - A source is skipped as already ingested only once its ledger entry exists, and the ledger
//!   entry (a line of its transaction's ledger file) exists only after its transaction
//!   committed.
//! - Finalize is idempotent: renaming a file that is already in place is skipped.
//!
//! Recovery must run under the ingest lock ([`super::lock`]), so that it never mistakes another
//! process's open transaction for an abandoned one.

use std::collections::{BTreeSet, HashMap, HashSet};

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use super::{Lake, paths};
use crate::error::{Error, Result};

/// One file of a transaction: where it is staged and where it goes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileMove {
    pub staged: String,
    pub target: String,
    pub rows: u64,
    pub bytes: u64,
    /// Files of the same table this one replaces (compaction): deleted right after it is in
    /// place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
}

/// What the ledger records for one ingested source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LedgerEntry {
    pub source_id: String,
    pub label: String,
    pub log_type: String,
    pub bytes: u64,
    pub lines: u64,
    pub rows: u64,
    pub quarantined: u64,
    pub txn: String,
    /// RFC 3339 time the transaction committed.
    pub ingested_at: String,
    /// Where the ingest of a local text file stopped, so that lines appended to it later are
    /// ingested alone (`None` for gzip files and objects, which are not appended to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<TextMark>,
}

/// How far a local text file was ingested: its whole lines, counted, and a fingerprint of them.
/// A file found again under the same path, at least as long and with the same fingerprint,
/// grew by appending: only what follows `complete` is new. A file under another path whose
/// first line is this one's ([`TextMark::first_line`]) and whose content has the same
/// fingerprint is a copy (a rotated `app.log.1`, or `app.log.2.gz` decompressed): the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TextMark {
    /// Bytes up to and including the last line end ingested.
    pub complete: u64,
    /// Line ends among them.
    pub lines: u64,
    /// [`TextMark::fingerprint`] of the first `complete` bytes.
    pub fingerprint: String,
    /// [`TextMark::first_line_key`] of the text (empty when its first line is longer than
    /// [`TextMark::ENDS`], or in marks written before it existed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_line: String,
}

impl TextMark {
    /// Bytes of each end a fingerprint covers.
    pub const ENDS: u64 = 4096;

    /// The mark of a text's first `complete` bytes (`lines` line ends), given their first and
    /// last [`TextMark::ENDS`] bytes (each all of them when shorter).
    pub fn from_ends(head: &[u8], tail: &[u8], complete: u64, lines: u64) -> TextMark {
        TextMark {
            complete,
            lines,
            fingerprint: Self::fingerprint(head, tail, complete),
            first_line: Self::first_line_key(head).unwrap_or_default(),
        }
    }

    /// xxh3-128 of a text's first and last [`TextMark::ENDS`] bytes (`head`, `tail`, each all
    /// of it when shorter) and its length `len`: a file rewritten in place differs at an end,
    /// or in length.
    pub fn fingerprint(head: &[u8], tail: &[u8], len: u64) -> String {
        let mut buf = Vec::with_capacity(head.len() + tail.len() + 8);
        buf.extend_from_slice(head);
        buf.extend_from_slice(tail);
        buf.extend_from_slice(&len.to_le_bytes());
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&buf))
    }

    /// xxh3-128 of the first line of a text beginning with `head` (its end included), when it
    /// ends within [`TextMark::ENDS`] bytes: log lines carry times and ids, so a first line
    /// tells a file's copies from other files.
    pub fn first_line_key(head: &[u8]) -> Option<String> {
        let head = &head[..head.len().min(Self::ENDS as usize)];
        let end = memchr::memchr(b'\n', head)? + 1;
        Some(format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(&head[..end])
        ))
    }
}

/// A commit record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommitRecord {
    pub txn: String,
    pub created_at: String,
    pub files: Vec<FileMove>,
    pub sources: Vec<LedgerEntry>,
}

/// A new transaction id: sortable by time, unique per process and moment.
pub fn new_txn_id() -> String {
    let now = chrono::Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or_default();
    let salt = xxhash_rust::xxh3::xxh3_64(
        format!(
            "{nanos}:{}:{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .as_bytes(),
    );
    format!("{}-{:08x}", now.format("%Y%m%dT%H%M%S%3fZ"), salt as u32)
}

/// Commit `record`: create its commit record (failing if it exists), then finalize.
pub async fn commit(lake: &Lake, record: &CommitRecord) -> Result<()> {
    let body = serde_json::to_vec_pretty(record).map_err(|source| Error::Json {
        context: format!("commit record {}", record.txn),
        source,
    })?;
    create(lake, &paths::commit_record(&record.txn), body).await?;
    finalize(lake, record).await
}

/// Create `key` holding `body`, failing if another body is there. A create whose answer was
/// lost (a dropped connection after the store wrote it) is retried, and then finds its own
/// body in place: that is success, not a conflict.
pub async fn create(lake: &Lake, key: &Path, body: Vec<u8>) -> Result<()> {
    let body = bytes::Bytes::from(body);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match lake.store().put_opts(key, body.clone().into(), opts).await {
            Ok(_) => return Ok(()),
            Err(e @ object_store::Error::AlreadyExists { .. }) => {
                return match lake.get_opt(key).await? {
                    Some(there) if there == body => Ok(()),
                    _ => Err(e.into()),
                };
            }
            Err(e) if attempts >= 3 => return Err(e.into()),
            Err(_) => continue,
        }
    }
}

/// Move a committed transaction's files into place and record its sources. Idempotent.
pub async fn finalize(lake: &Lake, record: &CommitRecord) -> Result<()> {
    for f in &record.files {
        let staged = Path::from(f.staged.as_str());
        let target = Path::from(f.target.as_str());
        match lake.store().rename(&staged, &target).await {
            Ok(()) => {}
            // Already moved by an earlier, interrupted finalize.
            Err(object_store::Error::NotFound { .. }) => {
                lake.store().head(&target).await.map_err(|e| {
                    Error::invalid(format!(
                        "transaction {}: staged file {} and its target {} are both missing ({e})",
                        record.txn, f.staged, f.target
                    ))
                })?;
            }
            Err(e) => return Err(e.into()),
        }
        // Right after its replacement is in place, so a reader listing the partition sees
        // both only in this short window (and not at all once finalize is done).
        for old in &f.replaces {
            lake.delete_opt(&Path::from(old.as_str())).await?;
        }
    }
    // One object for all the transaction's sources: an ingest of many small files (S3 access
    // logs arrive as thousands) would otherwise create a file, or send a PUT, per source.
    if !record.sources.is_empty() {
        let mut body = Vec::new();
        for s in &record.sources {
            serde_json::to_writer(&mut body, s).map_err(|source| Error::Json {
                context: format!("ledger entry {}", s.source_id),
                source,
            })?;
            body.push(b'\n');
        }
        lake.put(&paths::ledger_batch(&record.txn), body).await?;
    }
    lake.put(&paths::commit_done(&record.txn), b"done\n".to_vec())
        .await?;
    // Readers caching listings re-list when this changes.
    lake.put(&paths::version(), format!("{}\n", record.txn).into_bytes())
        .await?;
    remove_staging(lake, &record.txn).await
}

async fn remove_staging(lake: &Lake, txn: &str) -> Result<()> {
    let dir = paths::staging_dir(txn);
    if let Some(root) = lake.local_root() {
        // Locally the folder can also hold a killed writer's temporary `<file>#<n>`, which
        // object_store never lists: remove the folder whole.
        let dir = root.join(dir.as_ref());
        return match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&dir, e)),
            _ => Ok(()),
        };
    }
    for meta in lake.list(&dir).await? {
        lake.delete_opt(&meta.location).await?;
    }
    Ok(())
}

/// What [`recover`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Committed transactions rolled forward.
    pub rolled_forward: Vec<String>,
    /// Uncommitted transactions whose staged files were deleted.
    pub rolled_back: Vec<String>,
}

/// Finish every committed transaction and discard every uncommitted one. Call under the
/// ingest lock.
pub async fn recover(lake: &Lake) -> Result<Recovery> {
    let mut out = Recovery::default();
    let mut committed = HashSet::new();
    let mut done = HashSet::new();
    for meta in lake.list(&paths::commits_dir()).await? {
        let name = meta.location.filename().unwrap_or_default().to_string();
        if let Some(txn) = name.strip_suffix(".json") {
            committed.insert(txn.to_string());
        } else if let Some(txn) = name.strip_suffix(".done") {
            done.insert(txn.to_string());
        }
    }
    let mut pending: Vec<_> = committed.difference(&done).cloned().collect();
    pending.sort();
    for txn in pending {
        let body = lake
            .get_opt(&paths::commit_record(&txn))
            .await?
            .unwrap_or_default();
        let record: CommitRecord = serde_json::from_slice(&body).map_err(|source| Error::Json {
            context: format!("commit record {txn}"),
            source,
        })?;
        finalize(lake, &record).await?;
        out.rolled_forward.push(txn);
    }
    // Folders, not files: a folder holding only a killed writer's temporary file lists no
    // objects but must still go.
    let staged: BTreeSet<String> = lake
        .store()
        .list_with_delimiter(Some(&Path::from(format!("{}/staging", paths::STATE))))
        .await?
        .common_prefixes
        .into_iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .collect();
    for txn in staged {
        if !committed.contains(&txn) {
            remove_staging(lake, &txn).await?;
            out.rolled_back.push(txn);
        }
    }
    Ok(out)
}

/// Loose ledger entries that make an ingest compact the ledger first; `SECLAKE_LEDGER_COMPACT_AT`
/// changes it, for tests.
fn compact_at() -> usize {
    super::count_from_env("SECLAKE_LEDGER_COMPACT_AT", 1000)
}

/// Loose ledger files that make an ingest compact the ledger first, whatever they hold: each is
/// read by every ingest (a GET on S3), so a cron job ingesting a few objects a run keeps the
/// ledger a few requests.
const COMPACT_FILES_AT: usize = 64;

/// Ledger files read at once.
const LOAD_CONCURRENCY: usize = 16;

/// The ledger as read: every ingested source id.
#[derive(Debug, Default)]
pub struct Ledger {
    pub ids: HashSet<String>,
    /// The newest [`TextMark`] of each local text file, by label (canonical path): after a
    /// rotation, the new file's, however far the old one went.
    pub marks: HashMap<String, LabelMark>,
    /// The newest mark by [`TextMark::first_line`], to recognise copies.
    pub by_first_line: HashMap<String, LabelMark>,
    /// Objects written by commits since the last compaction: one per transaction
    /// (`<txn>.jsonl`), or one per source in lakes written by earlier versions.
    loose: Vec<Path>,
    /// Ids in the loose objects.
    loose_ids: usize,
    /// Compacted indexes (normally one; more after an interrupted compaction), and the text
    /// marks kept beside them.
    indexes: Vec<Path>,
}

/// The fields of a ledger line the ledger needs.
#[derive(Deserialize)]
struct SourceId {
    source_id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    txn: String,
    #[serde(default)]
    mark: Option<TextMark>,
}

/// A file's mark as the ledger keeps it: whose, and which transaction wrote it (a line of a
/// compacted index's marks file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelMark {
    pub label: String,
    #[serde(default)]
    pub txn: String,
    pub mark: TextMark,
}

impl Ledger {
    /// Keep `m` for its label, and for its first line, where it is newer than the one kept
    /// (transaction ids sort by time).
    fn add_mark(&mut self, m: LabelMark) {
        fn keep(map: &mut HashMap<String, LabelMark>, key: &str, m: &LabelMark) {
            if map.get(key).is_none_or(|kept| kept.txn <= m.txn) {
                map.insert(key.to_string(), m.clone());
            }
        }
        if !m.mark.first_line.is_empty() {
            keep(&mut self.by_first_line, &m.mark.first_line, &m);
        }
        keep(&mut self.marks, &m.label, &m);
    }
}

impl Ledger {
    /// Read the ledger: the newest compacted index plus the loose entries. Listing costs a
    /// request per 1000 loose objects and each transaction's file one more; compaction keeps
    /// both few, so a cron re-run over a prefix of many ingested objects stays cheap.
    pub async fn load(lake: &Lake) -> Result<Self> {
        use futures::{StreamExt, TryStreamExt};
        let mut out = Ledger::default();
        let mut batches = Vec::new();
        for m in lake.list(&paths::ledger_dir()).await? {
            let Some(name) = m.location.filename() else {
                continue;
            };
            if let Some(id) = name.strip_suffix(".json") {
                out.ids.insert(id.to_string());
                out.loose_ids += 1;
            } else if name.ends_with(".jsonl") {
                batches.push(m.location.clone());
            } else {
                continue;
            }
            out.loose.push(m.location);
        }
        let bodies: Vec<(Path, bytes::Bytes)> = futures::stream::iter(batches)
            .map(|p| async move {
                let body = lake.get_opt(&p).await?.unwrap_or_default();
                Ok::<_, Error>((p, body))
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .try_collect()
            .await?;
        for (p, body) in bodies {
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let e: SourceId = serde_json::from_slice(line).map_err(|source| Error::Json {
                    context: format!("ledger file {p}"),
                    source,
                })?;
                out.ids.insert(e.source_id);
                out.loose_ids += 1;
                if let Some(mark) = e.mark {
                    out.add_mark(LabelMark {
                        label: e.label,
                        txn: e.txn,
                        mark,
                    });
                }
            }
        }
        let listed: Vec<Path> = lake
            .list(&paths::ledger_index_dir())
            .await?
            .into_iter()
            .map(|m| m.location)
            .collect();
        let mut indexes: Vec<Path> = listed
            .iter()
            .filter(|p| p.as_ref().ends_with(".txt"))
            .cloned()
            .collect();
        indexes.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        // Index names sort by time, and each holds everything before it: the newest is enough.
        if let Some(newest) = indexes.last() {
            let body = lake.get_opt(newest).await?.unwrap_or_default();
            let text = std::str::from_utf8(&body)
                .map_err(|e| Error::invalid(format!("ledger index {newest}: {e}")))?;
            out.ids
                .extend(text.lines().filter(|l| !l.is_empty()).map(String::from));
            // Written before its index; absent in lakes compacted before marks existed.
            let marks = paths::ledger_index_marks(newest);
            let body = lake.get_opt(&marks).await?.unwrap_or_default();
            for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let m: LabelMark = serde_json::from_slice(line).map_err(|source| Error::Json {
                    context: format!("ledger marks {marks}"),
                    source,
                })?;
                out.add_mark(m);
            }
        }
        // Marks files go with their indexes (and with an index whose write was cut short).
        indexes.extend(
            listed
                .into_iter()
                .filter(|p| p.as_ref().ends_with(".marks.jsonl")),
        );
        out.indexes = indexes;
        Ok(out)
    }

    /// Whether compaction is due.
    pub fn needs_compaction(&self) -> bool {
        self.loose_ids >= compact_at() || self.loose.len() >= COMPACT_FILES_AT
    }

    /// Fold the loose entries into a new index, then delete them and the older indexes. Call
    /// under the ingest lock (no commit may add entries meanwhile). Crash-safe: until the new
    /// index is complete nothing is deleted, and readers take the union.
    pub async fn compact(&mut self, lake: &Lake) -> Result<()> {
        let mut ids: Vec<&String> = self.ids.iter().collect();
        ids.sort();
        let mut body = String::with_capacity(ids.len() * 33);
        for id in ids {
            body.push_str(id);
            body.push('\n');
        }
        let index = paths::ledger_index(&new_txn_id());
        // Every mark kept: by label, and by first line (an old file's, under a label a newer
        // file now holds, recognises its rotated copies).
        let mut marks: Vec<&LabelMark> = self
            .marks
            .values()
            .chain(self.by_first_line.values())
            .collect();
        marks.sort_by(|a, b| (&a.label, &a.txn).cmp(&(&b.label, &b.txn)));
        marks.dedup_by(|a, b| a.label == b.label && a.txn == b.txn);
        let mut lines = Vec::new();
        for m in marks {
            serde_json::to_writer(&mut lines, m).map_err(|source| Error::Json {
                context: format!("ledger marks of {}", m.label),
                source,
            })?;
            lines.push(b'\n');
        }
        lake.put(&paths::ledger_index_marks(&index), lines).await?;
        lake.put(&index, body.into_bytes()).await?;
        let gone = self.loose.drain(..).chain(self.indexes.drain(..)).collect();
        lake.delete_all(gone).await?;
        self.loose_ids = 0;
        self.indexes.push(index);
        Ok(())
    }
}

/// Ids of every source in the ledger.
pub async fn ledger_ids(lake: &Lake) -> Result<HashSet<String>> {
    Ok(Ledger::load(lake).await?.ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lake in a fresh temporary folder (kept while the guard lives).
    fn temp_lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        (dir, lake)
    }

    #[tokio::test]
    async fn recover_removes_staging_holding_only_a_killed_writers_temp_file() {
        let (dir, lake) = temp_lake();
        let staged = dir.path().join(paths::staging_dir("t1").as_ref());
        std::fs::create_dir_all(&staged).unwrap();
        // object_store's local store writes `<key>#<n>` and renames; a kill leaves it behind.
        std::fs::write(staged.join("00002.parquet#1"), b"PAR1").unwrap();
        let r = recover(&lake).await.unwrap();
        assert_eq!(r.rolled_back, vec!["t1".to_string()]);
        assert!(!staged.exists());
    }

    #[tokio::test]
    async fn compaction_keeps_every_id_and_leaves_few_objects() {
        let (_dir, lake) = temp_lake();
        let entry = |id: &str| (paths::ledger_entry(id), b"{}".to_vec());
        for id in ["a1", "b2", "c3"] {
            let (k, v) = entry(id);
            lake.put(&k, v).await.unwrap();
        }
        let mut l = Ledger::load(&lake).await.unwrap();
        assert!(!l.needs_compaction());
        l.compact(&lake).await.unwrap();
        assert!(lake.list(&paths::ledger_dir()).await.unwrap().is_empty());
        let (k, v) = entry("d4");
        lake.put(&k, v).await.unwrap();
        let mut l = Ledger::load(&lake).await.unwrap();
        let mut ids: Vec<_> = l.ids.iter().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["a1", "b2", "c3", "d4"]);
        // A second compaction replaces the first index (and its marks file).
        l.compact(&lake).await.unwrap();
        assert_eq!(
            lake.list(&paths::ledger_index_dir()).await.unwrap().len(),
            2
        );
        assert_eq!(Ledger::load(&lake).await.unwrap().ids.len(), 4);
    }

    #[tokio::test]
    async fn text_marks_survive_compaction_and_the_newest_is_kept() {
        let (_dir, lake) = temp_lake();
        let mark = |complete: u64| TextMark {
            complete,
            lines: complete / 10,
            fingerprint: format!("f{complete}"),
            first_line: format!("k{complete}"),
        };
        let mut r = record("t1", &["a", "b"]);
        r.sources[0].mark = Some(mark(100));
        commit(&lake, &r).await.unwrap();
        let mut r = record("t2", &["a2", "c"]);
        // The same file grown, then a file of another path.
        r.sources[0].label = "logs/a".into();
        r.sources[0].mark = Some(mark(250));
        r.sources[1].mark = Some(mark(30));
        commit(&lake, &r).await.unwrap();
        let want = |l: &Ledger, a: u64, keys: &[u64]| {
            let mut got: Vec<_> = l
                .marks
                .iter()
                .map(|(k, m)| (k.clone(), m.mark.clone()))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                got,
                [
                    ("logs/a".to_string(), mark(a)),
                    ("logs/c".to_string(), mark(30))
                ]
            );
            let mut lines: Vec<_> = l.by_first_line.keys().cloned().collect();
            lines.sort();
            let want: Vec<String> = keys.iter().map(|k| format!("k{k}")).collect();
            assert_eq!(lines, want);
            for k in keys {
                assert_eq!(l.by_first_line[&format!("k{k}")].mark, mark(*k));
            }
        };
        let mut l = Ledger::load(&lake).await.unwrap();
        want(&l, 250, &[100, 250, 30]);
        l.compact(&lake).await.unwrap();
        want(&Ledger::load(&lake).await.unwrap(), 250, &[100, 250, 30]);
        // A newer file under the path (rotated: shorter, other lines) is the path's mark now;
        // the old one still answers for its first line, through another compaction.
        let mut r = record("t3", &["a3"]);
        r.sources[0].label = "logs/a".into();
        r.sources[0].mark = Some(mark(90));
        commit(&lake, &r).await.unwrap();
        let mut l = Ledger::load(&lake).await.unwrap();
        want(&l, 90, &[100, 250, 30, 90]);
        l.compact(&lake).await.unwrap();
        let mut l = Ledger::load(&lake).await.unwrap();
        want(&l, 90, &[100, 250, 30, 90]);
        l.compact(&lake).await.unwrap();
        want(&Ledger::load(&lake).await.unwrap(), 90, &[100, 250, 30, 90]);
        assert_eq!(Ledger::load(&lake).await.unwrap().ids.len(), 5);
    }

    #[test]
    fn a_fingerprint_changes_with_either_end_or_the_length() {
        let print = |text: &[u8], len: u64| {
            let (len, ends) = (len as usize, (len as usize).min(4096));
            TextMark::from_ends(&text[..ends], &text[len - ends..len], len as u64, 0).fingerprint
        };
        let text: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let base = print(&text, 15_000);
        let mut grown = text.clone();
        grown.extend_from_slice(b"more");
        assert_eq!(print(&grown, 15_000), base, "appending keeps it");
        for at in [0, 4095, 15_000 - 4096, 14_999] {
            let mut t = text.clone();
            t[at] = b'#';
            assert_ne!(print(&t, 15_000), base, "a change at {at}");
        }
        assert_ne!(print(&text, 14_000), base);
        // Shorter than both ends together, and empty.
        assert_ne!(print(b"x\n", 2), print(b"y\n", 2));
        assert_eq!(print(b"", 0), print(b"", 0));
    }

    fn record(txn: &str, ids: &[&str]) -> CommitRecord {
        CommitRecord {
            txn: txn.into(),
            created_at: String::new(),
            files: vec![],
            sources: ids
                .iter()
                .map(|id| LedgerEntry {
                    source_id: id.to_string(),
                    label: format!("logs/{id}"),
                    log_type: "AWS.S3ServerAccess".into(),
                    bytes: 1,
                    lines: 1,
                    rows: 1,
                    quarantined: 0,
                    txn: txn.into(),
                    ingested_at: String::new(),
                    mark: None,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_commit_writes_one_ledger_file_for_all_its_sources() {
        let (_dir, lake) = temp_lake();
        let ids: Vec<String> = (0..500).map(|i| format!("s{i:03}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        commit(&lake, &record("t1", &ids)).await.unwrap();
        // A transaction without sources (a compaction) writes no ledger file.
        commit(&lake, &record("t2", &[])).await.unwrap();
        let listed = lake.list(&paths::ledger_dir()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].location, paths::ledger_batch("t1"));
        let l = Ledger::load(&lake).await.unwrap();
        assert_eq!(l.ids.len(), 500);
        assert!(l.ids.contains("s499"));
        assert!(!l.needs_compaction());
    }

    #[tokio::test]
    async fn older_per_source_entries_are_read_and_compacted_with_the_rest() {
        let (_dir, lake) = temp_lake();
        lake.put(&paths::ledger_entry("old1"), b"{}".to_vec())
            .await
            .unwrap();
        commit(&lake, &record("t1", &["new1", "new2"]))
            .await
            .unwrap();
        let mut l = Ledger::load(&lake).await.unwrap();
        let mut ids: Vec<_> = l.ids.iter().cloned().collect();
        ids.sort();
        assert_eq!(ids, ["new1", "new2", "old1"]);
        l.compact(&lake).await.unwrap();
        assert!(lake.list(&paths::ledger_dir()).await.unwrap().is_empty());
        assert_eq!(Ledger::load(&lake).await.unwrap().ids.len(), 3);
    }

    #[tokio::test]
    async fn many_small_transactions_make_the_ledger_compact() {
        let (_dir, lake) = temp_lake();
        for i in 0..COMPACT_FILES_AT {
            let id = format!("s{i}");
            commit(&lake, &record(&format!("t{i:03}"), &[&id]))
                .await
                .unwrap();
        }
        let mut l = Ledger::load(&lake).await.unwrap();
        assert!(l.needs_compaction());
        l.compact(&lake).await.unwrap();
        let l = Ledger::load(&lake).await.unwrap();
        assert!(!l.needs_compaction());
        assert_eq!(l.ids.len(), COMPACT_FILES_AT);
    }

    #[tokio::test]
    async fn a_damaged_ledger_file_is_named() {
        let (_dir, lake) = temp_lake();
        lake.put(
            &paths::ledger_batch("t9"),
            b"{\"source_id\":\"a\"}\nnot json\n".to_vec(),
        )
        .await
        .unwrap();
        let e = Ledger::load(&lake).await.unwrap_err().to_string();
        assert!(e.contains("_seclake/ledger/t9.jsonl"), "{e}");
    }

    #[tokio::test]
    async fn an_interrupted_compaction_loses_nothing() {
        let (_dir, lake) = temp_lake();
        lake.put(&paths::ledger_index("t1"), b"a1\nb2\n".to_vec())
            .await
            .unwrap();
        // Killed after writing the newer index, before deleting what it folded in.
        lake.put(&paths::ledger_entry("c3"), b"{}".to_vec())
            .await
            .unwrap();
        lake.put(&paths::ledger_index("t2"), b"a1\nb2\nc3\n".to_vec())
            .await
            .unwrap();
        let l = Ledger::load(&lake).await.unwrap();
        assert_eq!(l.ids.len(), 3);
    }
}
