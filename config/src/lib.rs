//! X-Ray config crate.
