//! The fault test of the delivery guarantee, with the real `xray` binary
//! and a real Postgres store: a known number of executions is sent while
//! the store becomes unreachable twice (a TCP proxy in front of Postgres,
//! controlled by the test, cuts every connection and refuses new ones) and
//! the collector is SIGKILLed once, during the first outage, and restarted
//! on the same spool. Afterwards every acknowledged execution and step is in the
//! store exactly once, and a final SIGTERM drains and exits 0.
//!
//! Needs `XRAY_TEST_POSTGRES_URL` (set by `dev/test.sh`).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, http};
use xray_store::{ExecutionFilter, PageRequest, Scope, Store, TimeWindow};

/// A TCP proxy to `target` that can be switched off: off, it cuts every
/// open connection and closes new ones at once (like a store that went
/// away).
struct Proxy {
    addr: String,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                {
                    let mut c = conns2.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
        });
        Proxy { addr, up, conns }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Execution `n` of pipeline `fault` with two steps, as OTLP/JSON.
fn body(n: u32) -> String {
    let trace = format!("{n:08x}{}", "f".repeat(24));
    let start = 1_700_000_000_000_000_000u64 + u64::from(n) * 1_000_000;
    let span = |id: &str, parent: &str, name: &str, attrs: &str| {
        format!(
            r#"{{"traceId":"{trace}","spanId":"{id}","parentSpanId":"{parent}","name":"{name}","startTimeUnixNano":"{start}","endTimeUnixNano":"{}","attributes":[{attrs}]}}"#,
            start + 500_000
        )
    };
    let spans = [
        span(
            "1111111111111111",
            "",
            "fault",
            r#"{"key":"xray.pipeline","value":{"stringValue":"fault"}}"#,
        ),
        span(
            "2222222222222222",
            "1111111111111111",
            "filter",
            r#"{"key":"xray.step.type","value":{"stringValue":"filter"}}"#,
        ),
        span(
            "3333333333333333",
            "1111111111111111",
            "rank",
            r#"{"key":"xray.step.type","value":{"stringValue":"rank"}}"#,
        ),
    ];
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
}

/// One export; true when acknowledged (200).
fn export(server: &Server, n: u32) -> bool {
    matches!(
        http(
            &server.otlp_http,
            "POST",
            "/v1/traces",
            &[],
            Some(("application/json", body(n).as_bytes()))
        ),
        Ok((200, _, _))
    )
}

/// A runtime for the test's store reads, a fresh Postgres database, a proxy
/// in front of it that the test can cut, and the database URL through the
/// proxy (same database, the proxy's address).
fn proxied_postgres() -> (
    tokio::runtime::Runtime,
    xray_store::postgres::testing::IsolatedPostgres,
    Proxy,
    String,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = rt.block_on(xray_store::postgres::testing::require());
    let url = url_parts::Url::parse(&db.url);
    let proxy = Proxy::start(url.host_port.clone());
    let proxied = url.with_host_port(&proxy.addr);
    (rt, db, proxy, proxied)
}

#[test]
fn every_acknowledged_execution_is_stored_exactly_once_across_a_store_outage_and_a_sigkill() {
    let (rt, db, proxy, proxied) = proxied_postgres();

    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("XRAY_STORAGE__BACKEND", "postgres"),
        ("XRAY_STORAGE__POSTGRES__URL", proxied.as_str()),
        ("XRAY_PIPELINE__RETRY_INITIAL_BACKOFF_MS", "20"),
        ("XRAY_PIPELINE__RETRY_MAX_BACKOFF_MS", "300"),
        ("XRAY_PIPELINE__WRITE_TIMEOUT_MS", "2000"),
        ("XRAY_PIPELINE__SHUTDOWN_TIMEOUT_MS", "10000"),
    ];
    let mut server = Server::start(dir.path(), &env);

    const SENT: u32 = 300;
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for n in 0..SENT {
        match n {
            60 | 200 => proxy.set_up(false),
            150 => {
                // Crash during the outage: nothing is flushed; the spool
                // holds what was acknowledged. `xray serve` opens the
                // store at start-up, so it restarts once the store is
                // back, on the same spool directory.
                server.kill();
                proxy.set_up(true);
                server = Server::start(dir.path(), &env);
            }
            260 => proxy.set_up(true),
            _ => {}
        }
        // A client retries until acknowledged, as OTel exporters do.
        loop {
            if export(&server, n) {
                acked.push(n);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "execution {n} never acknowledged"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // Everything acknowledged reaches the store, once.
    let scope = Scope::App(xray_model::DEFAULT_APP.into());
    let store = &db.backend;
    let filter = ExecutionFilter {
        pipeline: Some("fault".into()),
        ..Default::default()
    };
    let page = PageRequest {
        limit: 1000,
        after: None,
    };
    let wait = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let items = rt
            .block_on(store.list_executions(&scope, &filter, &page))
            .unwrap()
            .items;
        if items.len() >= acked.len() || Instant::now() > wait {
            break items;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // SIGTERM drains and exits 0.
    let status = server.terminate(Duration::from_secs(15));
    assert!(status.success(), "xray exited with {status} after SIGTERM");

    let mut ids: Vec<String> = listed
        .iter()
        .map(|s| s.execution.trace_id.clone())
        .collect();
    ids.sort();
    let unique = {
        let mut u = ids.clone();
        u.dedup();
        u.len()
    };
    let duplicates = ids.len() - unique;
    let mut steps = 0;
    let mut wrong_steps = 0;
    for trace in &ids {
        let d = rt
            .block_on(store.get_execution(&scope, trace))
            .unwrap()
            .expect("listed execution readable");
        steps += d.steps.len();
        if d.steps.len() != 2 {
            wrong_steps += 1;
        }
    }
    let summary = rt
        .block_on(store.pipelines(
            &scope,
            TimeWindow {
                from_ns: 0,
                to_ns: i64::MAX,
            },
        ))
        .unwrap()
        .into_iter()
        .find(|p| p.pipeline == "fault")
        .map_or(0, |p| p.executions);
    eprintln!(
        "fault test: sent {SENT}, acknowledged {}, stored {} executions / {steps} steps, \
         duplicates {duplicates}, summary count {summary}",
        acked.len(),
        ids.len()
    );
    let dead = std::fs::read_to_string(dir.path().join("xray-data/spool/dead-letter.jsonl"))
        .unwrap_or_default();
    for line in dead.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        eprintln!("dead letter: {} rows: {}", v["rows"], v["reason"]);
    }
    assert_eq!(dead, "", "no batch was dead-lettered");
    assert_eq!(
        acked.len(),
        SENT as usize,
        "the client retried until acknowledged"
    );
    assert_eq!(duplicates, 0);
    assert_eq!(
        ids.len(),
        acked.len(),
        "every acknowledged execution is stored"
    );
    for n in &acked {
        let trace = format!("{n:08x}{}", "f".repeat(24));
        assert!(ids.binary_search(&trace).is_ok(), "execution {n} missing");
    }
    assert_eq!(wrong_steps, 0, "every execution has exactly its 2 steps");
    assert_eq!(steps, 2 * acked.len());
    assert_eq!(summary, acked.len() as u64);
    drop(db);
}

#[test]
fn sigterm_with_the_store_down_keeps_acknowledged_data_in_the_spool_and_exits_0() {
    let (rt, db, proxy, proxied) = proxied_postgres();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("XRAY_STORAGE__BACKEND", "postgres"),
        ("XRAY_STORAGE__POSTGRES__URL", proxied.as_str()),
        ("XRAY_PIPELINE__RETRY_INITIAL_BACKOFF_MS", "20"),
        ("XRAY_PIPELINE__RETRY_MAX_BACKOFF_MS", "200"),
        ("XRAY_PIPELINE__SHUTDOWN_TIMEOUT_MS", "2000"),
    ];
    let server = Server::start(dir.path(), &env);
    proxy.set_up(false);
    for n in 1000..1020 {
        assert!(export(&server, n), "acknowledged into the spool");
    }
    // The store cannot take them: shutdown gives up after the timeout,
    // keeps them in the spool and still exits 0.
    let started = Instant::now();
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "xray exited with {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let spool = dir.path().join("xray-data/spool");
    let segments: u64 = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(segments > 0, "the spool holds the acknowledged batches");

    // Store back, restart: replayed.
    proxy.set_up(true);
    let server = Server::start(dir.path(), &env);
    let scope = Scope::App(xray_model::DEFAULT_APP.into());
    let filter = ExecutionFilter {
        pipeline: Some("fault".into()),
        ..Default::default()
    };
    let page = PageRequest {
        limit: 100,
        after: None,
    };
    let wait = Instant::now() + Duration::from_secs(30);
    loop {
        let n = rt
            .block_on(db.backend.list_executions(&scope, &filter, &page))
            .unwrap()
            .items
            .len();
        if n == 20 {
            break;
        }
        assert!(Instant::now() < wait, "{n} of 20 replayed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success());
    drop(db);
}

/// Just enough URL handling to swap the host:port of a postgres URL.
mod url_parts {
    pub(super) struct Url {
        pub(super) prefix: String,
        pub(super) host_port: String,
        pub(super) rest: String,
    }

    impl Url {
        pub(super) fn parse(url: &str) -> Url {
            let (scheme, after) = url.split_once("://").expect("scheme");
            let (authority, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
            let (userinfo, host_port) = match authority.rsplit_once('@') {
                Some((u, h)) => (format!("{u}@"), h.to_string()),
                None => (String::new(), authority.to_string()),
            };
            let host_port = if host_port.contains(':') {
                host_port
            } else {
                format!("{host_port}:5432")
            };
            Url {
                prefix: format!("{scheme}://{userinfo}"),
                host_port,
                rest: rest.to_string(),
            }
        }

        pub(super) fn with_host_port(&self, host_port: &str) -> String {
            format!("{}{host_port}{}", self.prefix, self.rest)
        }
    }
}
