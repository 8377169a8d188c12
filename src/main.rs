//! The `cutover` binary: parse, resolve inputs, run.

use std::process::ExitCode;

use clap::Parser;
use cutover::cli::{Cli, ProcessEnv, Settings};
use cutover::run::{run, usage_failure};

/// The process's exit code from the run's (0 to 3; see the README's table).
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn main() -> ExitCode {
    // Logs go to stderr; stdout carries workflow commands and the report text.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUTOVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let settings = match Settings::resolve(cli, &ProcessEnv) {
        Ok(s) => s,
        Err(e) => return exit_code(usage_failure(&e.0, &ProcessEnv)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(settings, Box::new(ProcessEnv)));
    // Everything the run writes is written by now; a background task still
    // waiting (a progress ticker) must not hold the exit up.
    runtime.shutdown_background();
    exit_code(code)
}
