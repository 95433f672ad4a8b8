//! The commit protocol: how an ingest becomes visible exactly once.
//!
//! A transaction writes its Parquet files under `_seclake/staging/<txn>/`, where no reader
//! looks. Then:
//!
//! 1. **Commit**: the commit record `_seclake/commits/<txn>.json` is created (create-if-absent,
//!    written whole in one step). It lists every staged file with its final key, and every
//!    source with its counts. Its existence is the commit point.
//! 2. **Finalize** (roll forward): each staged file is renamed to its final key inside the
//!    table; a ledger entry is written for each source; the `.done` marker is written; the
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
//!   entry exists only after its transaction committed.
//! - Finalize is idempotent: renaming a file that is already in place is skipped.
//!
//! Recovery must run under the ingest lock ([`super::lock`]), so that it never mistakes another
//! process's open transaction for an abandoned one.

use std::collections::{BTreeSet, HashSet};

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};

use super::{Lake, paths};
use crate::error::{Error, Result};

/// One file of a transaction: where it is staged and where it goes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileMove {
    pub staged: String,
    pub target: String,
    pub rows: u64,
    pub bytes: u64,
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
    }
    for s in &record.sources {
        let body = serde_json::to_vec(s).map_err(|source| Error::Json {
            context: format!("ledger entry {}", s.source_id),
            source,
        })?;
        lake.put(&paths::ledger_entry(&s.source_id), body).await?;
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

/// Ids of every source in the ledger.
pub async fn ledger_ids(lake: &Lake) -> Result<HashSet<String>> {
    Ok(lake
        .list(&paths::ledger_dir())
        .await?
        .into_iter()
        .filter_map(|m| {
            m.location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .map(str::to_string)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recover_removes_staging_holding_only_a_killed_writers_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap()).unwrap();
        let staged = dir.path().join(paths::staging_dir("t1").as_ref());
        std::fs::create_dir_all(&staged).unwrap();
        // object_store's local store writes `<key>#<n>` and renames; a kill leaves it behind.
        std::fs::write(staged.join("00002.parquet#1"), b"PAR1").unwrap();
        let r = recover(&lake).await.unwrap();
        assert_eq!(r.rolled_back, vec!["t1".to_string()]);
        assert!(!staged.exists());
    }
}
