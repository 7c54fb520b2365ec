//! keel-repo
