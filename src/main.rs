//! `tessera`: the command-line front end of the Tessera volume service.
//!
//! See `tessera --help`, README.md and docs/cli.md.

mod admin;
mod cli;
mod commands;
mod errors;
mod output;
mod size;

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Clap prints its own message and exits with 2 on a usage error (0 for --help).
    let cli = cli::Cli::parse();
    if !matches!(cli.command, cli::Command::Mount(_) | cli::Command::Csi(_)) {
        // `tessera volume list | head -1` should end quietly, not panic in println!.
        // The FUSE server keeps Rust's default (SIGPIPE ignored).
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_tracing();
    match commands::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(errors::exit_for(&err) as u8)
        }
    }
}

/// Logs go to stderr; `RUST_LOG` filters them (default `warn`).
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
