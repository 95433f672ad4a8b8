//! The `seclake` binary: parse arguments, run the library, map the outcome to an exit code
//! (0 ok, 1 found something, 2 error). A closed output pipe is not an error.

use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use seclake::cli::{Cli, Outcome};

/// mimalloc, told not to return freed memory to the OS (see [`keep_freed_memory`]): ingest
/// allocates and frees large buffers continuously, and handing them back costs a page fault
/// and a page of zeroing per 4 KiB each time (a quarter of ingest CPU time when measured).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the version libmimalloc-sys 0.1.49
/// builds by default); -1 means never purge.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; called before any other thread exists.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
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
