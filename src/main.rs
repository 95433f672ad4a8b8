//! The `seclake` binary: parse arguments, run the library, map the outcome to an exit code
//! (0 ok, 1 found something, 2 error). A closed output pipe is not an error.

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use seclake::cli::{Cli, Outcome};

/// mimalloc, told not to return freed memory to the OS and not to use transparent huge pages
/// (see [`tune_allocator`]).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the version libmimalloc-sys 0.1.49
/// builds by default); -1 means never purge.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
/// `mi_option_allow_thp` in the same enum.
const MI_OPTION_ALLOW_THP: std::ffi::c_int = 43;

/// Ingest and scans allocate and free large buffers continuously. Handing freed memory back to
/// the OS cost a page fault and a page of zeroing per 4 KiB each time it was reused (a quarter
/// of ingest CPU time when measured). Transparent huge pages made every first touch zero 2 MiB:
/// without them, query medians dropped 3-15% (q01 102-112 -> 86-91 ms on the 10M-row lake),
/// peak memory of a query 0.55 -> 0.18 GB and of a 1M-line ingest 1.56 -> 1.25 GB. The
/// `MIMALLOC_PURGE_DELAY` and `MIMALLOC_ALLOW_THP` environment variables still override.
fn tune_allocator() {
    let unset = |name: &str| std::env::var_os(name).is_none();
    // SAFETY: sets plain integer options; called before any other thread exists.
    unsafe {
        if unset("MIMALLOC_PURGE_DELAY") {
            mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
        if unset("MIMALLOC_ALLOW_THP") {
            mi_option_set(MI_OPTION_ALLOW_THP, 0);
        }
    }
    // mimalloc read the THP option when it started (before `main`), so turn THP off for the
    // process the way it would have: later page faults get 4 KiB pages.
    #[cfg(target_os = "linux")]
    if unset("MIMALLOC_ALLOW_THP") {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only changes this process's
        // page-fault policy.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("seclake: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(cli.run()) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Found) => ExitCode::from(1),
        Ok(Outcome::Failed) => ExitCode::from(2),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seclake: {}", chain(&e));
            ExitCode::from(2)
        }
    }
}

/// True when the error comes from writing to a closed pipe (`seclake query … | head`),
/// however deeply a writer (CSV, JSON, Arrow) wrapped it.
fn is_broken_pipe(e: &seclake::Error) -> bool {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        if err.to_string().contains("Broken pipe (os error 32)") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The error and its causes, as `a: b: c` without repeating text a cause already shows.
fn chain(e: &seclake::Error) -> String {
    let mut out = e.to_string();
    if matches!(e, seclake::Error::DataFusion(_)) {
        // Already the root cause; its wrappers only name optimizer rules.
        return out;
    }
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}
