//! The Postgres schema: embedded migrations and the runner that applies them.

pub(crate) mod migrate;
