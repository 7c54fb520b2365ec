//! Raw SQL with named parameters (work in progress).
