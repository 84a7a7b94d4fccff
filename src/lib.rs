//! resource-janitor: a sidecar that keeps a RAG application's storage within budget.
//!
//! # Layout, in the order work flows
//! - [`config`]: raw layers (defaults, TOML, `.env`, environment) → validated
//!   [`config::Settings`]; [`resource`]: the stores ([`resource::Resource`], one name each),
//!   their [`resource::Usage`], [`resource::Priority`] and thresholds.
//! - [`timers`] (one per swept store) and [`monitor`] (measures into the [`snapshot`]):
//!   the sources of cleanup tasks, with the API's cleanup.
//! - [`queue`]: the bounded priority queue of tasks; [`scheduler`]: holds it, and its
//!   dispatcher starts tasks by priority, one run per store.
//! - [`engine`]: runs a sweep under the safety model: [`plan`] (plan before delete, the
//!   deletion cap), apply batch by batch, [`audit`] every batch, [`runs`] record it.
//! - [`backend`]: one module per store (connect, ping, measure, sweep) and the
//!   [`backend::sweep`] trait the engine drives.
//! - [`worker`]: the loops' runtime (status, backoff, load-driven intervals); [`leader`]: the
//!   lease that lets several replicas run with one sweeper; [`metrics`]: Prometheus;
//!   [`alert`]: the webhook; [`systemd`]: readiness, status and the watchdog.
//! - [`dedup`]: the SHA-256 dedup index (streamed hashing, race-free register, bucket scan);
//!   [`breakdown`]: what uses each store, by key prefix or collection.
//! - [`app`]: wiring only; [`api`]: the admin HTTP API; [`cli`], [`logging`], [`shutdown`]:
//!   the process around it; [`secret`], [`time`]: values that never print, RFC 3339.
//!
//! `main.rs` only parses the command line and maps errors to exit codes. No module imports
//! one that imports it back: `scripts/check-layers.py` checks it in CI.
#![warn(missing_docs)]

pub mod alert;
pub mod api;
pub mod app;
pub mod audit;
pub mod backend;
pub mod breakdown;
pub mod cli;
pub mod config;
pub mod dedup;
pub mod drift;
pub mod engine;
pub mod history;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod plan;
pub mod queue;
pub mod report;
pub mod resource;
pub mod runs;
pub mod scheduler;
pub mod secret;
pub mod shutdown;
pub mod snapshot;
pub mod systemd;
pub mod time;
pub mod timers;
pub mod worker;
