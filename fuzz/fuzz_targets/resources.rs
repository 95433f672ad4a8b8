//! Fuzz resource snapshot reading: any text must be read as documents or refused with an
//! error, never panic; documents that normalize must build a table batch.
//!
//!     cargo +nightly fuzz run resources
#![no_main]

use libfuzzer_sys::fuzz_target;
use seclake::policy::resource::{Origin, documents, normalize, to_batch};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(docs) = documents(text, "fuzz") else { return };
    let norm: Vec<_> = docs.iter().filter_map(|d| normalize(d).ok().flatten()).collect();
    let origin = Origin { source_id: "s", label: "fuzz", default_time: 0, parse_time: 0 };
    to_batch(&norm, &origin).expect("normalized resources always fit the table");
});
