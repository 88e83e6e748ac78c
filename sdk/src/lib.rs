//! X-Ray sdk crate.
