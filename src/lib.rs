//! resource-janitor: a sidecar that keeps a RAG application's storage within budget.
//!
//! # Layout
//! - [`config`]: raw layers (defaults, TOML, `.env`, environment) → validated [`config::Settings`].
//! - [`backend`]: one file per store: connect, ping, measure.
//! - [`resource`]: the stores, their measured [`resource::Usage`] and [`resource::Priority`].
//! - [`plan`]: plan before delete; the per-run deletion cap.
//! - [`audit`]: the append-only JSONL record of every applied batch.
//! - [`sweep`]: what a backend's sweeper implements; [`engine`] runs it under the safety model.
//! - [`runs`]: the record of each run; [`metrics`]: Prometheus.
//! - [`queue`]: the bounded priority queue of cleanup tasks.
//! - [`worker`]: the loops' runtime: status, backoff, load-driven intervals.
//! - [`secret`]: values and URLs that never print.
//!
//! `main.rs` only parses the command line and maps errors to exit codes.
#![warn(missing_docs)]

pub mod audit;
pub mod backend;
pub mod config;
pub mod engine;
pub mod metrics;
pub mod plan;
pub mod queue;
pub mod resource;
pub mod runs;
pub mod secret;
pub mod sweep;
pub mod time;
pub mod worker;
