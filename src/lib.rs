//! resource-janitor: a sidecar that keeps a RAG application's storage within budget.
//!
//! # Layout
//! - [`config`]: raw layers (defaults, TOML, `.env`, environment) → validated [`config::Settings`].
//! - [`resource`]: the stores, their measured [`resource::Usage`] and [`resource::Priority`].
//! - [`backend`]: one file per store: connect, ping, measure (and later, sweep).
//! - [`sweep`]: what a backend's sweeper implements; [`engine`] runs it under the safety
//!   model: [`plan`] (plan before delete, the deletion cap) and [`audit`] (every batch).
//! - [`runs`]: the record of each run; [`metrics`]: Prometheus.
//! - [`queue`]: the bounded priority queue of cleanup tasks; [`monitor`] feeds it.
//! - [`worker`]: the loops' runtime: status, backoff, load-driven intervals.
//! - [`dedup`]: the SHA-256 dedup index (streamed hashing, race-free register, bucket scan).
//! - [`leader`]: the leader lease that lets several replicas run with one sweeper.
//! - [`alert`]: the alert webhook with a cooldown per key; [`systemd`]: readiness, status
//!   and the watchdog for a `Type=notify` unit.
//! - [`app`]: shared state and wiring; [`api`]: the admin HTTP API.
//! - [`cli`], [`logging`], [`shutdown`]: the process around it.
//! - [`secret`], [`time`]: values that never print; RFC 3339 and ages.
//!
//! `main.rs` only parses the command line and maps errors to exit codes.
#![warn(missing_docs)]

pub mod alert;
pub mod api;
pub mod app;
pub mod audit;
pub mod backend;
pub mod cli;
pub mod config;
pub mod dedup;
pub mod engine;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod plan;
pub mod queue;
pub mod resource;
pub mod runs;
pub mod secret;
pub mod shutdown;
pub mod sweep;
pub mod systemd;
pub mod time;
pub mod worker;
