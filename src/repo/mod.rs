//! The user's repository: migration files and Edge Function folders.
//!
//! Both are data read from disk; nothing here talks to a database or an API.

pub mod cron_jobs;
pub mod functions;
pub mod migrations;
pub mod sql_split;
