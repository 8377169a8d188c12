//! Frontend hosting providers (Vercel, Cloudflare Pages).
//!
//! The provider clients arrive with the `cutover` phase; `plan` only describes
//! what would change, from the manifest.
