//! End-to-end tests of keel across crates, run against every reachable backend. The tests live
//! in `tests/`; this library is empty.
