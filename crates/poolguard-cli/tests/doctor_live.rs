//! The bar for `poolguard doctor`: against every `poolguard lab --serve` scenario it names
//! the true cause as its first finding (with the call site where there is one), and the
//! healthy control gets exit status 0 and no warning.
//!
//! Each test starts the built binary's `lab --serve --scenario X`, waits for its `ready`
//! line (the fault is established from then on), then runs `doctor` over a short window.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

use serde_json::Value;

/// Every live scenario and the finding the doctor must name first (`-`: none).
const EXPECTED: &[(&str, &str)] = &[
    ("healthy", "-"),
    ("conn-leak", "conn.leak"),
    ("db-outage", "conn.breaker-open"),
    ("db-outage-no-breaker", "conn.connect-failures"),
    ("spike", "doctor.in-use-spike"),
    ("trap-min-idle-0", "conn.cold-start"),
    ("trap-abandon", "conn.abandon-on"),
    ("trap-validation-timeout", "conn.slow-validation"),
    ("nested-acquire", "conn.nested-acquire"),
    ("put-only", "object.only-puts"),
    ("oversized", "object.oversized"),
    ("long-holds", "object.long-holds"),
    ("finalizer-stall", "reclaim.stuck-now"),
];

const BIN: &str = env!("CARGO_BIN_EXE_poolguard");

/// A running `lab --serve`; killed (and reaped) when dropped.
struct Live {
    child: Child,
    /// Dropping it closes the child's input: a stop signal.
    stdin: Option<ChildStdin>,
    url: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts scenario `name` and waits for its `ready` line. `--for` bounds the child, so a
/// scenario that never gets ready ends the wait (its stdout closes) instead of hanging.
fn serve(name: &str) -> Live {
    let mut child = Command::new(BIN)
        .args([
            "lab",
            "--serve",
            "127.0.0.1:0",
            "--scenario",
            name,
            "--for",
            "120s",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start poolguard lab --serve");
    let stdin = child.stdin.take().expect("piped stdin");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read the first line");
    let url = first
        .trim()
        .strip_prefix("serving ")
        .unwrap_or_else(|| panic!("the first line names the URL: {first:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read stdout");
        assert!(n > 0, "{name}: lab --serve ended before it was ready");
        if line.starts_with(&format!("ready: {name}: ")) {
            break;
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    Live {
        child,
        stdin: Some(stdin),
        url,
    }
}

/// `doctor URL --json` over 3 s: its exit status and verdict.
fn doctor(url: &str) -> (i32, Value) {
    let out = Command::new(BIN)
        .args(["doctor", url, "--for", "3s", "--every", "250ms", "--json"])
        .output()
        .expect("run poolguard doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json prints one JSON object ({e}): {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exited"), v)
}

/// The line number of the `// live-site: NAME` marker in a live driver's source.
fn site(file: &str, name: &str) -> String {
    let path = format!("{}/src/lab/live/{file}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).expect("read the driver's source");
    let marker = format!("// live-site: {name}");
    let n = src
        .lines()
        .position(|l| l.trim_end().ends_with(&marker))
        .unwrap_or_else(|| panic!("{marker} in {path}"))
        + 1;
    format!("live/{file}:{n}:")
}

/// Runs scenario `name` and checks the doctor's first finding; returns it and the exit
/// status.
fn first_finding(name: &str) -> (Value, i32) {
    let expected = EXPECTED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .expect("a listed scenario");
    let live = serve(name);
    let (code, v) = doctor(&live.url);
    assert_eq!(v["source"], "/pools", "{v:#}");
    assert!(v["readings"].as_u64().unwrap_or(0) >= 5, "{v:#}");
    let first = v["findings"][0].clone();
    assert_eq!(
        first["code"], expected,
        "{name}: the first finding names the cause\n{v:#}"
    );
    (first, code)
}

#[test]
fn the_live_scenarios_are_the_ones_tested_here() {
    let out = Command::new(BIN)
        .args(["lab", "--serve", "--list"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let listed: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(w[1..3], ["first", "finding"], "{l}");
            (w[0].to_owned(), w[3].to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> = EXPECTED
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn healthy_control_exits_0_with_no_warning() {
    let live = serve("healthy");
    let (code, v) = doctor(&live.url);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["verdict"], "healthy");
    let above_info: Vec<&Value> = v["findings"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|f| f["severity"] != "info")
        .collect();
    assert!(above_info.is_empty(), "{v:#}");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v:#}");
}

#[test]
fn conn_leak_names_the_leaking_site() {
    let (f, code) = first_finding("conn-leak");
    assert_eq!(f["severity"], "critical");
    assert_eq!(code, 2);
    let msg = f["message"].as_str().unwrap_or_default();
    let leak = site("conn.rs", "leak");
    assert!(msg.contains(&leak), "{leak} in {msg}");
    let evidence = f["evidence"].to_string();
    assert!(evidence.contains("in use at max 4/4"), "{evidence}");
}

#[test]
fn db_outage_with_the_breaker_names_it_open() {
    let (f, code) = first_finding("db-outage");
    assert_eq!(f["severity"], "critical");
    assert_eq!(code, 2);
}

#[test]
fn db_outage_without_the_breaker_names_the_failing_connects() {
    let (f, code) = first_finding("db-outage-no-breaker");
    assert_eq!(f["severity"], "critical");
    assert_eq!(code, 2);
    assert!(f["message"]
        .as_str()
        .unwrap_or_default()
        .contains("the breaker is off"));
}

#[test]
fn spike_trips_the_anomaly_rule() {
    let (f, code) = first_finding("spike");
    assert_eq!(f["severity"], "warning");
    assert_eq!(code, 1);
}

#[test]
fn min_idle_0_names_the_cold_start() {
    let (f, code) = first_finding("trap-min-idle-0");
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("min_idle is 0"),
        "{f}"
    );
    assert_eq!(code, 0, "an info finding: healthy, but named");
}

#[test]
fn short_abandon_timeout_is_named() {
    let (f, code) = first_finding("trap-abandon");
    assert_eq!(f["severity"], "warning");
    assert_eq!(code, 1);
}

#[test]
fn a_validation_timeout_as_long_as_the_acquire_timeout_is_named() {
    let (f, code) = first_finding("trap-validation-timeout");
    assert_eq!(f["severity"], "critical");
    assert_eq!(f["pool"], "legacy-service");
    let message = f["message"].as_str().unwrap_or_default();
    assert!(message.contains("validation_timeout (3s)"), "{f}");
    assert_eq!(code, 2);
}

#[test]
fn nested_acquire_names_both_sites() {
    let (f, code) = first_finding("nested-acquire");
    assert_eq!(f["severity"], "critical");
    assert_eq!(code, 2);
    let msg = f["message"].as_str().unwrap_or_default();
    let (outer, inner) = (
        site("conn.rs", "nested-outer"),
        site("conn.rs", "nested-inner"),
    );
    assert!(
        msg.contains(&format!("held at crates/poolguard-cli/src/lab/{outer}"))
            && msg.contains(&format!("waiting at crates/poolguard-cli/src/lab/{inner}")),
        "held at {outer}, waiting at {inner}: {msg}"
    );
}

#[test]
fn put_only_threads_are_named() {
    let (_, code) = first_finding("put-only");
    assert_eq!(code, 1);
}

#[test]
fn oversized_buffers_are_named() {
    let (_, code) = first_finding("oversized");
    assert_eq!(code, 1);
}

#[test]
fn long_holds_name_the_site() {
    let (f, code) = first_finding("long-holds");
    assert_eq!(code, 1);
    let msg = f["message"].as_str().unwrap_or_default();
    let s = site("objects.rs", "long-hold");
    assert!(msg.contains(&s), "{s} in {msg}");
}

#[test]
fn finalizer_stall_names_the_stuck_drop() {
    let (f, code) = first_finding("finalizer-stall");
    assert_eq!(code, 2);
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`socket-close`"),
        "{f}"
    );
}

#[test]
fn an_unreachable_endpoint_exits_3_and_a_password_is_never_printed() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = Command::new(BIN)
        .args([
            "doctor",
            &format!("http://127.0.0.1:{port}/"),
            "--for",
            "0s",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the endpoint"), "{err}");
    let out = Command::new(BIN)
        .args(["doctor", "http://admin:s3cret@127.0.0.1:1/", "--for", "0s"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("s3cret"), "{all}");
    assert!(all.contains("user info"), "{all}");
}

#[test]
fn end_of_input_stops_lab_serve() {
    let mut live = serve("healthy");
    // Closing stdin is the stop signal; the process then exits 0 (well before --for).
    drop(live.stdin.take());
    let status = live.child.wait().expect("wait");
    assert!(status.success(), "{status}");
}

/// A service without `/pools`: a bare HTTP server answering `/metrics` only (404 otherwise).
fn metrics_only(registry: poolguard::diag::Registry) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let (status, body) = if head.starts_with("GET /metrics ") {
                ("200 OK", registry.prometheus())
            } else {
                ("404 Not Found", "not here\n".to_owned())
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/")
}

#[test]
fn without_pools_the_doctor_reads_metrics_and_judges_the_figures() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let registry = poolguard::diag::Registry::new();
    // Every connection held for the whole window: the pool is exhausted.
    let (pool, held) = rt.block_on(async {
        let pool = poolguard::conn::Pool::builder(poolguard_faults::sim::SimManager::new())
            .name("metrics-only")
            .max_size(2)
            .build()
            .expect("valid");
        let held = (
            pool.get().await.expect("one"),
            pool.get().await.expect("two"),
        );
        (pool, held)
    });
    registry.register(&pool);
    let url = metrics_only(registry);
    let (code, v) = doctor(&url);
    assert_eq!(v["source"], "/metrics", "{v:#}");
    assert_eq!(v["findings"][0]["code"], "doctor.exhausted", "{v:#}");
    assert!(
        v["findings"][0]["evidence"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("in use at max 2/2"),
        "{v:#}"
    );
    assert_eq!(code, 1);
    drop(held);
}

#[test]
fn a_doctor_usage_error_is_3_not_critical() {
    let out = Command::new(BIN)
        .args(["doctor", "http://127.0.0.1:1/", "--for", "soon"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--for"));
    // Elsewhere usage errors stay 2.
    let out = Command::new(BIN)
        .args(["lab", "--nope"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
