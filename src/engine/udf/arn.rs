//! `arn_partition`, `arn_service`, `arn_region`, `arn_account`, `arn_resource`: the parts of
//! an ARN (`arn:partition:service:region:account-id:resource`). NULL for values that are not
//! ARNs; an empty part (S3 bucket ARNs have no region or account) is NULL too.

use std::sync::{Arc, OnceLock};

use arrow::array::StringArray;
use arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::{expect_args, scalar_str, section, strings};

/// Which part of an ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Partition,
    Service,
    Region,
    Account,
    Resource,
}

impl Part {
    pub const ALL: [Part; 5] = [
        Part::Partition,
        Part::Service,
        Part::Region,
        Part::Account,
        Part::Resource,
    ];

    fn name(self) -> &'static str {
        match self {
            Part::Partition => "arn_partition",
            Part::Service => "arn_service",
            Part::Region => "arn_region",
            Part::Account => "arn_account",
            Part::Resource => "arn_resource",
        }
    }

    /// This part of `arn`, if `arn` is an ARN and the part is not empty.
    pub fn of(self, arn: &str) -> Option<&str> {
        let mut it = arn.splitn(6, ':');
        if it.next()? != "arn" {
            return None;
        }
        let parts: Vec<&str> = it.collect();
        if parts.len() != 5 {
            return None;
        }
        let v = match self {
            Part::Partition => parts[0],
            Part::Service => parts[1],
            Part::Region => parts[2],
            Part::Account => parts[3],
            Part::Resource => parts[4],
        };
        (!v.is_empty()).then_some(v)
    }
}

/// One ARN-part function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArnPart {
    part: Part,
    signature: Signature,
}

impl ArnPart {
    pub fn new(part: Part) -> Self {
        ArnPart {
            part,
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ArnPart {
    fn name(&self) -> &str {
        self.part.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn documentation(&self) -> Option<&Documentation> {
        static DOCS: OnceLock<Vec<Documentation>> = OnceLock::new();
        let docs = DOCS.get_or_init(|| {
            Part::ALL
                .iter()
                .map(|p| {
                    Documentation::builder(
                        section(),
                        format!(
                            "The {} part of an ARN (arn:partition:service:region:account-id:resource); \
                             NULL when the value is not an ARN or the part is empty.",
                            &p.name()[4..]
                        ),
                        format!("{}(arn)", p.name()),
                    )
                    .with_sql_example(format!(
                        "SELECT {}('arn:aws:iam::123456789012:user/alice')",
                        p.name()
                    ))
                    .with_argument("arn", "An ARN.")
                    .build()
                })
                .collect()
        });
        docs.iter()
            .find(|d| d.syntax_example.starts_with(self.part.name()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        expect_args(self.part.name(), &args.args, 1)?;
        if let Some(v) = scalar_str(&args.args[0]) {
            let out = v
                .as_deref()
                .and_then(|a| self.part.of(a))
                .map(str::to_string);
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(out)));
        }
        let a = strings(&args.args[0], args.number_rows)?;
        let out: StringArray = a.iter().map(|v| v.and_then(|a| self.part.of(a))).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let a = "arn:aws:sts::123456789012:assumed-role/Role/session";
        assert_eq!(Part::Partition.of(a), Some("aws"));
        assert_eq!(Part::Service.of(a), Some("sts"));
        assert_eq!(Part::Region.of(a), None);
        assert_eq!(Part::Account.of(a), Some("123456789012"));
        assert_eq!(Part::Resource.of(a), Some("assumed-role/Role/session"));
        assert_eq!(
            Part::Resource.of("arn:aws:s3:::bucket/key:with:colons"),
            Some("bucket/key:with:colons")
        );
        assert_eq!(Part::Account.of("not-an-arn"), None);
        assert_eq!(Part::Account.of("arn:aws:s3"), None);
    }
}
