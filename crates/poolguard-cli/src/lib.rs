//! `poolguard`: reproduces the classic pool failures and measures them (`lab`, in batch or
//! live with `--serve`), and watches a running service's pools (`doctor`).
//!
//! The command's code lives in this library (the `poolguard` binary only calls [`main`]), so
//! its documentation is built and checked like the other crates' without the binary's docs
//! colliding with the `poolguard` library's.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

mod alloc;
mod doctor;
mod lab;
mod redact;

use clap::{Parser, Subcommand};

/// Counts every allocation of this process, so the lab measures bytes from the allocator,
/// not from a pool's own accounting.
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

#[derive(Debug, Parser)]
#[command(
    name = "poolguard",
    version,
    about = "Pools that cannot silently hurt your service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reproduce pool failure scenarios and measure them (all of them when none is named).
    Lab(lab::LabArgs),
    /// Watch a running service's pools through its diagnostics endpoint and give a verdict
    /// (exit status 0 healthy, 1 warnings, 2 critical, 3 unreachable).
    Doctor(doctor::DoctorArgs),
}

/// The `poolguard` command: parses the process's arguments and runs the subcommand.
pub fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `--help` and `--version` are not errors; a usage error is 2, except for
            // `doctor`, whose 2 means "critical": there it is 3, like an unreadable endpoint.
            let code = if !e.use_stderr() {
                0
            } else if std::env::args().nth(1).as_deref() == Some("doctor") {
                doctor::EXIT_UNREACHABLE
            } else {
                2
            };
            return std::process::ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Lab(args) => lab::run(args),
        Command::Doctor(args) => doctor::run(args),
    }
}

/// The crate README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
