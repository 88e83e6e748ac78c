//! X-Ray store crate.
