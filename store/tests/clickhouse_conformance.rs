//! The store conformance suite against ClickHouse (`XRAY_TEST_CLICKHOUSE_URL`,
//! set by `dev/test.sh`), each check in a database of its own.

xray_store::conformance_suite!(xray_store::testing::clickhouse);
