//! keel's end-to-end tests, one binary (a full run links once), a module per area. Every test
//! runs against the real servers, each on a database of its own (`keel-test`).
//!
//! Tests whose names start with `serial_` (in [`faults`]) read server-wide counters or restart a
//! server: `cargo xtask test` runs them after everything else, one at a time.

mod bulk;
mod cache;
mod cancel;
mod cluster;
mod cluster_replicas;
mod contention;
mod errors;
mod faults;
mod foundation;
mod frames;
mod raw_sql;
mod readers;
mod repo;
mod serve;
mod statements;
mod tls;
mod transactions;
