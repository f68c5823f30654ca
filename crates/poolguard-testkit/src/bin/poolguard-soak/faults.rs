//! The faults, injected into the soak's OWN servers at seeded random times: PostgreSQL restart
//! (`pg_ctlcluster ... restart`) and freeze (SIGSTOP of the postmaster and its children, then
//! SIGCONT), Redis client kill (`CLIENT KILL TYPE normal`), crash (SIGKILL, then started again
//! from its config) and stall (`DEBUG SLEEP`). Every command runs under `timeout(1)`; a fault
//! that cannot be injected or lifted is recorded as a failure of the soak.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use poolguard_redis::redis;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::time::{sleep, sleep_until, Instant};

use crate::record::FaultClock;
use crate::redis::RedisAdmin;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `pg_ctlcluster <version> <cluster> restart` (fast shutdown: every session terminated).
    PgRestart,
    /// SIGSTOP of the postmaster and all its children for [`FREEZE`], then SIGCONT.
    PgFreeze,
    /// `CLIENT KILL TYPE normal` (every client but the admin).
    RedisKill,
    /// SIGKILL of redis-server, then started again from its config file.
    RedisCrash,
    /// `DEBUG SLEEP` for [`STALL`].
    RedisSleep,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::PgRestart => "pg restart",
            Kind::PgFreeze => "pg SIGSTOP",
            Kind::RedisKill => "redis CLIENT KILL",
            Kind::RedisCrash => "redis SIGKILL + start",
            Kind::RedisSleep => "redis DEBUG SLEEP",
        })
    }
}

/// How long a PostgreSQL freeze lasts.
pub const FREEZE: Duration = Duration::from_secs(2);
/// How long a Redis `DEBUG SLEEP` lasts.
pub const STALL: Duration = Duration::from_secs(2);

/// What the faults act on.
#[derive(Debug)]
pub struct Targets {
    /// `<version>/<cluster>` for pg_ctlcluster.
    pub pg_cluster: String,
    /// The cluster's `postmaster.pid`.
    pub pg_pidfile: PathBuf,
    /// The Redis server's config file (to start it again after a crash).
    pub redis_conf: PathBuf,
    /// Its pid file.
    pub redis_pidfile: PathBuf,
    /// Its port.
    pub redis_port: u16,
    /// The admin connection (CLIENT KILL, DEBUG SLEEP).
    pub redis_admin: Arc<RedisAdmin>,
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Event {
    /// Which.
    pub kind: Kind,
    /// When it started, from the start of the load.
    pub at: Duration,
    /// How long injecting and lifting it took.
    pub took: Duration,
    /// What happened, or why it failed.
    pub result: Result<String, String>,
}

/// The faults injected so far.
#[derive(Debug, Default)]
pub struct Log(Mutex<Vec<Event>>);

impl Log {
    /// Every event.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().clone()
    }
}

/// Runs `program args` under `timeout limit` (coreutils), on the blocking pool.
async fn run(program: &str, args: &[String], limit: Duration) -> Result<String, String> {
    let mut full = vec![
        "--kill-after=5".to_owned(),
        format!("{}", limit.as_secs().max(1)),
        program.to_owned(),
    ];
    full.extend(args.iter().cloned());
    let shown = format!("{program} {}", args.join(" "));
    let out = tokio::task::spawn_blocking(move || Command::new("timeout").args(&full).output())
        .await
        .map_err(|e| format!("`{shown}`: {e}"))?
        .map_err(|e| format!("`{shown}` could not be run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "`{shown}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn read_pid(path: &PathBuf) -> Result<u32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("{}: no pid on its first line", path.display()))
}

/// The parent pid in a `/proc/<pid>/stat` line (the field after the `(comm)`, which may itself
/// contain spaces and parentheses).
pub fn ppid_of_stat(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The direct children of `parent` (PostgreSQL's backends and auxiliary processes).
fn children(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (ppid_of_stat(&stat)? == parent).then_some(pid)
    })
    .collect()
}

fn signal_args(signal: &str, pids: &[u32]) -> Vec<String> {
    std::iter::once(format!("-{signal}"))
        .chain(pids.iter().map(|p| p.to_string()))
        .collect()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<(), String> {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > limit {
            return Err(format!("not within {limit:?}: {what}"));
        }
        sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Injects one fault and lifts it again (restart done, processes continued, server up).
pub async fn inject(kind: Kind, t: &Targets) -> Result<String, String> {
    let cluster: Vec<String> = t.pg_cluster.split('/').map(str::to_owned).collect();
    match kind {
        Kind::PgRestart => {
            let [version, name] = cluster.as_slice() else {
                return Err(format!(
                    "--pg-cluster {} is not <version>/<name>",
                    t.pg_cluster
                ));
            };
            let args = ["--skip-systemctl-redirect", version, name, "restart"].map(str::to_owned);
            run("pg_ctlcluster", &args, Duration::from_secs(60)).await?;
            Ok("restarted".into())
        }
        Kind::PgFreeze => {
            let postmaster = read_pid(&t.pg_pidfile)?;
            run(
                "kill",
                &signal_args("STOP", &[postmaster]),
                Duration::from_secs(5),
            )
            .await?;
            // Listed after the postmaster stopped, so it forks no new one meanwhile. A child
            // may exit between the listing and the signal: that is not a failure.
            let kids = children(postmaster);
            if !kids.is_empty() {
                let _ = run("kill", &signal_args("STOP", &kids), Duration::from_secs(5)).await;
            }
            sleep(FREEZE).await;
            if !kids.is_empty() {
                let _ = run("kill", &signal_args("CONT", &kids), Duration::from_secs(5)).await;
            }
            run(
                "kill",
                &signal_args("CONT", &[postmaster]),
                Duration::from_secs(5),
            )
            .await?;
            Ok(format!("froze {} processes for {FREEZE:?}", kids.len() + 1))
        }
        Kind::RedisKill => {
            let cmd = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .clone();
            match t.redis_admin.query(&cmd, Duration::from_secs(5)).await? {
                redis::Value::Int(n) => Ok(format!("killed {n} clients")),
                other => Err(format!("CLIENT KILL answered {other:?}")),
            }
        }
        Kind::RedisCrash => {
            let pid = read_pid(&t.redis_pidfile)?;
            run("kill", &signal_args("KILL", &[pid]), Duration::from_secs(5)).await?;
            wait_until("redis-server gone", Duration::from_secs(10), || {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            })
            .await?;
            let conf = t.redis_conf.display().to_string();
            run("redis-server", &[conf], Duration::from_secs(10)).await?;
            // Its connection died with the server.
            t.redis_admin.close();
            let port = t.redis_port;
            wait_until(
                "redis-server accepting again",
                Duration::from_secs(10),
                || port_open(port),
            )
            .await?;
            Ok("killed and started again".into())
        }
        Kind::RedisSleep => {
            let cmd = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(STALL.as_secs())
                .clone();
            t.redis_admin
                .query(&cmd, STALL + Duration::from_secs(5))
                .await?;
            Ok(format!("slept {STALL:?}"))
        }
    }
}

/// When and how often one backend's faults come.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// No fault before this (warm-up).
    pub start: Instant,
    /// No fault may start so late that it could still run past this.
    pub stop_by: Instant,
    /// Gap before each fault: uniform in this range.
    pub gap: (Duration, Duration),
    /// The longest one fault may take (so the last one ends before `stop_by`).
    pub longest: Duration,
}

/// Injects `kinds` in seeded random order (each kind once per round, so a short run sees each)
/// at seeded random gaps, until the schedule ends. Returns when the last fault is lifted.
pub async fn run_schedule(
    kinds: Vec<Kind>,
    mut rng: StdRng,
    plan: Schedule,
    origin: Instant,
    targets: Arc<Targets>,
    clock: Arc<FaultClock>,
    log: Arc<Log>,
) {
    let mut bag: Vec<Kind> = Vec::new();
    sleep_until(plan.start).await;
    loop {
        let gap = rng.random_range(plan.gap.0..=plan.gap.1);
        let at = Instant::now() + gap;
        if at + plan.longest > plan.stop_by {
            return;
        }
        if bag.is_empty() {
            bag = kinds.clone();
            bag.shuffle(&mut rng);
        }
        let kind = bag.pop().expect("refilled above");
        sleep_until(at).await;
        clock.begin();
        let t0 = Instant::now();
        let result = inject(kind, &targets).await;
        clock.end();
        let event = Event {
            kind,
            at: t0 - origin,
            took: t0.elapsed(),
            result,
        };
        match &event.result {
            Ok(what) => eprintln!(
                "soak: +{:>6.1?} {kind}: {what} ({:.1?})",
                event.at, event.took
            ),
            Err(why) => eprintln!("soak: +{:>6.1?} {kind} FAILED: {why}", event.at),
        }
        log.0.lock().push(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_is_read_past_the_command_name() {
        let stat = "1234 (postgres: soak (x) idle) S 77 1234 1234 0 -1 4194560";
        assert_eq!(ppid_of_stat(stat), Some(77));
        assert_eq!(ppid_of_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = std::process::id();
        let parent = ppid_of_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(children(parent).contains(&me));
    }
}
