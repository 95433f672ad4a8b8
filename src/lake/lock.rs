//! Named locks in the lake, for work that must not overlap (ingest commits, scheduled runs).
//!
//! A lock is an object `_seclake/locks/<name>.lock` created with create-if-absent. The holder
//! refreshes it on a timer; a lock is stale, and may be taken over, when it has not been
//! refreshed for [`LockOptions::stale_after`], or when it was taken on this host by a process
//! that no longer runs (so a `kill -9` does not block the next run).
//!
//! Invariant: at most one live holder per name, as far as create-if-absent is atomic on the
//! store (it is on local disk and on S3).

use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::{Lake, paths};
use crate::error::{Error, Result};

/// How a lock is held.
#[derive(Debug, Clone, Copy)]
pub struct LockOptions {
    /// A lock not refreshed for this long is abandoned.
    pub stale_after: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            stale_after: Duration::from_secs(120),
        }
    }
}

/// Who holds a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub since: String,
}

/// A held lock; released by [`LockGuard::release`] (or, after a crash, by going stale).
#[derive(Debug)]
pub struct LockGuard {
    lake: Lake,
    key: Path,
    heartbeat: JoinHandle<()>,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn pid_alive(pid: u32) -> bool {
    // Linux: a running process has /proc/<pid>. Elsewhere assume alive and rely on staleness.
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// Take the lock `name`, or fail with [`Error::Locked`] naming the holder.
pub async fn acquire(lake: &Lake, name: &str, opts: LockOptions) -> Result<LockGuard> {
    let key = paths::lock(name);
    let me = Holder {
        pid: std::process::id(),
        host: host(),
        since: chrono::Utc::now().to_rfc3339(),
    };
    let body = serde_json::to_vec(&me).map_err(|source| Error::Json {
        context: "lock".into(),
        source,
    })?;
    for _ in 0..3 {
        // A lost answer to our own create finds our body there: ours.
        let put = super::commit::create(lake, &key, body.clone()).await;
        match put {
            Ok(_) => {
                let heartbeat = spawn_heartbeat(lake.clone(), key.clone(), body, opts);
                return Ok(LockGuard {
                    lake: lake.clone(),
                    key,
                    heartbeat,
                });
            }
            Err(Error::ObjectStore(object_store::Error::AlreadyExists { .. })) => {
                let meta = match lake.store().head(&key).await {
                    Ok(m) => m,
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                let holder: Option<Holder> = lake
                    .get_opt(&key)
                    .await?
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let age = chrono::Utc::now() - meta.last_modified;
                let dead = holder
                    .as_ref()
                    .is_some_and(|h| h.host == me.host && !pid_alive(h.pid));
                if dead || age.to_std().unwrap_or_default() > opts.stale_after {
                    lake.delete_opt(&key).await?;
                    continue;
                }
                let who = holder.map_or_else(
                    || "unknown holder".to_string(),
                    |h| format!("pid {} on {} since {}", h.pid, h.host, h.since),
                );
                return Err(Error::Locked(format!("{name} is held by {who}")));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Locked(format!(
        "{name}: could not take over a stale lock"
    )))
}

fn spawn_heartbeat(lake: Lake, key: Path, body: Vec<u8>, opts: LockOptions) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = opts.stale_after / 4;
        loop {
            tokio::time::sleep(every).await;
            let _ = lake.put(&key, body.clone()).await;
        }
    })
}

/// Run `work` holding the lock `name` (default options), and release it whether `work`
/// succeeded or not. `work` is not started before the lock is taken.
pub async fn holding<T>(
    lake: &Lake,
    name: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let guard = acquire(lake, name, LockOptions::default()).await?;
    let result = work.await;
    guard.release().await?;
    result
}

impl LockGuard {
    /// Release the lock.
    pub async fn release(self) -> Result<()> {
        self.heartbeat.abort();
        self.lake.delete_opt(&self.key).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}
