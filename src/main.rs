//! The `seclake` binary: parse arguments, run the library, map the outcome to an exit code
//! (0 ok, 1 found something, 2 error). A closed output pipe is not an error.

use std::process::ExitCode;

use clap::Parser;
use seclake::cli::{Cli, Outcome};

fn main() -> ExitCode {
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

fn is_broken_pipe(e: &seclake::Error) -> bool {
    matches!(e, seclake::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The error and its causes, as `a: b: c` without repeating text a cause already shows.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
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
