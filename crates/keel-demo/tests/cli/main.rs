//! `keel-demo` as a user runs it: the binary started as a process, for what only a process
//! shows — stdout, exit codes, signals, logs. (Cargo gives `CARGO_BIN_EXE_keel-demo` only to
//! this package's own tests, so these live here; everything that runs in process is in the
//! workspace's one test binary, `tests/it`.)

mod serve;
mod tour;
