//! The `cutover` binary: parse, resolve inputs, run.

use clap::Parser;
use cutover::cli::{Cli, ProcessEnv, Settings};
use cutover::run::{run, usage_failure};

fn main() {
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
        Err(e) => std::process::exit(usage_failure(&e.0, &ProcessEnv)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(settings, Box::new(ProcessEnv)));
    std::process::exit(code);
}
