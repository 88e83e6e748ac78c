//! The store conformance suite against the embedded SQLite backend.

xray_store::conformance_suite!(xray_store::testing::sqlite);
