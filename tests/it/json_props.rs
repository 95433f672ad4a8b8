//! Property tests for the JSON readers of detection content (the same checks as the fuzz
//! targets `resources` and `rule_events`, run in CI): arbitrary JSON resources and events
//! never panic; what they turn into always fits the table and evaluates.

use std::sync::Arc;

use proptest::prelude::*;
use seclake::detect::eval::{RuleSet, events_to_batch};
use seclake::policy::resource::{Origin, documents, normalize, to_batch};
use seclake::schema::Registry;
use serde_json::{Value, json};

/// JSON values biased towards the keys and shapes the readers look at.
fn value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("Arn"),
        Just("Name"),
        Just("Grants"),
        Just("Policy"),
        Just("Versioning"),
        Just("resourceType"),
        Just("supplementaryConfiguration"),
        Just("configurationItems"),
        Just("httpStatus"),
        Just("bucket"),
        Just("time"),
        Just("remoteip"),
        Just("requester"),
        Just("operation"),
        Just("x"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("AWS::S3::Bucket")),
        Just(json!("REST.GET.OBJECT")),
        Just(json!("[06/Feb/2019:00:00:38 +0000]")),
    ];
    leaf.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn resources_never_panic(v in value()) {
        let text = v.to_string();
        if let Ok(docs) = documents(&text, "prop") {
            let norm: Vec<_> = docs.iter().filter_map(|d| normalize(d).ok().flatten()).collect();
            let origin = Origin { source_id: "s", label: "prop", default_time: 0, parse_time: 0 };
            prop_assert!(to_batch(&norm, &origin).is_ok());
        }
    }

    #[test]
    fn events_never_panic_and_rules_evaluate(v in value()) {
        let schema = Registry::builtin().unwrap().get("AWS.S3ServerAccess").unwrap();
        let rules: Vec<_> = seclake::detect::rule::load(&[]).unwrap().into_iter().map(Arc::new).collect();
        let set = RuleSet::compile(&rules, &schema.log_type, &schema.arrow_schema()).unwrap();
        if let Ok(batch) = events_to_batch(&schema, &[v], false) {
            prop_assert!(set.eval(&batch).is_ok());
        }
    }
}
