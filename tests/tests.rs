//! The integration tests, one binary (as ripgrep does): each module is one
//! area, sharing the harness (`common`) and the local fakes of the APIs
//! cutover cannot reach here (`fake_github`, `fake_supabase`). Run one area
//! with `cargo test --test tests <module>::`.

mod common;
mod fake_github;
mod fake_storage;
mod fake_supabase;

mod backup;
mod bad_input;
mod config_phase;
mod cutover;
mod data;
mod frontend_providers;
mod functions_phase;
mod github_environment;
mod hosted;
mod lints;
mod monitor;
mod parity;
mod pg_compare;
mod pg_cron;
mod plan_preflight;
mod readiness;
mod replicate;
mod schema;
mod secrets_phase;
mod smoke;
mod storage_phase;
mod summary_render;
mod supabase_api;
mod validate;
mod vault;
