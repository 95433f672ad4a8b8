//! Fuzz JSON events as `rules eval` and rule tests read them: any JSON must become a batch of
//! the log type or a clear error, and every shipped rule must evaluate on the batch.
//!
//!     cargo +nightly fuzz run rule_events
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use seclake::detect::eval::{RuleSet, events_to_batch};
use seclake::schema::{LogSchema, Registry};

fn setup() -> &'static (Arc<LogSchema>, RuleSet) {
    static S: OnceLock<(Arc<LogSchema>, RuleSet)> = OnceLock::new();
    S.get_or_init(|| {
        let schema = Registry::builtin().unwrap().get("AWS.S3ServerAccess").unwrap();
        let rules: Vec<_> = seclake::detect::rule::load(&[]).unwrap().into_iter().map(Arc::new).collect();
        let set = RuleSet::compile(&rules, &schema.log_type, &schema.arrow_schema()).unwrap();
        (schema, set)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let (schema, set) = setup();
    if let Ok(batch) = events_to_batch(schema, &[v], false) {
        set.eval(&batch).expect("shipped rules evaluate on any event");
    }
});
