//! The `cutover` binary: parse, resolve inputs, run.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a usage error is printed before any report exists

use clap::Parser;
use cutover::cli::{Cli, ProcessEnv, Settings};
use cutover::run::{EXIT_USAGE, run};

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
        Err(e) => {
            if std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true") {
                println!("::error::{}", cutover::report::actions::escape_data(&e.0));
            }
            eprintln!("error: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(settings, Box::new(ProcessEnv)));
    std::process::exit(code);
}
