//! The integration test binary: every test here talks to real servers on 127.0.0.1
//! started by `scripts/services.sh up` (see `support`).

mod support;

mod breakdown;
mod chaos;
mod crash;
mod daemon;
mod daemon_runs;
mod dedup;
mod deploy;
mod documents;
mod history;
mod ops;
mod page;
mod qdrant_sweep;
mod redis_cluster;
mod redis_sweep;
mod redis_tls;
mod replicas;
mod s3_faults;
mod s3_list;
mod s3_recheck;
mod s3_sweep;
mod smoke;
