//! Headless Chromium for the tests that check what a person sees: driven through
//! chromedriver (WebDriver) with `fantoccini`.
//!
//! [`Browser::start`] finds `chromium` and `chromedriver` (Debian packages `chromium` and
//! `chromium-driver`), installing them with `scripts/services.sh chromium` when they are
//! missing, and fails with an error naming that command when it cannot: a browser test never
//! skips. chromedriver listens on the first free port of 9300-9319 (loopback); Chromium runs
//! with exactly the flags in [`CHROMIUM_FLAGS`] and a fresh `--user-data-dir` in a temporary
//! directory, removed with the [`Browser`].
//!
//! Every page opened with [`Browser::open`] gets a collector installed before its own scripts
//! run: uncaught errors, unhandled promise rejections and `console.error` calls land in
//! `window.__poolguardErrors`, read by [`Browser::console_errors`]. Every WebDriver call is
//! bounded by [`COMMAND_TIMEOUT`].
//!
//! ```no_run
//! # async fn run() -> Result<(), poolguard_testkit::browser::BrowserError> {
//! use poolguard_testkit::browser::Browser;
//!
//! let browser = Browser::start().await?;
//! browser.open("http://127.0.0.1:8080/").await?;
//! let title = browser.eval("return document.title").await?;
//! assert!(browser.console_errors().await?.is_empty());
//! let png = browser.screenshot("dashboard").await?; // target/screenshots/dashboard.png
//! # drop((title, png));
//! browser.close().await;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The flags Chromium runs with (besides `--user-data-dir`).
pub const CHROMIUM_FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The ports chromedriver may listen on (the first free one is taken).
pub const DRIVER_PORTS: std::ops::RangeInclusive<u16> = 9300..=9319;

/// The deadline of every WebDriver command (a new session included).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The deadline for chromedriver to say it is listening.
pub const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the browser could not do what was asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum BrowserError {
    /// `chromium` or `chromedriver` is not installed and could not be installed.
    Missing(String),
    /// chromedriver did not start on any of [`DRIVER_PORTS`].
    Driver(String),
    /// A WebDriver command failed.
    Command(String),
    /// A WebDriver command or a wait took longer than its deadline.
    Timeout(String),
    /// Writing a screenshot failed.
    Io(std::io::Error),
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(m) => write!(
                f,
                "{m}; install them with `scripts/services.sh chromium` (Debian packages chromium and chromium-driver, needs root)"
            ),
            Self::Driver(m) => write!(f, "chromedriver: {m}"),
            Self::Command(m) => write!(f, "WebDriver command failed: {m}"),
            Self::Timeout(m) => write!(f, "timed out: {m}"),
            Self::Io(e) => write!(f, "cannot write the screenshot: {e}"),
        }
    }
}

impl std::error::Error for BrowserError {}

/// The error collector, run before every document's own scripts.
const COLLECTOR: &str = r#"(() => {
  if (window.__poolguardErrors) return;
  const errors = [];
  window.__poolguardErrors = errors;
  window.addEventListener('error', e => errors.push('error: ' + (e.message || e.type) +
    (e.filename ? ' at ' + e.filename + ':' + e.lineno : '')));
  window.addEventListener('unhandledrejection', e => errors.push('unhandled rejection: ' +
    String(e.reason && (e.reason.stack || e.reason))));
  const orig = console.error.bind(console);
  console.error = (...args) => { errors.push('console.error: ' + args.map(String).join(' ')); orig(...args); };
})();"#;

/// A chromedriver-specific command: `POST /session/{id}/goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"cmd": self.cmd, "params": self.params}).to_string();
        (http::Method::POST, Some(body))
    }
}

/// A headless Chromium session and the chromedriver that drives it; both end with
/// [`Browser::close`] (or, less politely, on drop), and the profile directory is removed.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: Option<tempfile::TempDir>,
    port: u16,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("driver_port", &self.port)
            .finish_non_exhaustive()
    }
}

async fn bounded<T, E: fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, BrowserError> {
    match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BrowserError::Command(format!("{what}: {e}"))),
        Err(_) => Err(BrowserError::Timeout(format!(
            "{what} took longer than {COMMAND_TIMEOUT:?}"
        ))),
    }
}

fn on_path(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

/// The workspace's root (this crate lives in `crates/poolguard-testkit`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where screenshots go: `$CARGO_TARGET_DIR/screenshots`, or the workspace's
/// `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("screenshots")
}

/// `chromium` and `chromedriver`, installed by `scripts/services.sh chromium` when missing.
async fn binaries() -> Result<(PathBuf, PathBuf), BrowserError> {
    let find = || Some((on_path("chromium")?, on_path("chromedriver")?));
    if let Some(b) = find() {
        return Ok(b);
    }
    let script = workspace_root().join("scripts/services.sh");
    let ran = tokio::time::timeout(
        Duration::from_secs(600),
        Command::new("bash")
            .arg(&script)
            .arg("chromium")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await;
    match (ran, find()) {
        (_, Some(b)) => Ok(b),
        (Ok(Ok(s)), None) => Err(BrowserError::Missing(format!(
            "chromium or chromedriver is not on PATH, and `{} chromium` exited with {s}",
            script.display()
        ))),
        (Ok(Err(e)), None) => Err(BrowserError::Missing(format!(
            "chromium or chromedriver is not on PATH, and `{} chromium` could not run: {e}",
            script.display()
        ))),
        (Err(_), None) => Err(BrowserError::Missing(
            "chromium or chromedriver is not on PATH, and installing them took longer than 10 minutes".into(),
        )),
    }
}

/// Starts chromedriver on `port`; `Ok(None)` when the port is taken.
async fn start_driver(driver: &Path, port: u16) -> Result<Option<Child>, BrowserError> {
    let mut child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BrowserError::Driver(format!("cannot run {}: {e}", driver.display())))?;
    let Some(out) = child.stdout.take() else {
        return Err(BrowserError::Driver("no stdout".into()));
    };
    let mut lines = BufReader::new(out).lines();
    let ready = tokio::time::timeout(DRIVER_START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("started successfully") {
                return true;
            }
            if line.contains("bind() failed") || line.contains("Address already in use") {
                return false;
            }
        }
        false
    })
    .await;
    match ready {
        Ok(true) => {
            // Keep draining its output so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok(Some(child))
        }
        Ok(false) => {
            let _ = child.kill().await;
            Ok(None)
        }
        Err(_) => {
            let _ = child.kill().await;
            Err(BrowserError::Timeout(format!(
                "chromedriver did not report listening on port {port} within {DRIVER_START_TIMEOUT:?}"
            )))
        }
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a fresh profile.
    pub async fn start() -> Result<Browser, BrowserError> {
        let (chromium, driver_bin) = binaries().await?;
        let mut found = None;
        for port in DRIVER_PORTS {
            if let Some(child) = start_driver(&driver_bin, port).await? {
                found = Some((child, port));
                break;
            }
        }
        let Some((driver, port)) = found else {
            return Err(BrowserError::Driver(format!(
                "every port of {DRIVER_PORTS:?} is taken"
            )));
        };
        let profile = tempfile::Builder::new()
            .prefix("poolguard-chromium-")
            .tempdir()
            .map_err(BrowserError::Io)?;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": args}),
        );
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let mut browser = Browser {
            client: None,
            driver,
            profile: Some(profile),
            port,
        };
        let url = format!("http://127.0.0.1:{port}");
        let client = bounded("new session", builder.connect(&url)).await?;
        bounded(
            "install the error collector",
            client.issue_cmd(Cdp {
                cmd: "Page.addScriptToEvaluateOnNewDocument",
                params: json!({"source": COLLECTOR}),
            }),
        )
        .await?;
        bounded("set the window size", client.set_window_size(1400, 1000)).await?;
        browser.client = Some(client);
        Ok(browser)
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session lives until close")
    }

    /// Opens `url` and waits for it to load.
    pub async fn open(&self, url: &str) -> Result<(), BrowserError> {
        bounded(&format!("open {url}"), self.client().goto(url)).await
    }

    /// Runs `script` (a function body: `return ...` gives the value) in the page.
    pub async fn eval(&self, script: &str) -> Result<Value, BrowserError> {
        bounded("execute script", self.client().execute(script, Vec::new())).await
    }

    /// Polls `script` (a function body returning a boolean) every 50 ms until it returns true,
    /// for at most `timeout`; the error names `what`.
    pub async fn wait_until(
        &self,
        what: &str,
        script: &str,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        let poll = async {
            loop {
                if self.eval(script).await? == Value::Bool(true) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        match tokio::time::timeout(timeout, poll).await {
            Ok(r) => r,
            Err(_) => Err(BrowserError::Timeout(format!(
                "waited {timeout:?} for {what}"
            ))),
        }
    }

    /// The errors the page met so far: uncaught errors, unhandled rejections and
    /// `console.error` calls.
    pub async fn console_errors(&self) -> Result<Vec<String>, BrowserError> {
        let v = self
            .eval("return (window.__poolguardErrors || ['the error collector is missing']).slice()")
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Saves a PNG of the window to `screenshot_dir()/NAME.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf, BrowserError> {
        let png = bounded("screenshot", self.client().screenshot()).await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).map_err(BrowserError::Io)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(BrowserError::Io)?;
        Ok(path)
    }

    /// Ends the session (Chromium exits), stops chromedriver and removes the profile.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(COMMAND_TIMEOUT, client.close()).await;
        }
        let _ = self.driver.start_kill();
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, self.driver.wait()).await;
        self.kill_strays();
        drop(self.profile.take());
    }

    /// Kills any Chromium process still running on this browser's profile (found by its
    /// `--user-data-dir` in `/proc`), by pid.
    fn kill_strays(&self) {
        let Some(profile) = self.profile.as_ref() else {
            return;
        };
        let needle = format!("--user-data-dir={}", profile.path().display());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == needle.as_bytes())
            {
                let _ = std::process::Command::new("kill")
                    .arg("-9")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.start_kill();
        if self.client.is_some() {
            self.kill_strays();
        }
    }
}
