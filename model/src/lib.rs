//! X-Ray model crate.
