//! Raw SQL with named parameters (in progress).
