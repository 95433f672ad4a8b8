//! `seclake compact`: many small files per day become few, every row stays exactly once (also
//! when the process is killed mid-way), each file stays sorted by time, and ingest's ledger
//! and the rule matches are untouched.

use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;

use crate::ingest::make_inputs;
use crate::util::{TestLake, kill_after, next_random, read_parquet, rules_per_file};

const LOGS: &str = "panther_logs/aws_s3serveraccess";
const MATCHES: &str = "panther_rule_matches/aws_s3serveraccess";

/// Every row of the log and rule-match tables, in a fixed order.
fn contents(t: &TestLake) -> (String, String) {
    (
        t.csv(
            "SELECT p_row_id, p_event_time, requester, key, httpstatus, bytessent, \
               year, month, day FROM panther_logs.aws_s3serveraccess ORDER BY p_row_id",
        ),
        t.csv(
            "SELECT p_row_id, p_rule_id, p_alert_id FROM \
               panther_rule_matches.aws_s3serveraccess ORDER BY p_row_id, p_rule_id",
        ),
    )
}

/// Rows in the logs table and distinct row ids.
fn counts(t: &TestLake) -> (u64, u64) {
    let out =
        t.csv("SELECT count(*), count(DISTINCT p_row_id) FROM panther_logs.aws_s3serveraccess");
    let v: Vec<u64> = out
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1])
}

/// Files of a table, and whether each one's rows are in time order.
fn files_sorted(t: &TestLake, table: &str) -> Vec<(String, bool)> {
    t.files(table, ".parquet")
        .into_iter()
        .map(|f| {
            let mut times = Vec::new();
            for b in read_parquet(&t.lake().join(&f)) {
                let i = b.schema().index_of("p_event_time").unwrap();
                times.extend_from_slice(
                    b.column(i)
                        .as_primitive::<TimestampMicrosecondType>()
                        .values(),
                );
            }
            (f, times.windows(2).all(|w| w[0] <= w[1]))
        })
        .collect()
}

/// A lake from 12 inputs ingested one transaction each: several files per day per table.
fn fragmented(t: &TestLake, lines_per_file: usize) -> u64 {
    let input = t.path("in");
    let total = make_inputs(&input, 12, lines_per_file);
    t.ok(&[
        "ingest",
        "--no-progress",
        "--txn-bytes",
        "1",
        input.to_str().unwrap(),
    ]);
    total
}

#[test]
fn small_files_become_one_per_day_with_every_row_kept() {
    let t = TestLake::new();
    let total = fragmented(&t, 400);
    let before = contents(&t);
    let logs_before = t.files(LOGS, ".parquet").len();
    let matches_before = t.files(MATCHES, ".parquet").len();
    assert!(logs_before >= 12 * 5, "{}", t.listing());

    let plan = t.ok(&["compact", "--dry-run"]);
    assert!(plan.contains("panther_logs.aws_s3serveraccess"), "{plan}");
    assert!(plan.contains(&logs_before.to_string()), "{plan}");
    assert_eq!(
        t.files(LOGS, ".parquet").len(),
        logs_before,
        "a dry run changes nothing"
    );

    let out = t.ok(&["compact"]);
    assert!(out.contains("panther_logs.aws_s3serveraccess"), "{out}");
    assert!(
        out.contains("panther_rule_matches.aws_s3serveraccess"),
        "{out}"
    );
    // The inputs cover five days: one file each.
    assert_eq!(t.files(LOGS, ".parquet").len(), 5, "{}", t.listing());
    // Rule matches: one file per day and rule, each rule's matches still apart.
    let rules_after = rules_per_file(&t);
    assert!(
        rules_after.len() < matches_before && rules_after.iter().all(|(_, n)| *n == 1),
        "{rules_after:?}"
    );
    let days_rules = t
        .csv(&format!(
            "SELECT count(*) FROM (SELECT DISTINCT year, month, day, p_rule_id FROM {})",
            MATCHES.replace('/', ".")
        ))
        .lines()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap();
    assert_eq!(rules_after.len(), days_rules, "{}", t.listing());
    for (f, sorted) in files_sorted(&t, LOGS)
        .into_iter()
        .chain(files_sorted(&t, MATCHES))
    {
        assert!(sorted, "{f} is not sorted by p_event_time");
    }
    assert_eq!(contents(&t), before);
    assert_eq!(counts(&t), (total, total));
    assert!(
        t.files("_seclake/staging", "").is_empty(),
        "{}",
        t.listing()
    );

    // Nothing left to merge; the ledger still knows every input.
    assert!(t.ok(&["compact"]).contains("nothing to compact"));
    let again = t.ok(&["ingest", "--no-progress", t.path("in").to_str().unwrap()]);
    assert!(again.contains("0 ingested, 12 skipped"), "{again}");
}

#[test]
fn target_rows_bounds_the_merged_files_and_names_select_tables() {
    let t = TestLake::new();
    let total = fragmented(&t, 400);
    let before = contents(&t);
    // About 80 rows per input file and day: groups of at most 200 rows hold two or three.
    let out = t.ok(&[
        "compact",
        "panther_logs.aws_s3serveraccess",
        "--target-rows",
        "200",
    ]);
    assert!(out.contains("panther_logs.aws_s3serveraccess"), "{out}");
    assert!(
        !out.contains("panther_rule_matches"),
        "only the named table: {out}"
    );
    let files = t.files(LOGS, ".parquet");
    assert!(files.len() > 5 && files.len() < 12 * 5, "{}", t.listing());
    assert_eq!(contents(&t), before);
    assert_eq!(counts(&t), (total, total));

    let err = t.run_code(&["compact", "no_such_table"], 2);
    assert!(err.is_empty());
    let out = t.run(&["compact", "aws_s3serveraccess", "no_such_table"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no_such_table") && stderr.contains("aws_s3serveraccess"),
        "{stderr}"
    );
}

#[test]
fn a_compaction_killed_at_random_points_never_loses_a_row() {
    let t = TestLake::new();
    let total = fragmented(&t, 3000);
    let before = contents(&t);
    let template = t.path("template");
    copy_dir(&t.lake(), &template);
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut killed = 0;
    for round in 0..8u64 {
        std::fs::remove_dir_all(t.lake()).unwrap();
        copy_dir(&template, &t.lake());
        let delay = Duration::from_millis(30 + next_random(&mut seed) % (100 + 60 * round));
        if kill_after(t.cmd(&["compact"]), delay) {
            killed += 1;
        }
        // Every visible file reads, and no row is missing (a kill between a new file's move
        // and its inputs' deletion can show rows twice until the next run rolls forward).
        let (rows, distinct) = counts(&t);
        assert_eq!(distinct, total, "round {round}\n{}", t.listing());
        assert!(rows >= total, "round {round}: {rows} rows\n{}", t.listing());
        // The next run finishes the job.
        t.ok(&["compact"]);
        assert_eq!(counts(&t), (total, total), "round {round}\n{}", t.listing());
        assert_eq!(contents(&t), before, "round {round}");
        assert_eq!(
            t.files(LOGS, ".parquet").len(),
            5,
            "round {round}\n{}",
            t.listing()
        );
    }
    assert!(killed >= 3, "only {killed} runs were killed mid-way");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn ingest_compact_merges_what_it_wrote() {
    let t = TestLake::new();
    let input = t.path("in");
    let total = make_inputs(&input, 12, 400);
    let out = t.ok(&[
        "ingest",
        "--no-progress",
        "--txn-bytes",
        "1",
        "--compact",
        input.to_str().unwrap(),
    ]);
    assert!(out.contains("files merged"), "{out}");
    assert_eq!(t.files(LOGS, ".parquet").len(), 5, "{}", t.listing());
    // Rule matches: a file per day and rule at most.
    let rules = rules_per_file(&t);
    assert!(rules.iter().all(|(_, n)| *n == 1), "{rules:?}");
    assert!(rules.len() <= 5 * 6, "{}", t.listing());
    assert_eq!(counts(&t), (total, total));
    // Nothing new: nothing written, nothing to compact.
    let again = t.ok(&[
        "ingest",
        "--no-progress",
        "--compact",
        input.to_str().unwrap(),
    ]);
    assert!(again.contains("0 ingested, 12 skipped"), "{again}");
    assert!(!again.contains("files merged"), "{again}");
}
