//! The lake's configuration file, `seclake.yml` at the lake root (or `--config FILE`).
//!
//! ```yaml
//! schemas_dirs: [./my-schemas]      # custom log types (schemas/*.yml format)
//! rules_dirs: [./my-rules]          # user rules, added to the shipped ones
//! queries_dirs: [./my-queries]      # user scheduled and saved queries
//! policies_dirs: [./my-policies]    # user posture policies
//! destinations:
//!   - name: console
//!     type: stdout                  # JSON lines on standard output
//!   - name: archive
//!     type: file
//!     path: /var/log/seclake/alerts.jsonl
//!   - name: soc-slack
//!     type: webhook
//!     url: https://hooks.slack.com/services/T000/B000/XXXX
//!     min_severity: MEDIUM
//!     timeout_secs: 10
//!     retries: 3
//! ```
//!
//! Everything is optional: with no file, alerts are stored in the lake and sent nowhere.
//! Unknown keys are errors. Webhook URLs are secrets: they are never printed (see
//! [`SecretUrl`]).

use std::path::PathBuf;

use serde::Deserialize;

use crate::detect::rule::Severity;
use crate::error::{Error, Result};
use crate::lake::Lake;

/// Name of the config file at the lake root.
pub const FILE_NAME: &str = "seclake.yml";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folders of custom log-type schemas (`*.yml`), added to the shipped ones; the same
    /// log type replaces.
    #[serde(default)]
    pub schemas_dirs: Vec<PathBuf>,
    /// Folders of user rules (`*.yml`), added to the shipped rules; same id replaces.
    #[serde(default)]
    pub rules_dirs: Vec<PathBuf>,
    /// Folders of user scheduled and saved queries (`*.yml`); same QueryName replaces.
    #[serde(default)]
    pub queries_dirs: Vec<PathBuf>,
    /// Folders of user posture policies (`*.yml`); same PolicyID replaces.
    #[serde(default)]
    pub policies_dirs: Vec<PathBuf>,
    /// Where alerts are sent.
    #[serde(default)]
    pub destinations: Vec<Destination>,
}

/// Where alerts go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Name rules refer to in `OutputIds`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: DestinationKind,
    /// File to append to (`file`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// URL to POST to (`webhook`).
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// Seconds per webhook request.
    #[serde(default = "ten")]
    pub timeout_secs: u64,
    /// Webhook attempts after the first, with exponential backoff.
    #[serde(default = "three")]
    pub retries: u32,
    /// Only alerts of at least this severity.
    #[serde(default)]
    pub min_severity: Option<Severity>,
}

/// Kinds of destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// One JSON line per alert on standard output.
    Stdout,
    /// One JSON line per alert appended to `path`.
    File,
    /// An HTTP POST per alert to `url` with a JSON body (Slack-compatible `text` plus the
    /// alert).
    Webhook,
}

fn ten() -> u64 {
    10
}
fn three() -> u32 {
    3
}

/// A URL that may hold a secret (token in path or query): shown as `scheme://host/…` only.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The full URL, for making the request only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What may be shown: scheme and host.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(u) => format!(
                "{}://{}{}/…",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Err(_) => "<invalid url>".into(),
        }
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Config {
    /// Parse config text; `file` names it in errors.
    pub fn from_yaml(file: &str, text: &str) -> Result<Self> {
        let c: Config = serde_yaml::from_str(text).map_err(|source| Error::Yaml {
            file: file.into(),
            source,
        })?;
        let mut names = std::collections::HashSet::new();
        for d in &c.destinations {
            if !names.insert(d.name.as_str()) {
                return Err(Error::invalid(format!(
                    "{file}: destination {:?} is defined twice",
                    d.name
                )));
            }
            let bad = |m: &str| {
                Err(Error::invalid(format!(
                    "{file}: destination {:?}: {m}",
                    d.name
                )))
            };
            match d.kind {
                DestinationKind::File if d.path.is_none() => return bad("type file needs a path"),
                DestinationKind::Webhook => match &d.url {
                    None => return bad("type webhook needs a url"),
                    Some(u) if url::Url::parse(u.expose()).is_err() => {
                        return bad("url is not a valid URL");
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(c)
    }

    /// `explicit` when given, else the lake's `seclake.yml`, else the defaults.
    pub async fn load(lake: &Lake, explicit: Option<&std::path::Path>) -> Result<Self> {
        if let Some(p) = explicit {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            return Self::from_yaml(&p.display().to_string(), &text);
        }
        match lake
            .get_opt(&object_store::path::Path::from(FILE_NAME))
            .await?
        {
            Some(b) => Self::from_yaml(
                &format!("{}{FILE_NAME}", lake.url()),
                &String::from_utf8_lossy(&b),
            ),
            None => Ok(Config::default()),
        }
    }

    /// Names of the destinations an alert of `severity` goes to, given a detection's own
    /// list (`None`: all).
    pub fn destinations_for(&self, severity: Severity, only: Option<&[String]>) -> Vec<String> {
        self.destinations
            .iter()
            .filter(|d| only.is_none_or(|o| o.contains(&d.name)))
            .filter(|d| d.min_severity.is_none_or(|m| severity >= m))
            .map(|d| d.name.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_hides_secrets() {
        let c = Config::from_yaml(
            "c.yml",
            "destinations:\n  - {name: a, type: stdout}\n  - name: s\n    type: webhook\n    url: https://hooks.example.com/services/SECRET?token=X\n    min_severity: high\n",
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SECRET") && !dbg.contains("token"), "{dbg}");
        assert!(dbg.contains("https://hooks.example.com/…"), "{dbg}");
        assert_eq!(c.destinations_for(Severity::Low, None), vec!["a"]);
        assert_eq!(c.destinations_for(Severity::High, None), vec!["a", "s"]);
        assert_eq!(
            c.destinations_for(Severity::High, Some(&["s".to_string()])),
            vec!["s"]
        );
        let e = Config::from_yaml("c.yml", "destinations:\n  - {name: a, type: pager}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.yml"), "{e}");
        assert!(Config::from_yaml("c.yml", "rule_dirs: []\n").is_err());
    }
}
