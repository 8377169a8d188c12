//! Rebuilds when a ledger migration is added or changed: `sqlx::migrate!`
//! embeds `src/pg/ledger_migrations/` at compile time, and cargo does not
//! watch that folder on its own.
#![allow(clippy::print_stdout)] // cargo reads build instructions from stdout

fn main() {
    println!("cargo:rerun-if-changed=src/pg/ledger_migrations");
}
