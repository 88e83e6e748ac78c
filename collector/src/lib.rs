//! X-Ray collector crate.
