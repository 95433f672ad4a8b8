//! Every object-store key seclake reads or writes, each from one formatting function.
//!
//! ```text
//! <db>/<table>/year=<y>/month=<m>/day=<d>/<txn>-<seq>.parquet   table data (unpadded keys)
//! _seclake/staging/<txn>/<seq>.parquet                           files of an open transaction
//! _seclake/commits/<txn>.json                                    a committed transaction
//! _seclake/commits/<txn>.done                                    ... whose files are all in place
//! _seclake/ledger/<txn>.jsonl                                    the inputs a txn ingested
//! _seclake/ledger/<source id>.json                               an input (older lakes; read)
//! _seclake/ledger-index/<txn>.txt                                ids of compacted ledger entries
//! _seclake/ledger-index/<txn>.marks.jsonl                        where local text files stopped
//! _seclake/alerts/<txn>.parquet                                  alert versions a txn wrote
//! _seclake/outbox/<alert id>.json                                an alert not yet delivered
//! _seclake/schedule/runs/<query>/<slot>.json                     a scheduled query's run
//! _seclake/schedule/results/<query>/<slot>.parquet               rows of a run that alerted
//! _seclake/schedule/staging/<query>.<txn>/                       files of an open run
//! _seclake/locks/<name>.lock                                     a held lock
//! _seclake/version                                               rewritten by every commit
//! ```
//! Partition values are written unpadded (`month=5`), because they are read back as integer
//! partition columns and DataFusion builds pruning prefixes from the integer's text.

use object_store::path::Path;

/// Folder of seclake's own state; readers skip `_` names.
pub const STATE: &str = "_seclake";

/// A table's folder: `panther_logs/aws_s3serveraccess`.
pub fn table_dir(db: &str, table: &str) -> Path {
    Path::from(format!("{db}/{table}"))
}

/// A daily partition folder: `…/year=2020/month=5/day=12`.
pub fn partition_dir(db: &str, table: &str, (y, m, d): (i32, u32, u32)) -> Path {
    Path::from(format!("{db}/{table}/year={y}/month={m}/day={d}"))
}

/// A committed data file.
pub fn data_file(db: &str, table: &str, day: (i32, u32, u32), txn: &str, seq: u32) -> Path {
    let dir = partition_dir(db, table, day);
    Path::from(format!("{dir}/{txn}-{seq:05}.parquet"))
}

/// The day of a data file or partition folder, from its `year=/month=/day=` segments.
pub fn partition_of(key: &str) -> Option<(i32, u32, u32)> {
    let (mut y, mut m, mut d) = (None, None, None);
    for seg in key.split('/') {
        if let Some((k, v)) = seg.split_once('=') {
            match k {
                "year" => y = v.parse().ok(),
                "month" => m = v.parse().ok(),
                "day" => d = v.parse().ok(),
                _ => {}
            }
        }
    }
    Some((y?, m?, d?))
}

/// Folder of a transaction's staged files.
pub fn staging_dir(txn: &str) -> Path {
    Path::from(format!("{STATE}/staging/{txn}"))
}

/// A staged file of a transaction.
pub fn staging_file(txn: &str, seq: u32) -> Path {
    Path::from(format!("{STATE}/staging/{txn}/{seq:05}.parquet"))
}

/// Folder of the commit records.
pub fn commits_dir() -> Path {
    Path::from(format!("{STATE}/commits"))
}

/// The commit record of a transaction: its existence is the commit.
pub fn commit_record(txn: &str) -> Path {
    Path::from(format!("{STATE}/commits/{txn}.json"))
}

/// Marker that a committed transaction's files are all in place.
pub fn commit_done(txn: &str) -> Path {
    Path::from(format!("{STATE}/commits/{txn}.done"))
}

/// Folder of the ingest ledger.
pub fn ledger_dir() -> Path {
    Path::from(format!("{STATE}/ledger"))
}

/// Folder of the ledger's compacted indexes.
pub fn ledger_index_dir() -> Path {
    Path::from(format!("{STATE}/ledger-index"))
}

/// A compacted ledger index: every source id it holds, one per line.
pub fn ledger_index(name: &str) -> Path {
    Path::from(format!("{STATE}/ledger-index/{name}.txt"))
}

/// The text marks of a compacted ledger index (JSON lines of label and mark), written first.
pub fn ledger_index_marks(index: &Path) -> Path {
    let name = index.as_ref().trim_end_matches(".txt");
    Path::from(format!("{name}.marks.jsonl"))
}

/// Ledger entry of one ingested source, as commits wrote them before the per-transaction
/// ledger file: still read, no longer written.
pub fn ledger_entry(source_id: &str) -> Path {
    Path::from(format!("{STATE}/ledger/{source_id}.json"))
}

/// Ledger entries of the sources transaction `txn` ingested, one JSON object per line.
pub fn ledger_batch(txn: &str) -> Path {
    Path::from(format!("{STATE}/ledger/{txn}.jsonl"))
}

/// Folder of alert versions, one Parquet file per transaction that changed alerts.
pub fn alerts_dir() -> Path {
    Path::from(format!("{STATE}/alerts"))
}

/// Alert versions written by transaction `txn`.
pub fn alerts_file(txn: &str) -> Path {
    Path::from(format!("{STATE}/alerts/{txn}.parquet"))
}

/// Folder of alerts waiting for delivery.
pub fn outbox_dir() -> Path {
    Path::from(format!("{STATE}/outbox"))
}

/// An alert waiting for delivery.
pub fn outbox_item(alert_id: &str) -> Path {
    Path::from(format!("{STATE}/outbox/{alert_id}.json"))
}

/// Staging folder of a scheduled-query transaction (apart from ingest's, whose recovery
/// must not remove it): `_seclake/schedule/staging/<query>.<txn>`.
pub fn schedule_staging_dir(query: &str, txn: &str) -> Path {
    Path::from(format!("{STATE}/schedule/staging/{query}.{txn}"))
}

/// Folder of a scheduled query's run records.
pub fn schedule_runs_dir(query: &str) -> Path {
    Path::from(format!("{STATE}/schedule/runs/{query}"))
}

/// Record of a scheduled query's run for the slot `slot` (`20200512T100000Z`).
pub fn schedule_run(query: &str, slot: &str) -> Path {
    Path::from(format!("{STATE}/schedule/runs/{query}/{slot}.json"))
}

/// Result rows of a scheduled query's run that raised or updated alerts.
pub fn schedule_results(query: &str, slot: &str) -> Path {
    Path::from(format!("{STATE}/schedule/results/{query}/{slot}.parquet"))
}

/// The lake's version marker: rewritten by every commit, so a reader that sees it unchanged
/// knows its cached listings are still right.
pub fn version() -> Path {
    Path::from(format!("{STATE}/version"))
}

/// A named lock.
pub fn lock(name: &str) -> Path {
    Path::from(format!("{STATE}/locks/{name}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_keys() {
        let day = (2020, 5, 12);
        assert_eq!(
            partition_dir("panther_logs", "aws_s3serveraccess", day).as_ref(),
            "panther_logs/aws_s3serveraccess/year=2020/month=5/day=12"
        );
        assert_eq!(
            data_file("panther_logs", "aws_s3serveraccess", (2020, 12, 1), "t1", 3).as_ref(),
            "panther_logs/aws_s3serveraccess/year=2020/month=12/day=1/t1-00003.parquet"
        );
        assert_eq!(
            partition_of("panther_logs/t/year=2020/month=12/day=1/t1-00003.parquet"),
            Some((2020, 12, 1))
        );
        assert_eq!(
            partition_of("panther_logs/t/year=2020/month=12/x.parquet"),
            None
        );
        assert_eq!(table_dir("a", "b").as_ref(), "a/b");
        assert_eq!(staging_dir("t1").as_ref(), "_seclake/staging/t1");
        assert_eq!(
            staging_file("t1", 7).as_ref(),
            "_seclake/staging/t1/00007.parquet"
        );
        assert_eq!(commits_dir().as_ref(), "_seclake/commits");
        assert_eq!(commit_record("t1").as_ref(), "_seclake/commits/t1.json");
        assert_eq!(commit_done("t1").as_ref(), "_seclake/commits/t1.done");
        assert_eq!(ledger_dir().as_ref(), "_seclake/ledger");
        assert_eq!(ledger_entry("ab").as_ref(), "_seclake/ledger/ab.json");
        assert_eq!(ledger_batch("t1").as_ref(), "_seclake/ledger/t1.jsonl");
        assert_eq!(ledger_index("t1").as_ref(), "_seclake/ledger-index/t1.txt");
        assert_eq!(alerts_file("t1").as_ref(), "_seclake/alerts/t1.parquet");
        assert_eq!(outbox_item("a1").as_ref(), "_seclake/outbox/a1.json");
        assert_eq!(
            schedule_staging_dir("q", "t1").as_ref(),
            "_seclake/schedule/staging/q.t1"
        );
        assert_eq!(
            schedule_run("q", "20200512T100000Z").as_ref(),
            "_seclake/schedule/runs/q/20200512T100000Z.json"
        );
        assert_eq!(
            schedule_results("q", "s").as_ref(),
            "_seclake/schedule/results/q/s.parquet"
        );
        assert_eq!(lock("ingest").as_ref(), "_seclake/locks/ingest.lock");
        assert_eq!(version().as_ref(), "_seclake/version");
    }
}
