//! Helpers of the `xray` binary's tests that speak to it with API keys: a
//! one-request HTTP/1.1 client with headers, a server started with extra
//! environment, and a one-shot command runner.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const XRAY: &str = env!("CARGO_BIN_EXE_xray");

pub fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// One HTTP/1.1 request (`Connection: close`) with `headers`; returns the
/// status, the raw header block and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some((ctype, b)) = body {
        req.push_str(&format!(
            "Content-Type: {ctype}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    } else if method != "GET" {
        req.push_str("Content-Length: 0\r\n");
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
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((status, head.to_string(), body.to_string()))
}

/// `xray ARGS` in `dir` with `env` (and no `RUST_LOG`), to completion.
pub fn run(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let mut cmd = Command::new(XRAY);
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run xray")
}

/// A running `xray serve` on free ports.
pub struct Server {
    child: Child,
    pub api: String,
    pub otlp_http: String,
    pub otlp_grpc: String,
}

impl Server {
    /// Starts `xray serve` in `dir` with `env` on top of free ports and
    /// quick flushes; waits for `/healthz`.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_part("serve", dir, env)
    }

    /// Like [`Server::start`] for any of `serve`, `collector` and
    /// `dashboard-api`.
    pub fn start_part(subcommand: &str, dir: &Path, env: &[(&str, &str)]) -> Server {
        let api = free_addr();
        let otlp_http = free_addr();
        let otlp_grpc = free_addr();
        let mut cmd = Command::new(XRAY);
        cmd.arg(subcommand)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env("XRAY_API__ADDR", &api)
            .env("XRAY_RECEIVERS__OTLP__HTTP_ADDR", &otlp_http)
            .env("XRAY_RECEIVERS__OTLP__GRPC_ADDR", &otlp_grpc)
            .env("XRAY_PIPELINE__FLUSH_INTERVAL_MS", "50")
            .env("XRAY_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start xray serve");
        let mut server = Server {
            child,
            api,
            otlp_http,
            otlp_grpc,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _, _)) = http(&server.api, "GET", "/healthz", &[], None) {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("xray {subcommand} exited with {status} before answering /healthz");
            }
            assert!(
                Instant::now() < deadline,
                "xray {subcommand} did not answer /healthz on {} within 30 s",
                server.api
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Server {
    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, without flushing anything.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then waits for the process to exit (at most `within`);
    /// returns its exit status.
    pub fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "xray did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OTLP/JSON with one execution span of `pipeline` in trace `trace_id`.
pub fn otlp_json(trace_id: &str, pipeline: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[
          {{"traceId":"{trace_id}","spanId":"1111111111111111","name":"{pipeline}","kind":1,
            "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000900000000",
            "attributes":[{{"key":"xray.pipeline","value":{{"stringValue":"{pipeline}"}}}}]}}
        ]}}]}}]}}"#
    )
}

/// Polls `GET path` with `headers` until it answers `want` (within 20 s);
/// returns the body.
pub fn wait_for(addr: &str, path: &str, headers: &[(&str, &str)], want: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, body) = http(addr, "GET", path, headers, None).unwrap();
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never answered {want} (last answer {status}: {body})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
