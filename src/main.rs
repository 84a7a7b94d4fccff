//! `janitor`: parses the command line and maps outcomes to exit codes. The work is in the
//! library (`resource_janitor::cli`).

use std::process::ExitCode;

use clap::Parser;
use resource_janitor::cli::{self, Cli, CliError};

/// EX_CONFIG from sysexits.h: a bad configuration value.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("janitor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(err @ CliError::Config(_)) => {
            eprintln!("janitor: {err}");
            ExitCode::from(EXIT_CONFIG)
        }
        // the reader went away (`janitor check | head -1`): nothing left to say
        Err(CliError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("janitor: {:#}", anyhow::Error::from(err));
            ExitCode::FAILURE
        }
    }
}
