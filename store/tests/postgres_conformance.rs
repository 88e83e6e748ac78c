//! The store conformance suite against Postgres (`XRAY_TEST_POSTGRES_URL`,
//! set by `dev/test.sh`), each check in a database of its own.

xray_store::conformance_suite!(xray_store::testing::postgres);
