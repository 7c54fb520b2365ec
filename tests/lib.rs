//! keel's end-to-end tests live in `it/` (one test binary, a module per area); this empty
//! library only gives the package a target. Test support is the `keel-test` crate.
