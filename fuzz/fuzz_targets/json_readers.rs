//! Fuzz the JSON record reader against serde: any text, read as one CloudTrail record by the
//! scanner the ingest uses and by serde_json's visitors, must give the same values or be
//! rejected by both (`JsonParser::readers_agree`). The scanner declines what it is not sure
//! of and serde reads it then, so a difference is a record read wrong.
//!
//!     cargo +nightly fuzz run json_readers
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use seclake::parse::json::JsonParser;
use seclake::schema::Registry;

fn parser() -> &'static JsonParser {
    static P: OnceLock<JsonParser> = OnceLock::new();
    P.get_or_init(|| {
        let schema = Registry::builtin().unwrap().get("AWS.CloudTrail").unwrap();
        JsonParser::new(schema).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(parser().readers_agree(text), "{text:?}");
    }
});
