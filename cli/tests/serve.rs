//! End-to-end tests of the `xray` binary: start-up on the embedded default,
//! health, ingest over OTLP/HTTP, graceful stop on SIGINT/SIGTERM, restart
//! with the same data, configuration errors.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const XRAY: &str = env!("CARGO_BIN_EXE_xray");

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A minimal HTTP/1.1 client: one request, `Connection: close`.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((ctype, b)) = body {
        req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some((_, b)) = body {
        s.write_all(b)?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

struct Server {
    child: Child,
    api: String,
    otlp_http: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let api = free_addr();
        let otlp_http = free_addr();
        let child = Command::new(XRAY)
            .arg("serve")
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("XRAY_API__ADDR", &api)
            .env("XRAY_RECEIVERS__OTLP__HTTP_ADDR", &otlp_http)
            .env("XRAY_RECEIVERS__OTLP__GRPC_ADDR", free_addr())
            .env("XRAY_PIPELINE__FLUSH_INTERVAL_MS", "50")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xray serve");
        let server = Server {
            child,
            api,
            otlp_http,
        };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((200, body)) = http(&self.api, "GET", "/healthz", None) {
                assert!(body.contains("ok"), "{body}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "xray serve did not answer /healthz on {} within 30 s",
            self.api
        );
    }

    /// Sends a signal and waits for the exit; returns the output and how long it took.
    fn stop(mut self, signal: &str) -> (Output, Duration) {
        let t = Instant::now();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        loop {
            if self.child.try_wait().unwrap().is_some() {
                break;
            }
            if t.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!("xray serve did not exit within 20 s of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = t.elapsed();
        (self.child.wait_with_output().unwrap(), took)
    }
}

fn otlp_json(trace_id: &str, pipeline: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"e2e"}}}}]}},
        "scopeSpans":[{{"scope":{{"name":"test"}},"spans":[
          {{"traceId":"{trace_id}","spanId":"1111111111111111","name":"{pipeline}","kind":1,
            "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000900000000",
            "attributes":[{{"key":"xray.pipeline","value":{{"stringValue":"{pipeline}"}}}}]}},
          {{"traceId":"{trace_id}","spanId":"2222222222222222","parentSpanId":"1111111111111111","name":"filter_price","kind":1,
            "startTimeUnixNano":"1700000000100000000","endTimeUnixNano":"1700000000200000000",
            "attributes":[{{"key":"xray.step.type","value":{{"stringValue":"filter"}}}},
                          {{"key":"xray.step.candidates.in","value":{{"intValue":"5000"}}}},
                          {{"key":"xray.step.candidates.out","value":{{"intValue":"100"}}}}]}}
        ]}}]}}]}}"#
    )
}

fn wait_for_execution(api: &str, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http(api, "GET", &format!("/api/v1/executions/{id}"), None).unwrap();
        if status == 200 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} never showed up (last answer {status}: {body})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_runs_on_the_embedded_default_stops_cleanly_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert!(
        dir.path().join("xray-data/xray.db").exists(),
        "database created under ./xray-data"
    );
    let (ready, _) = http(&server.api, "GET", "/readyz", None).unwrap();
    assert_eq!(ready, 200);

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, body) = http(
        &server.otlp_http,
        "POST",
        "/v1/traces",
        Some((
            "application/json",
            otlp_json(trace, "e2e-pipeline").as_bytes(),
        )),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let detail = wait_for_execution(&server.api, trace);
    assert!(
        detail.contains("e2e-pipeline") && detail.contains("filter_price"),
        "{detail}"
    );

    let (out, took) = server.stop("INT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit status {:?}\n{stderr}",
        out.status
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to stop\n{stderr}"
    );
    assert!(
        stderr.contains("sqlite at xray-data/xray.db"),
        "start-up log names the store:\n{stderr}"
    );
    assert!(
        stderr.contains("listening"),
        "start-up log says where it listens:\n{stderr}"
    );

    // a restart finds the same data
    let server = Server::start(dir.path());
    let detail = wait_for_execution(&server.api, trace);
    assert!(detail.contains("filter_price"), "{detail}");
    let (out, took) = server.stop("TERM");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to stop on SIGTERM"
    );
}

fn run(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let mut cmd = Command::new(XRAY);
    cmd.args(args).current_dir(dir).env_remove("XRAY_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn misspelt_env_key_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["serve"], &[("XRAY_API__ADR", "127.0.0.1:1")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("api.adr: unknown key") && stderr.contains("XRAY_API__ADR"),
        "{stderr}"
    );
    assert!(!dir.path().join("xray-data").exists(), "nothing started");
}

#[test]
fn misspelt_file_key_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("xray.toml"),
        "[storage]\nbackend = \"clickhuose\"\n",
    )
    .unwrap();
    let out = run(&["serve"], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("storage.backend") && stderr.contains("clickhuose"),
        "{stderr}"
    );
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custom.toml"),
        "[api]\naddr = \"127.0.0.1:9999\"\n",
    )
    .unwrap();
    let out = run(
        &["config", "--config", "custom.toml"],
        &[
            ("XRAY_AUTH__ADMIN_TOKEN", "a-very-secret-admin-token"),
            ("XRAY_STORAGE__CLICKHOUSE__TTL_DAYS", "3"),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("addr = \"127.0.0.1:9999\""), "{stdout}");
    assert!(stdout.contains("ttl_days = 3"), "{stdout}");
    assert!(
        !stdout.contains("a-very-secret-admin-token") && stdout.contains("********"),
        "{stdout}"
    );
}

#[test]
fn api_addr_from_the_environment_is_used() {
    let dir = tempfile::tempdir().unwrap();
    // Server::start sets XRAY_API__ADDR to a free port and waits for /healthz on it
    let server = Server::start(dir.path());
    let (status, body) = http(&server.api, "GET", "/api/v1/executions", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let (out, _) = server.stop("TERM");
    assert!(out.status.success());
}

#[test]
fn migrate_creates_the_embedded_store_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = run(&["migrate"], &[], dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(dir.path().join("xray-data/xray.db").exists());
}
