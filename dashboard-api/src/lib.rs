//! X-Ray dashboard-api crate.
