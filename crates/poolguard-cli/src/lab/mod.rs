//! `poolguard lab`: each scenario reproduces one well-known pool failure, with a
//! naive baseline and with poolguard, and prints a table of measured figures.

mod config_traps;
mod conn_leak;
mod db_outage;
mod failover;
mod finalizer_stall;
mod html;
mod live;
mod pool_abuse;
mod real;
mod report;
mod spike;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub(crate) use report::Recorder;

#[allow(unused_imports)]
pub(crate) use table::Table;

/// Arguments of `poolguard lab`.
#[derive(Debug, clap::Args)]
pub(crate) struct LabArgs {
    /// Scenarios to run (default: all). `poolguard lab --list` names them.
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Run the connection scenarios against this PostgreSQL server instead of the simulator
    /// (e.g. `host=127.0.0.1 user=postgres dbname=test`). One server only: the lab puts its
    /// fault proxy in front of it (a list of hosts is refused).
    #[arg(long)]
    postgres: Option<String>,
    /// Run the connection scenarios against this Redis server instead of the simulator
    /// (e.g. `redis://127.0.0.1:6379`).
    #[arg(long)]
    redis: Option<String>,
    /// Also write every scenario's charts, tables and verdicts to FILE as one self-contained
    /// HTML page (no external assets).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Also write the same figures to FILE as JSON (with a `schema_version`), for scripts.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Shorter phases (outages, finalizer rounds) for a fast look; the figures are noisier.
    #[arg(long)]
    quick: bool,
    /// Run one scenario live instead, its pools served on this address (default
    /// 127.0.0.1:0, a free loopback port) with the diagnostics endpoint: the dashboard at
    /// `/`, `/pools`, `/metrics`. Prints `serving http://ADDR/` first, then `ready: ...` once
    /// the scenario's fault shows; runs until Ctrl-C, end of input or `--for`. With `--list`,
    /// lists the live scenarios and the finding `poolguard doctor` names first for each.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:0")]
    serve: Option<String>,
    /// The live scenario `--serve` runs (default: healthy, the control).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "healthy",
        requires = "serve"
    )]
    scenario: String,
    /// Stop `--serve` after this long (e.g. 60s, 10m).
    #[arg(long = "for", value_name = "DURATION", value_parser = humantime::parse_duration, requires = "serve")]
    serve_for: Option<std::time::Duration>,
}

/// What every scenario is given.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub(crate) struct LabCtx {
    pub(crate) postgres: Option<real::Postgres>,
    pub(crate) redis: Option<real::Redis>,
    /// `--quick`: shortened phases.
    pub(crate) quick: bool,
    /// Where the running scenario prints and records its tables, verdicts and series.
    pub(crate) out: Recorder,
}

/// One lab scenario.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) run: fn(&LabCtx) -> Result<(), String>,
}

/// The runtime every connection scenario runs on: 2 workers, like the machines the figures
/// are quoted for.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))
}

/// Every scenario, in the order `poolguard lab` runs them.
const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "pool-abuse",
        about: "object-pool misuse (long holds, put-only threads, #23199 oversized buffers): naive Mutex<Vec> vs poolguard",
        run: pool_abuse::run,
    },
    Scenario {
        name: "finalizer-stall",
        about: "one blocking finalizer stalls Go's single finalizer queue; the reclaimer does not",
        run: finalizer_stall::run,
    },
    Scenario {
        name: "conn-leak",
        about: "a handler that never returns its connection: the pool names the site and the holder",
        run: conn_leak::run,
    },
    Scenario {
        name: "db-outage",
        about: "backend down under load (scaled 10 s -> 3 s), then a 0.2 s restart: with the breaker vs without",
        run: db_outage::run,
    },
    Scenario {
        name: "spike",
        about: "HikariCP's spike test: 50 requests, 150 ms connects, min idle 5: connections opened",
        run: spike::run,
    },
    Scenario {
        name: "failover",
        about: "a fleet of pools soft-evicting at once (a failover), 8 x 10: paced refill vs max_concurrent_opens = max_size, peak connects and time to full",
        run: failover::run,
    },
    Scenario {
        name: "config-traps",
        about: "min idle 0 vs warm; validation timeout 30 s vs 1 s on a dead node; abandon on borrow vs maintenance",
        run: config_traps::run,
    },
];

pub(crate) fn run(args: LabArgs) -> ExitCode {
    if let Some(addr) = &args.serve {
        if args.list {
            for s in live::LIVE {
                println!("{:<22} first finding {:<22} {}", s.name, s.cause, s.about);
            }
            return ExitCode::SUCCESS;
        }
        if !args.scenarios.is_empty()
            || args.postgres.is_some()
            || args.redis.is_some()
            || args.report.is_some()
            || args.json.is_some()
        {
            eprintln!("poolguard lab --serve: name the scenario with --scenario NAME (live scenarios run against the simulator, without --report/--json)");
            return ExitCode::from(2);
        }
        return match live::parse_addr(addr) {
            Ok(addr) => live::run(addr, &args.scenario, args.serve_for),
            Err(e) => {
                eprintln!("poolguard lab: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.list {
        for s in SCENARIOS {
            println!("{:<18} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&Scenario> = if args.scenarios.is_empty() {
        SCENARIOS.iter().collect()
    } else {
        let mut v = Vec::new();
        for name in &args.scenarios {
            match SCENARIOS.iter().find(|s| s.name == name) {
                Some(s) => v.push(s),
                None => {
                    let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
                    // A connection string given without its flag lands here: hide its password.
                    eprintln!(
                        "poolguard lab: unknown scenario `{}`; known scenarios: {}",
                        crate::redact::connection_string(name),
                        known.join(", ")
                    );
                    return ExitCode::from(2);
                }
            }
        }
        v
    };
    if selected.is_empty() {
        eprintln!("poolguard lab: no scenarios are built into this binary yet");
        return ExitCode::from(2);
    }
    // Bad input is a usage error, reported once, before anything runs.
    let parsed = (
        args.postgres
            .as_deref()
            .map(real::PostgresArg::parse)
            .transpose(),
        args.redis.as_deref().map(real::RedisArg::parse).transpose(),
    );
    let (postgres, redis) = match parsed {
        (Ok(pg), Ok(r)) => (pg, r),
        (pg, r) => {
            for e in [pg.err(), r.err()].into_iter().flatten() {
                eprintln!("poolguard lab: {e}");
            }
            return ExitCode::from(2);
        }
    };
    // So is an output file that cannot be created (found now, not after the scenarios).
    let outputs = match Outputs::create(args.report.as_deref(), args.json.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("poolguard lab: {e}");
            return ExitCode::from(2);
        }
    };
    // An unreachable server (or a refused login) is reported once too, before the first
    // scenario, instead of once per connection scenario.
    let mut ctx = if selected
        .iter()
        .any(|s| real::is_connection_scenario(s.name))
    {
        match reach(postgres, redis) {
            Ok(ctx) => ctx,
            Err(e) => {
                eprintln!("poolguard lab: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        LabCtx {
            postgres: None,
            redis: None,
            quick: false,
            out: Recorder::default(),
        }
    };
    ctx.quick = args.quick;
    let mut failed = 0;
    let (total, all) = (selected.len(), Instant::now());
    let mut report = report::Report {
        schema_version: report::SCHEMA_VERSION,
        poolguard_version: env!("CARGO_PKG_VERSION"),
        quick: args.quick,
        scenarios: Vec::new(),
    };
    for (i, s) in selected.into_iter().enumerate() {
        // Progress: which scenario of how many is running, on stdout with the results and as
        // a spinner on stderr while it runs (the tables come at its end).
        println!("\n=== lab [{}/{total}] {}: {}", i + 1, s.name, s.about);
        let spinner = progress::spinner(i + 1, total, s.name);
        ctx.out = Recorder::new(Some(spinner.clone()));
        let t = Instant::now();
        // --postgres/--redis: the connection scenarios run against those servers instead.
        let real = (ctx.postgres.is_some() || ctx.redis.is_some())
            .then(|| real::run(s.name, &ctx))
            .flatten();
        let result = real.unwrap_or_else(|| (s.run)(&ctx));
        let took = t.elapsed();
        spinner.finish_and_clear();
        let mut rec = ctx.out.take();
        rec.name = s.name.to_owned();
        rec.about = s.about.to_owned();
        rec.seconds = took.as_secs_f64();
        match result {
            Ok(()) => {
                rec.ok = true;
                println!("=== {} done in {took:.1?}", s.name);
            }
            Err(e) => {
                failed += 1;
                eprintln!("=== {} FAILED after {took:.1?}: {e}", s.name);
                rec.error = Some(e);
            }
        }
        report.scenarios.push(rec);
    }
    println!(
        "\n=== lab: {total} scenario(s) in {:.1?}, {failed} failed",
        all.elapsed()
    );
    if let Err(e) = outputs.write(&report) {
        eprintln!("poolguard lab: {e}");
        return ExitCode::FAILURE;
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Connects once to each server given, directly: the lab's context.
fn reach(
    postgres: Option<real::PostgresArg>,
    redis: Option<real::RedisArg>,
) -> Result<LabCtx, String> {
    if postgres.is_none() && redis.is_none() {
        return Ok(LabCtx {
            postgres: None,
            redis: None,
            quick: false,
            out: Recorder::default(),
        });
    }
    runtime()?.block_on(async {
        Ok(LabCtx {
            postgres: match postgres {
                Some(pg) => Some(pg.reach().await?),
                None => None,
            },
            redis: match redis {
                Some(r) => Some(r.reach().await?),
                None => None,
            },
            quick: false,
            out: Recorder::default(),
        })
    })
}

/// The `--report` and `--json` files, created (empty) before any scenario runs.
#[derive(Debug)]
struct Outputs {
    html: Option<(PathBuf, std::fs::File)>,
    json: Option<(PathBuf, std::fs::File)>,
}

impl Outputs {
    fn create(
        html: Option<&std::path::Path>,
        json: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        let open = |flag: &str, path: Option<&std::path::Path>| {
            path.map(|p| {
                std::fs::File::create(p)
                    .map(|f| (p.to_path_buf(), f))
                    .map_err(|e| {
                        format!(
                            "{flag} {}: cannot create the file: {e}; give a path in a writable directory",
                            p.display()
                        )
                    })
            })
            .transpose()
        };
        Ok(Self {
            html: open("--report", html)?,
            json: open("--json", json)?,
        })
    }

    /// Writes the report into each file asked for.
    fn write(self, report: &report::Report) -> Result<(), String> {
        use std::io::Write as _;
        let put = |flag: &str, (path, mut file): (PathBuf, std::fs::File), body: String| {
            file.write_all(body.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|e| format!("{flag} {}: cannot write the file: {e}", path.display()))?;
            Ok::<PathBuf, String>(path)
        };
        if let Some(out) = self.json {
            let body = serde_json::to_string_pretty(report)
                .map_err(|e| format!("--json: cannot serialize the report: {e}"))?;
            let path = put("--json", out, body)?;
            println!("=== lab: figures written to {} (JSON)", path.display());
        }
        if let Some(out) = self.html {
            let path = put("--report", out, html::render(report))?;
            println!("=== lab: report written to {} (HTML)", path.display());
        }
        Ok(())
    }
}

mod progress {
    use std::time::Duration;

    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    /// One spinner per scenario on stderr: hidden when stderr is not a terminal (indicatif's
    /// own rule); plain (no colour) with `NO_COLOR`.
    pub(super) fn spinner(i: usize, total: usize, name: &str) -> ProgressBar {
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let template = if colour {
            "{spinner:.cyan} [{prefix}] {elapsed:>4} {wide_msg}"
        } else {
            "{spinner} [{prefix}] {elapsed:>4} {wide_msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            pb.set_style(style);
        }
        pb.set_prefix(format!("{i}/{total} {name}"));
        pb.set_message("running");
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }
}
