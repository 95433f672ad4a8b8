//! S3: `s3://` locations and the stores that reach them, configured the way the AWS CLI is.
//!
//! Settings are resolved per setting, first match wins:
//!
//! | setting      | from                                                                       |
//! |--------------|----------------------------------------------------------------------------|
//! | endpoint     | `--s3-endpoint`, `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, profile `endpoint_url` |
//! | region       | `AWS_REGION`/`AWS_DEFAULT_REGION`, profile `region`, `us-east-1`           |
//! | credentials  | `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, the profile's keys (`~/.aws/credentials`, then `~/.aws/config`), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`), ECS container credentials, EC2 instance metadata |
//! | addressing   | path style with a custom endpoint, else the profile's `s3.addressing_style`, else virtual-hosted |
//!
//! The profile is `AWS_PROFILE` (an error when it does not exist), else `default` when the
//! files have one. object_store reads the environment but not profiles, so profiles are read
//! here ([`Profile`]). Profiles that need a call to resolve (`role_arn`, `sso_*`,
//! `credential_process`) are refused with a message saying how to export their credentials.
//!
//! Secrets never leave this module in text: [`Profile`]'s `Debug` hides them, and errors name
//! the profile and file, never a key.
//!
//! Every request is retried on 5xx, throttling and dropped connections with exponential
//! backoff ([`S3Settings::retries`] attempts), as object_store does for its own clients.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

/// How to reach S3, from the command line; everything else comes from the environment and
/// the AWS config files.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible store (`http://127.0.0.1:9000`); path-style addressing.
    pub endpoint: Option<String>,
    /// Retries of a failed request (5xx, throttling, dropped connection) before giving up.
    pub retries: usize,
    /// Seconds before a request with no response fails (and is retried).
    pub timeout_secs: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            retries: 10,
            timeout_secs: 30,
        }
    }
}

/// An `s3://bucket/key` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// The key or prefix, without a leading `/`; may be empty or end with `/`.
    pub key: String,
}

impl S3Url {
    /// Parse `s3://bucket[/key]`; `None` when `text` is not an `s3://` URL.
    pub fn parse(text: &str) -> Option<Result<Self>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(Error::invalid(format!("{text}: no bucket name"))));
        }
        Some(Ok(S3Url {
            bucket: bucket.into(),
            key: key.into(),
        }))
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// One S3 store per bucket, built on first use and shared.
#[derive(Debug)]
pub struct Stores {
    settings: S3Settings,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    pub fn new(settings: S3Settings) -> Self {
        Stores {
            settings,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The store of `bucket`, with keys relative to the bucket.
    pub fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        let mut map = self.buckets.lock().expect("not poisoned");
        if let Some(s) = map.get(bucket) {
            return Ok(s.clone());
        }
        let env: HashMap<String, String> = std::env::vars().collect();
        let store: Arc<dyn ObjectStore> = Arc::new(
            builder(&self.settings, bucket, &env)?
                .build()
                .map_err(|e| Error::invalid(format!("s3://{bucket}: {e}")))?,
        );
        map.insert(bucket.to_string(), store.clone());
        Ok(store)
    }
}

/// The object_store builder for `bucket`, from settings, environment and profile.
fn builder(
    settings: &S3Settings,
    bucket: &str,
    env: &HashMap<String, String>,
) -> Result<AmazonS3Builder> {
    let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket);
    // object_store's own environment keys (credentials, web identity, container, IMDS, ...);
    // the endpoint is resolved below, where the flag must win over the environment.
    for (k, v) in env {
        if k.starts_with("AWS_")
            && !k.starts_with("AWS_ENDPOINT")
            && !v.is_empty()
            && let Ok(key) = k.to_ascii_lowercase().parse()
        {
            b = b.with_config(key, v);
        }
    }
    let profile = Profile::resolve(env)?;
    let env_keys = var("AWS_ACCESS_KEY_ID").is_some();
    if let Some(p) = &profile {
        if !env_keys {
            if let Some(why) = p.unresolvable {
                return Err(Error::invalid(format!(
                    "AWS profile {:?} uses {why}, which seclake does not resolve; export its \
                     credentials instead (`eval \"$(aws configure export-credentials --profile {} --format env)\"`)",
                    p.name, p.name
                )));
            }
            if let (Some(id), Some(secret)) = (&p.access_key_id, &p.secret_access_key) {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
                if let Some(t) = &p.session_token {
                    b = b.with_token(t);
                }
            }
        }
        if var("AWS_REGION").or(var("AWS_DEFAULT_REGION")).is_none()
            && let Some(r) = &p.region
        {
            b = b.with_region(r);
        }
    }
    let endpoint = settings
        .endpoint
        .clone()
        .or(var("AWS_ENDPOINT_URL_S3"))
        .or(var("AWS_ENDPOINT_URL"))
        .or(profile.as_ref().and_then(|p| p.endpoint_url.clone()));
    let virtual_hosted = match &endpoint {
        Some(e) => {
            b = b.with_endpoint(e);
            profile.as_ref().and_then(|p| p.addressing_style.as_deref()) == Some("virtual")
        }
        None => profile.as_ref().and_then(|p| p.addressing_style.as_deref()) != Some("path"),
    };
    b = b.with_virtual_hosted_style_request(virtual_hosted);
    let mut client = ClientOptions::new()
        .with_timeout(Duration::from_secs(settings.timeout_secs))
        .with_connect_timeout(Duration::from_secs(10));
    if endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
    {
        client = client.with_allow_http(true);
    }
    Ok(b.with_client_options(client).with_retry(RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: settings.retries,
        retry_timeout: Duration::from_secs(180),
    }))
}

/// The settings of one AWS profile, from the shared config and credentials files.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// `path` or `virtual`, from the `s3 =` sub-section.
    pub addressing_style: Option<String>,
    /// A setting that needs a call to resolve credentials (`role_arn`, `sso_session`, ...).
    pub unresolvable: Option<&'static str>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hide = |o: &Option<String>| o.as_ref().map(|_| "******");
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hide(&self.secret_access_key))
            .field("session_token", &hide(&self.session_token))
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("addressing_style", &self.addressing_style)
            .field("unresolvable", &self.unresolvable)
            .finish()
    }
}

impl Profile {
    /// The profile to use: `AWS_PROFILE` (which must exist), else `default` if the files
    /// define it, else none.
    pub fn resolve(env: &HashMap<String, String>) -> Result<Option<Profile>> {
        let var = |k: &str| env.get(k).filter(|v| !v.is_empty());
        let home = var("HOME").map(PathBuf::from);
        let file = |var_name: &str, default: &str| -> Option<PathBuf> {
            var(var_name)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
        };
        let read = |p: &Option<PathBuf>| -> Result<Option<(PathBuf, String)>> {
            let Some(p) = p else { return Ok(None) };
            match std::fs::read_to_string(p) {
                Ok(t) => Ok(Some((p.clone(), t))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(p, e)),
            }
        };
        let config = read(&file("AWS_CONFIG_FILE", "config"))?;
        let credentials = read(&file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))?;
        let (name, explicit) = match var("AWS_PROFILE") {
            Some(n) => (n.as_str(), true),
            None => ("default", false),
        };
        let found = Profile::from_files(
            name,
            config.as_ref().map(|(_, t)| t.as_str()),
            credentials.as_ref().map(|(_, t)| t.as_str()),
        );
        if found.is_none() && explicit {
            let files: Vec<String> = [&config, &credentials]
                .into_iter()
                .flatten()
                .map(|(p, _)| p.display().to_string())
                .collect();
            return Err(Error::invalid(format!(
                "AWS_PROFILE={name}: no such profile in {}",
                if files.is_empty() {
                    "(no AWS config or credentials file)".to_string()
                } else {
                    files.join(" or ")
                }
            )));
        }
        Ok(found)
    }

    /// Profile `name` from the texts of the config file (sections `[profile name]`, or
    /// `[default]`) and the credentials file (sections `[name]`); credentials-file values
    /// win. `None` when neither defines it.
    pub fn from_files(name: &str, config: Option<&str>, credentials: Option<&str>) -> Option<Self> {
        let config_section = if name == "default" {
            "default".to_string()
        } else {
            format!("profile {name}")
        };
        let mut values: HashMap<String, String> = HashMap::new();
        let mut found = false;
        if let Some(c) = config.and_then(|t| ini_section(t, &config_section)) {
            found = true;
            values.extend(c);
        }
        if let Some(c) = credentials.and_then(|t| ini_section(t, name)) {
            found = true;
            values.extend(c);
        }
        if !found {
            return None;
        }
        let get = |k: &str| values.get(k).cloned();
        let unresolvable = [
            "role_arn",
            "sso_session",
            "sso_start_url",
            "credential_process",
        ]
        .into_iter()
        .find(|k| values.contains_key(*k) && !values.contains_key("aws_access_key_id"));
        Some(Profile {
            name: name.into(),
            access_key_id: get("aws_access_key_id"),
            secret_access_key: get("aws_secret_access_key"),
            session_token: get("aws_session_token"),
            region: get("region"),
            endpoint_url: get("s3.endpoint_url").or(get("endpoint_url")),
            addressing_style: get("s3.addressing_style"),
            unresolvable,
        })
    }
}

/// The `key = value` pairs of section `[name]` of an AWS-style INI text, keys lower-cased;
/// nested settings (`s3 =` followed by indented lines) come as `s3.key`. `None` when the
/// section does not exist.
fn ini_section(text: &str, name: &str) -> Option<HashMap<String, String>> {
    let mut out = None::<HashMap<String, String>>;
    let mut in_section = false;
    let mut parent: Option<String> = None;
    for raw in text.lines() {
        // Comments: whole lines, or after whitespace (values such as keys may hold `#`).
        let line = match raw.find(" ;").into_iter().chain(raw.find(" #")).min() {
            Some(at) => &raw[..at],
            None => raw,
        }
        .trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with(['#', ';']) {
            continue;
        }
        if let Some(header) = line.trim().strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            in_section = header.split_whitespace().collect::<Vec<_>>().join(" ") == name;
            if in_section {
                out.get_or_insert_with(HashMap::new);
            }
            parent = None;
            continue;
        }
        if !in_section {
            continue;
        }
        let nested = line.starts_with([' ', '\t']);
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        let map = out.as_mut().expect("section opened");
        match (&parent, nested) {
            (Some(p), true) => {
                map.insert(format!("{p}.{k}"), v);
            }
            _ if v.is_empty() => parent = Some(k),
            _ => {
                parent = None;
                map.insert(k, v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
[default]
region = eu-west-1

[profile minio]
region=us-east-2
endpoint_url = http://127.0.0.1:9000 ; local
s3 =
  addressing_style = path

[profile  assumed]
role_arn = arn:aws:iam::123456789012:role/Audit
source_profile = default
";
    const CREDENTIALS: &str = "\
# keys
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = s3cr3t

[minio]
aws_access_key_id=minioadmin
aws_secret_access_key=minioadmin
aws_session_token=tok
";

    #[test]
    fn profiles_merge_config_and_credentials() {
        let d = Profile::from_files("default", Some(CONFIG), Some(CREDENTIALS)).unwrap();
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        assert_eq!(d.access_key_id.as_deref(), Some("AKIADEFAULT"));
        assert_eq!(d.secret_access_key.as_deref(), Some("s3cr3t"));
        let m = Profile::from_files("minio", Some(CONFIG), Some(CREDENTIALS)).unwrap();
        assert_eq!(m.region.as_deref(), Some("us-east-2"));
        assert_eq!(m.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(m.addressing_style.as_deref(), Some("path"));
        assert_eq!(m.session_token.as_deref(), Some("tok"));
        let a = Profile::from_files("assumed", Some(CONFIG), None).unwrap();
        assert_eq!(a.unresolvable, Some("role_arn"));
        assert!(Profile::from_files("nope", Some(CONFIG), Some(CREDENTIALS)).is_none());
    }

    #[test]
    fn debug_hides_secrets() {
        let m = Profile::from_files("minio", Some(CONFIG), Some(CREDENTIALS)).unwrap();
        let shown = format!("{m:?}");
        assert!(!shown.contains("tok\"") && !shown.contains("minioadmin\", secret"));
        let d = Profile::from_files("default", Some(CONFIG), Some(CREDENTIALS)).unwrap();
        assert!(!format!("{d:?}").contains("s3cr3t"));
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_named_profile_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), CONFIG).unwrap();
        let env = env(&[
            ("AWS_PROFILE", "prod"),
            (
                "AWS_CONFIG_FILE",
                dir.path().join("config").to_str().unwrap(),
            ),
            ("HOME", "/nonexistent"),
        ]);
        let e = Profile::resolve(&env).unwrap_err().to_string();
        assert!(
            e.contains("AWS_PROFILE=prod") && e.contains("config"),
            "{e}"
        );
    }

    #[test]
    fn role_profiles_are_refused_with_a_way_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), CONFIG).unwrap();
        let env = env(&[
            ("AWS_PROFILE", "assumed"),
            (
                "AWS_CONFIG_FILE",
                dir.path().join("config").to_str().unwrap(),
            ),
        ]);
        let e = builder(&S3Settings::default(), "b", &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("role_arn") && e.contains("export-credentials"),
            "{e}"
        );
    }

    #[test]
    fn urls() {
        let u = S3Url::parse("s3://logs/a/b/").unwrap().unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("logs", "a/b/"));
        let u = S3Url::parse("s3://logs").unwrap().unwrap();
        assert_eq!(u.key, "");
        assert!(S3Url::parse("s3:///x").unwrap().is_err());
        assert!(S3Url::parse("/tmp/x").is_none());
    }
}
