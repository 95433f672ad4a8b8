//! `seclake resources ingest` and `seclake policies list | test | eval`.

use std::io::Write;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::error::{Error, Result};
use crate::policy::{self, Policy};

use super::{Ctx, Outcome};

/// Resource snapshot commands.
#[derive(Debug, clap::Subcommand)]
pub enum ResourcesCommand {
    /// Store S3 bucket snapshots (Panther's AWS.S3.Bucket JSON, or AWS Config snapshot files /
    /// configuration items) in panther_cloudsecurity.aws_s3_bucket; each file once.
    #[command(after_help = "Examples:
  seclake resources ingest ./snapshots/
  seclake resources ingest config-snapshot.json
  seclake resources ingest data/resources/        # the bundled sample")]
    Ingest {
        /// Files, folders or globs of JSON (a document, an array, JSON lines, or
        /// {\"configurationItems\": [...]}).
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

/// Policy commands.
#[derive(Debug, clap::Subcommand)]
pub enum PoliciesCommand {
    /// List policies: id, enabled, severity, resource types, suppressions, tests.
    List,
    /// Run every policy's embedded tests (exit 2 when one fails).
    Test {
        /// Only these policies (repeatable).
        #[arg(long = "policy", value_name = "ID")]
        policies: Vec<String>,
    },
    /// Evaluate policies over the newest snapshot of each resource, store the results in
    /// panther_cloudsecurity.compliance and alert on failures. Exit 1 when something fails.
    #[command(after_help = "Examples:
  seclake policies eval
  seclake query \"SELECT * FROM panther_cloudsecurity.compliance WHERE status = 'FAIL'\"")]
    Eval {
        /// Only these policies (repeatable); disabled policies run when named.
        #[arg(long = "policy", value_name = "ID")]
        policies: Vec<String>,
    },
}

/// Every policy: shipped, the config's `policies_dirs`, then `--policies`.
fn all_policies(ctx: &Ctx) -> Result<Vec<std::sync::Arc<Policy>>> {
    policy::load(&ctx.policy_dirs())
}

/// The policies named in `only`, or every enabled one.
fn policies(ctx: &Ctx, only: &[String]) -> Result<Vec<std::sync::Arc<Policy>>> {
    let all = all_policies(ctx)?;
    let wanted =
        crate::detect::named_ids(&all, |p| &p.id, only, ("policy", "seclake policies list"))?;
    Ok(all
        .into_iter()
        .filter(|p| {
            if only.is_empty() {
                p.enabled
            } else {
                wanted.contains(&p.id)
            }
        })
        .collect())
}

pub async fn resources(ctx: &Ctx, cmd: ResourcesCommand) -> Result<Outcome> {
    let ResourcesCommand::Ingest { paths } = cmd;
    let s = policy::ingest_resources(&ctx.lake, &paths).await?;
    writeln!(
        std::io::stdout().lock(),
        "files: {} ingested, {} skipped (already ingested); resources: {} S3 buckets stored, {} of other types ignored",
        s.files, s.skipped, s.resources, s.other_types
    )
    .map_err(|e| Error::io("stdout", e))?;
    Ok(Outcome::Ok)
}

pub async fn run(ctx: &Ctx, cmd: PoliciesCommand) -> Result<Outcome> {
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io("stdout", e);
    match cmd {
        PoliciesCommand::List => {
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header([
                "policy",
                "enabled",
                "severity",
                "resource types",
                "suppressions",
                "tests",
            ]);
            for p in all_policies(ctx)? {
                t.add_row([
                    p.id.clone(),
                    if p.enabled { "yes" } else { "no" }.into(),
                    p.severity.to_string(),
                    p.resource_types.join(", "),
                    p.suppressions.len().to_string(),
                    p.tests.len().to_string(),
                ]);
            }
            writeln!(out, "{t}").map_err(io)?;
            Ok(Outcome::Ok)
        }
        PoliciesCommand::Test { policies: only } => {
            // Tests run for disabled policies too.
            let all = if only.is_empty() {
                all_policies(ctx)?
            } else {
                policies(ctx, &only)?
            };
            let results = policy::run_tests(&all);
            super::print_tests(
                &mut out,
                "policies",
                all.len(),
                results
                    .iter()
                    .map(|r| (r.policy.as_str(), r.test.as_str(), r.failure.as_deref())),
            )
        }
        PoliciesCommand::Eval { policies: only } => {
            let selected = policies(ctx, &only)?;
            let s =
                policy::evaluate(&ctx.lake, ctx.registry.clone(), &selected, &ctx.config).await?;
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(["policy", "severity", "pass", "fail", "error", "suppressed"]);
            let mut any_fail = false;
            for (id, (sev, c)) in &s.by_policy {
                any_fail |= c.fail > 0 || c.error > 0;
                t.add_row([
                    id.clone(),
                    sev.to_string(),
                    c.pass.to_string(),
                    c.fail.to_string(),
                    c.error.to_string(),
                    c.suppressed.to_string(),
                ]);
            }
            writeln!(out, "{t}").map_err(io)?;
            writeln!(
                out,
                "{} resources, {} policies; alerts raised: {}",
                s.resources,
                selected.len(),
                s.alerts_raised
            )
            .map_err(io)?;
            if s.resources == 0 {
                writeln!(
                    out,
                    "no bucket snapshots in this lake yet: store some with `seclake resources \
                     ingest PATH` (data/resources/ holds a sample)"
                )
                .map_err(io)?;
            }
            for (p, r, e) in &s.errors {
                writeln!(out, "error: {p} on {r}: {e}").map_err(io)?;
            }
            super::ingest::print_delivery(&mut out, &s.delivery).map_err(io)?;
            Ok(if any_fail {
                Outcome::Found
            } else {
                Outcome::Ok
            })
        }
    }
}
