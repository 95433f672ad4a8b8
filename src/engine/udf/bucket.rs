//! Helpers for S3 bucket policies and ACLs, over their JSON text (as resource snapshots store
//! them): `grants_allow_public(grants, permission)`, `policy_denies_insecure_transport(policy)`
//! and `policy_allows_public(policy)`. NULL in, NULL out; JSON that does not parse gives NULL.

use std::sync::{Arc, OnceLock};

use arrow::array::BooleanArray;
use arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

use super::{expect_args, scalar_str, section, strings};

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";

/// Look a key up case-insensitively (snapshots spell keys `Grantee`, AWS Config `grantee`).
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        v => vec![v],
    }
}

/// Whether an ACL grant list gives AllUsers or AuthenticatedUsers `permission` (or
/// FULL_CONTROL). Accepts Panther's `[{Grantee: {URI}, Permission}]` and AWS Config's
/// `{grantList: [{grantee: "AllUsers" | {id}, permission: "Read"}]}`.
pub fn grants_allow_public(grants: &Value, permission: &str) -> bool {
    let list = get(grants, "grantList").map_or_else(|| as_list(grants), as_list);
    list.iter().any(|g| {
        let perm = get(g, "Permission").and_then(Value::as_str).unwrap_or("");
        let perm_ok = perm.eq_ignore_ascii_case(permission)
            || perm.eq_ignore_ascii_case("FULL_CONTROL")
            || perm.eq_ignore_ascii_case("FullControl");
        let grantee = get(g, "Grantee");
        let public = match grantee {
            Some(Value::String(s)) => s == "AllUsers" || s == "AuthenticatedUsers",
            Some(o) => get(o, "URI")
                .and_then(Value::as_str)
                .is_some_and(|u| u == ALL_USERS || u == AUTHENTICATED_USERS),
            None => false,
        };
        perm_ok && public
    })
}

fn statements(policy: &Value) -> Vec<&Value> {
    get(policy, "Statement").map(as_list).unwrap_or_default()
}

fn is_star_principal(s: &Value) -> bool {
    match get(s, "Principal") {
        Some(Value::String(p)) => p == "*",
        Some(p @ Value::Object(_)) => {
            get(p, "AWS").is_some_and(|a| as_list(a).iter().any(|v| v.as_str() == Some("*")))
        }
        _ => false,
    }
}

/// Whether a bucket policy denies, to everyone, requests without TLS
/// (`"Condition": {"Bool": {"aws:SecureTransport": "false"}}`).
pub fn policy_denies_insecure_transport(policy: &Value) -> bool {
    statements(policy).iter().any(|s| {
        let deny = get(s, "Effect").and_then(Value::as_str) == Some("Deny");
        let insecure = get(s, "Condition")
            .and_then(|c| get(c, "Bool"))
            .and_then(|b| get(b, "aws:SecureTransport"))
            .is_some_and(|v| matches!(v, Value::Bool(false)) || v.as_str() == Some("false"));
        deny && insecure && is_star_principal(s)
    })
}

/// Whether a bucket policy allows `*` principals without any condition.
pub fn policy_allows_public(policy: &Value) -> bool {
    statements(policy).iter().any(|s| {
        get(s, "Effect").and_then(Value::as_str) == Some("Allow")
            && is_star_principal(s)
            && get(s, "Condition").is_none_or(|c| c.as_object().is_some_and(|o| o.is_empty()))
    })
}

/// Which helper a [`BucketCheck`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    GrantsAllowPublic,
    DeniesInsecureTransport,
    AllowsPublic,
}

/// One of the bucket helper functions.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BucketCheck {
    check: Check,
    signature: Signature,
}

impl BucketCheck {
    pub fn new(check: Check) -> Self {
        let args = if check == Check::GrantsAllowPublic {
            2
        } else {
            1
        };
        BucketCheck {
            check,
            signature: Signature::string(args, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for BucketCheck {
    fn name(&self) -> &str {
        match self.check {
            Check::GrantsAllowPublic => "grants_allow_public",
            Check::DeniesInsecureTransport => "policy_denies_insecure_transport",
            Check::AllowsPublic => "policy_allows_public",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOCS: OnceLock<[Documentation; 3]> = OnceLock::new();
        let docs = DOCS.get_or_init(|| {
            [
                Documentation::builder(
                    section(),
                    "True when the ACL grants (JSON) give AllUsers or AuthenticatedUsers the \
                     permission (READ, WRITE, READ_ACP, WRITE_ACP) or FULL_CONTROL.",
                    "grants_allow_public(grants, permission)",
                )
                .build(),
                Documentation::builder(
                    section(),
                    "True when the bucket policy (JSON) denies every principal requests with \
                     aws:SecureTransport false.",
                    "policy_denies_insecure_transport(policy)",
                )
                .build(),
                Documentation::builder(
                    section(),
                    "True when the bucket policy (JSON) allows the principal * without a \
                     condition.",
                    "policy_allows_public(policy)",
                )
                .build(),
            ]
        });
        Some(&docs[self.check as usize])
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = if self.check == Check::GrantsAllowPublic {
            2
        } else {
            1
        };
        expect_args(self.name(), &args.args, n)?;
        let rows = args.number_rows;
        let docs = strings(&args.args[0], rows)?;
        let perm = if n == 2 {
            scalar_str(&args.args[1]).map(|p| p.unwrap_or_default())
        } else {
            None
        };
        let perms = if n == 2 && perm.is_none() {
            Some(strings(&args.args[1], rows)?)
        } else {
            None
        };
        let check = self.check;
        let out: BooleanArray = (0..rows)
            .map(|i| {
                use arrow::array::Array;
                if docs.is_null(i) {
                    return None;
                }
                let v: Value = serde_json::from_str(docs.value(i)).ok()?;
                Some(match check {
                    Check::GrantsAllowPublic => {
                        let p = match (&perm, &perms) {
                            (Some(p), _) => p.as_str(),
                            (None, Some(ps)) if ps.is_valid(i) => ps.value(i),
                            _ => return None,
                        };
                        grants_allow_public(&v, p)
                    }
                    Check::DeniesInsecureTransport => policy_denies_insecure_transport(&v),
                    Check::AllowsPublic => policy_allows_public(&v),
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn grants() {
        let panther = j(
            r#"[{"Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}, "Permission": "READ"},
                           {"Grantee": {"ID": "abc", "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"}]"#,
        );
        assert!(grants_allow_public(&panther, "READ"));
        assert!(!grants_allow_public(&panther, "WRITE"));
        let full = j(
            r#"[{"Grantee": {"URI": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"}, "Permission": "FULL_CONTROL"}]"#,
        );
        assert!(grants_allow_public(&full, "WRITE"));
        let config = j(
            r#"{"grantList": [{"grantee": "AllUsers", "permission": "Write"}], "owner": {"id": "x"}}"#,
        );
        assert!(grants_allow_public(&config, "WRITE"));
        assert!(!grants_allow_public(&j("null"), "READ"));
        assert!(!grants_allow_public(&j("[]"), "READ"));
    }

    #[test]
    fn policies() {
        let tls = j(
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}"#,
        );
        assert!(policy_denies_insecure_transport(&tls));
        assert!(!policy_allows_public(&tls));
        let only_one_role = j(
            r#"{"Statement": {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::1:role/r"},
            "Condition": {"Bool": {"aws:SecureTransport": false}}}}"#,
        );
        assert!(!policy_denies_insecure_transport(&only_one_role));
        let public = j(
            r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "s3:GetObject"}]}"#,
        );
        assert!(policy_allows_public(&public));
        let conditioned = j(
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}"#,
        );
        assert!(!policy_allows_public(&conditioned));
    }
}
