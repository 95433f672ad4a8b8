//! Resource snapshots of S3 buckets → `panther_cloudsecurity.aws_s3_bucket`.
//!
//! Input files hold one JSON document, a JSON array, JSON lines, or an AWS Config snapshot
//! (`{"configurationItems": [...]}`). Each resource is either Panther's `AWS.S3.Bucket` shape
//! (`AccountId`, `Arn`, `Region`, `Name`, `Owner`, `Tags`, `EncryptionRules`, `Grants`,
//! `LifecycleRules`, `LoggingPolicy`, `MFADelete`, `ObjectLockConfiguration`, `Policy`,
//! `PublicAccessBlockConfiguration`, `Versioning`, `TimeCreated`; keys matched
//! case-insensitively, any may be null) or an AWS Config configuration item of
//! `AWS::S3::Bucket`, which is translated to that shape. Nested settings are stored as JSON
//! text (query them with `json_get_*` and the bucket helper functions); one row per resource
//! and snapshot time, keyed by `resource_id` (the bucket ARN).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::schema::TIMESTAMP;

/// The resource type seclake knows.
pub const S3_BUCKET: &str = "AWS.S3.Bucket";
/// Its table in `panther_cloudsecurity`.
pub const S3_BUCKET_TABLE: &str = "aws_s3_bucket";

/// JSON-text columns, in order, with the Panther key each comes from.
const JSON_COLUMNS: [(&str, &str); 9] = [
    ("owner", "Owner"),
    ("tags", "Tags"),
    ("encryption_rules", "EncryptionRules"),
    ("grants", "Grants"),
    ("lifecycle_rules", "LifecycleRules"),
    ("logging_policy", "LoggingPolicy"),
    ("object_lock_configuration", "ObjectLockConfiguration"),
    (
        "public_access_block_configuration",
        "PublicAccessBlockConfiguration",
    ),
    ("policy", "Policy"),
];

/// Plain string columns and their Panther keys.
const STRING_COLUMNS: [(&str, &str); 6] = [
    ("account_id", "AccountId"),
    ("region", "Region"),
    ("name", "Name"),
    ("arn", "Arn"),
    ("mfa_delete", "MFADelete"),
    ("versioning", "Versioning"),
];

/// Schema of `panther_cloudsecurity.aws_s3_bucket`.
pub fn bucket_schema() -> SchemaRef {
    let mut f = vec![
        Field::new("resource_id", DataType::Utf8, false),
        Field::new("resource_type", DataType::Utf8, false),
    ];
    f.extend(
        STRING_COLUMNS
            .iter()
            .map(|(c, _)| Field::new(*c, DataType::Utf8, true)),
    );
    f.extend(
        JSON_COLUMNS
            .iter()
            .map(|(c, _)| Field::new(*c, DataType::Utf8, true)),
    );
    f.extend([
        Field::new("time_created", DataType::Utf8, true),
        Field::new("snapshot_time", TIMESTAMP, false),
        Field::new("source_format", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new("p_row_id", DataType::Utf8, false),
        Field::new("p_event_time", TIMESTAMP, false),
        Field::new("p_parse_time", TIMESTAMP, false),
        Field::new("p_source_id", DataType::Utf8, false),
        Field::new("p_source_label", DataType::Utf8, false),
    ]);
    Arc::new(Schema::new(f))
}

/// A key of an object, case-insensitively.
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn non_null(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// True when `head` (a file's first bytes) looks like a resource snapshot rather than a log:
/// an AWS Config snapshot (`configurationItems`), or a JSON object with an ARN and S3 bucket
/// settings in Panther's `AWS.S3.Bucket` shape. Keys are matched case-insensitively.
pub fn looks_like_snapshot(head: &[u8]) -> bool {
    let trimmed = head.trim_ascii_start();
    if !matches!(trimmed.first(), Some(b'{' | b'[')) {
        return false;
    }
    let lower = trimmed.to_ascii_lowercase();
    let has = |key: &str| memchr::memmem::find(&lower, key.as_bytes()).is_some();
    has("\"configurationitems\"")
        || (has("\"arn\"")
            && [
                "\"encryptionrules\"",
                "\"publicaccessblockconfiguration\"",
                "\"grants\"",
            ]
            .iter()
            .any(|k| has(k)))
}

/// The resources in a file's text: a document, an array, JSON lines, or a Config snapshot.
pub fn documents(text: &str, file: &str) -> Result<Vec<Value>> {
    // A byte-order mark (Windows tools) is not JSON.
    let text = crate::parse::strip_bom_str(text);
    let docs: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(a)) => a,
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|source| Error::Json {
                    context: format!("{file}: line {}", i + 1),
                    source,
                })
            })
            .collect::<Result<_>>()?,
    };
    let mut out = Vec::new();
    for d in docs {
        match non_null(get(&d, "configurationItems")) {
            Some(Value::Array(items)) => out.extend(items.iter().cloned()),
            _ => out.push(d),
        }
    }
    Ok(out)
}

/// A resource in Panther's `AWS.S3.Bucket` shape, translating an AWS Config item; `None`
/// for documents of other resource types.
pub fn normalize(doc: &Value) -> Result<Option<(Value, &'static str)>, String> {
    if !doc.is_object() {
        return Err("a resource must be a JSON object".into());
    }
    if let Some(rt) = get(doc, "resourceType").and_then(Value::as_str) {
        if rt == "AWS::S3::Bucket" {
            return Ok(Some((from_config(doc), "aws_config")));
        }
        if rt.contains("::") || rt != S3_BUCKET {
            return Ok(None);
        }
    }
    if get(doc, "Arn").is_none() && get(doc, "Name").is_none() {
        return Err("neither Arn nor Name: not an S3 bucket snapshot".into());
    }
    Ok(Some((doc.clone(), "panther")))
}

/// A JSON value that Config sometimes stores as a JSON string.
fn parsed(v: Option<&Value>) -> Option<Value> {
    match non_null(v)? {
        Value::String(s) => serde_json::from_str(s)
            .ok()
            .or(Some(Value::String(s.clone()))),
        v => Some(v.clone()),
    }
}

fn from_config(item: &Value) -> Value {
    let sup = get(item, "supplementaryConfiguration")
        .cloned()
        .unwrap_or(Value::Null);
    let conf = parsed(get(item, "configuration")).unwrap_or(Value::Null);
    let s = |v: &Value, k: &str| get(v, k).cloned().unwrap_or(Value::Null);
    let encryption = parsed(get(&sup, "ServerSideEncryptionConfiguration")).map(|e| {
        let rules = get(&e, "rules").cloned().unwrap_or(json!([]));
        Value::Array(
            rules
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            let d = get(r, "applyServerSideEncryptionByDefault")
                                .cloned()
                                .unwrap_or(Value::Null);
                            json!({"ApplyServerSideEncryptionByDefault": {
                                "SSEAlgorithm": s(&d, "sseAlgorithm"),
                                "KMSMasterKeyID": s(&d, "kmsMasterKeyID"),
                            }})
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    });
    let versioning = parsed(get(&sup, "BucketVersioningConfiguration"));
    let status = versioning
        .as_ref()
        .and_then(|v| get(v, "status"))
        .and_then(Value::as_str)
        .filter(|s| *s != "Off")
        .map(str::to_string);
    let mfa = versioning
        .as_ref()
        .and_then(|v| get(v, "isMfaDeleteEnabled"))
        .map(|v| {
            if v.as_bool() == Some(true) {
                "Enabled"
            } else {
                "Disabled"
            }
        });
    let logging = parsed(get(&sup, "BucketLoggingConfiguration"))
        .filter(|l| non_null(get(l, "destinationBucketName")).is_some())
        .map(|l| json!({"TargetBucket": s(&l, "destinationBucketName"), "TargetPrefix": s(&l, "logFilePrefix")}));
    let pab = parsed(get(&sup, "PublicAccessBlockConfiguration")).map(|p| {
        json!({
            "BlockPublicAcls": s(&p, "blockPublicAcls"),
            "IgnorePublicAcls": s(&p, "ignorePublicAcls"),
            "BlockPublicPolicy": s(&p, "blockPublicPolicy"),
            "RestrictPublicBuckets": s(&p, "restrictPublicBuckets"),
        })
    });
    let policy = parsed(get(&sup, "BucketPolicy")).and_then(|p| {
        get(&p, "policyText")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let lock = parsed(get(&sup, "ObjectLockConfiguration"))
        .map(|o| json!({"ObjectLockEnabled": s(&o, "objectLockEnabled"), "Rule": s(&o, "rule")}));
    json!({
        "AccountId": s(item, "awsAccountId"),
        "Arn": s(item, "ARN"),
        "Region": s(item, "awsRegion"),
        "Name": get(item, "resourceName").cloned().unwrap_or_else(|| s(&conf, "name")),
        "Owner": s(&conf, "owner"),
        "Tags": s(item, "tags"),
        "EncryptionRules": encryption,
        "Grants": parsed(get(&sup, "AccessControlList")),
        "LoggingPolicy": logging,
        "MFADelete": mfa,
        "ObjectLockConfiguration": lock,
        "Policy": policy,
        "PublicAccessBlockConfiguration": pab,
        "Versioning": status,
        "TimeCreated": s(&conf, "creationDate"),
        "SnapshotTime": s(item, "configurationItemCaptureTime"),
    })
}

fn text(v: Option<&Value>) -> Option<String> {
    match non_null(v)? {
        Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

/// Where a resource came from, for the standard fields.
pub struct Origin<'a> {
    pub source_id: &'a str,
    pub label: &'a str,
    /// Snapshot time when the document has none (the file's modification time).
    pub default_time: i64,
    pub parse_time: i64,
}

/// Normalized resources as a batch of [`bucket_schema`]. `docs` are (document, format) pairs.
pub fn to_batch(docs: &[(Value, &str)], origin: &Origin<'_>) -> Result<RecordBatch> {
    let n = docs.len();
    let mut cols: Vec<ArrayRef> = Vec::new();
    let arn = |d: &Value| {
        text(get(d, "Arn")).or_else(|| text(get(d, "Name")).map(|n| format!("arn:aws:s3:::{n}")))
    };
    cols.push(Arc::new(
        docs.iter()
            .map(|(d, _)| Some(arn(d).unwrap_or_default()))
            .collect::<StringArray>(),
    ));
    cols.push(Arc::new(StringArray::from(vec![S3_BUCKET; n])));
    for (_, key) in STRING_COLUMNS {
        cols.push(Arc::new(
            docs.iter()
                .map(|(d, _)| text(get(d, key)))
                .collect::<StringArray>(),
        ));
    }
    for (_, key) in JSON_COLUMNS {
        // The bucket policy is a JSON document in a string; keep it as that string.
        cols.push(Arc::new(
            docs.iter()
                .map(|(d, _)| text(get(d, key)))
                .collect::<StringArray>(),
        ));
    }
    cols.push(Arc::new(
        docs.iter()
            .map(|(d, _)| text(get(d, "TimeCreated")))
            .collect::<StringArray>(),
    ));
    let times: Vec<i64> = docs
        .iter()
        .map(|(d, _)| {
            get(d, "SnapshotTime")
                .and_then(Value::as_str)
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map_or(origin.default_time, |t| t.timestamp_micros())
        })
        .collect();
    cols.push(Arc::new(TimestampMicrosecondArray::from(times.clone())));
    cols.push(Arc::new(
        docs.iter().map(|(_, f)| Some(*f)).collect::<StringArray>(),
    ));
    cols.push(Arc::new(
        docs.iter()
            .map(|(d, _)| Some(d.to_string()))
            .collect::<StringArray>(),
    ));
    cols.push(Arc::new(
        (0..n)
            .map(|i| Some(format!("{}-{i:06}", origin.source_id)))
            .collect::<StringArray>(),
    ));
    cols.push(Arc::new(TimestampMicrosecondArray::from(times)));
    cols.push(Arc::new(TimestampMicrosecondArray::from(
        vec![origin.parse_time; n],
    )));
    cols.push(Arc::new(StringArray::from(vec![origin.source_id; n])));
    cols.push(Arc::new(StringArray::from(vec![origin.label; n])));
    Ok(RecordBatch::try_new(bucket_schema(), cols)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_told_from_logs() {
        for snapshot in [
            r#"{"fileVersion": "1.0", "configurationItems": [{"resourceType": "AWS::S3::Bucket"}]}"#,
            r#"[{"arn": "arn:aws:s3:::b", "Name": "b", "EncryptionRules": null}]"#,
            "  \n{\"Arn\": \"arn:aws:s3:::b\", \"Grants\": []}\n{\"Arn\": \"arn:aws:s3:::c\"}",
        ] {
            assert!(looks_like_snapshot(snapshot.as_bytes()), "{snapshot}");
        }
        for log in [
            r#"{"Records": [{"eventSource": "s3.amazonaws.com", "resources": [{"ARN": "arn:aws:s3:::b"}]}]}"#,
            r#"{"version":"1","api":{"name":"PutObject","bucket":"b"}}"#,
            "79a59df9 awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3 - 3E57427F3EXAMPLE",
            "",
        ] {
            assert!(!looks_like_snapshot(log.as_bytes()), "{log}");
        }
    }

    #[test]
    fn config_items_become_the_panther_shape() {
        let item = serde_json::json!({
            "configurationItemCaptureTime": "2020-05-12T10:00:00.000Z",
            "resourceType": "AWS::S3::Bucket", "resourceName": "b", "ARN": "arn:aws:s3:::b",
            "awsRegion": "us-east-1", "awsAccountId": "123456789012",
            "configuration": {"name": "b", "owner": {"id": "o"}, "creationDate": "2019-01-01T00:00:00.000Z"},
            "supplementaryConfiguration": {
                "AccessControlList": "{\"grantList\":[{\"grantee\":\"AllUsers\",\"permission\":\"Read\"}]}",
                "BucketVersioningConfiguration": {"status": "Enabled", "isMfaDeleteEnabled": false},
                "ServerSideEncryptionConfiguration": {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
                "BucketPolicy": {"policyText": "{\"Statement\":[]}"}
            },
            "tags": {"env": "prod"}
        });
        let (b, format) = normalize(&item).unwrap().unwrap();
        assert_eq!(format, "aws_config");
        assert_eq!(b["Versioning"], "Enabled");
        assert_eq!(b["MFADelete"], "Disabled");
        assert_eq!(
            b["EncryptionRules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
            "AES256"
        );
        assert_eq!(b["Grants"]["grantList"][0]["grantee"], "AllUsers");
        assert_eq!(b["Policy"], "{\"Statement\":[]}");
        assert!(b["LoggingPolicy"].is_null() && b["PublicAccessBlockConfiguration"].is_null());
        let other = serde_json::json!({"resourceType": "AWS::EC2::Instance"});
        assert!(normalize(&other).unwrap().is_none());
        assert!(normalize(&serde_json::json!({"x": 1})).is_err());
    }
}
