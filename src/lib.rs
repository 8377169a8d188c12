//! cutover: move and release a Supabase-backed application from one
//! environment to another, as a GitHub Action and a CLI.
//!
//! The binary (`src/main.rs`) only parses arguments and calls [`run::run`].
//! Phases live in [`phases`], one module each; they reach databases and APIs
//! only through [`pg`], [`supabase`], [`github`] and [`frontend`], and produce
//! [`report`] values that only [`report`]'s renderers turn into text.

#![warn(missing_docs)]

pub mod cli;
pub mod context;
pub mod frontend;
pub mod github;
pub mod http;
pub mod http_checks;
pub mod manifest;
pub mod pg;
pub mod phase;
pub mod phases;
pub mod redact;
pub mod repo;
pub mod report;
pub mod run;
pub mod supabase;
