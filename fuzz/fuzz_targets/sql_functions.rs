//! Differential fuzzing of the rule functions' fast paths, which read log fields byte by byte:
//! the SSE2 dotted-IPv4 parser behind `ip_in_cidrs`/`cidr_contains` must agree with `std`'s,
//! and the word-at-a-time glob matcher with the fnmatch regex it stands in for.
//!
//!     cargo +nightly fuzz run sql_functions
#![no_main]

use libfuzzer_sys::fuzz_target;
use seclake::engine::udf::{Glob, fnmatch_regex, parse_ip};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    assert_eq!(parse_ip(text), text.trim().parse().ok(), "{text:?}");
    // "pattern\0value": the glob against the regex.
    if let Some((pattern, value)) = text.split_once('\0')
        && let (Ok(glob), Ok(re)) = (Glob::new(pattern), fnmatch_regex(pattern))
    {
        assert_eq!(glob.is_match(value), re.is_match(value), "{value:?} ~ {pattern:?}");
    }
});
