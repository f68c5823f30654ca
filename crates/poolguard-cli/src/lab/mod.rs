//! `poolguard lab`: each scenario reproduces one well-known pool failure, with a
//! naive baseline and with poolguard, and prints a table of measured figures.

mod config_traps;
mod conn_leak;
mod db_outage;
mod finalizer_stall;
mod live;
mod pool_abuse;
mod real;
mod spike;
mod table;

use std::process::ExitCode;
use std::time::Instant;

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
        if !args.scenarios.is_empty() || args.postgres.is_some() || args.redis.is_some() {
            eprintln!("poolguard lab --serve: name the scenario with --scenario NAME (live scenarios run against the simulator only)");
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
    // An unreachable server (or a refused login) is reported once too, before the first
    // scenario, instead of once per connection scenario.
    let ctx = if selected
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
        }
    };
    let mut failed = 0;
    let (total, all) = (selected.len(), Instant::now());
    for (i, s) in selected.into_iter().enumerate() {
        // Progress: which scenario of how many is running (the tables come at its end).
        println!("\n=== lab [{}/{total}] {}: {}", i + 1, s.name, s.about);
        let t = Instant::now();
        // --postgres/--redis: the connection scenarios run against those servers instead.
        let real = (ctx.postgres.is_some() || ctx.redis.is_some())
            .then(|| real::run(s.name, &ctx))
            .flatten();
        match real.unwrap_or_else(|| (s.run)(&ctx)) {
            Ok(()) => println!("=== {} done in {:.1?}", s.name, t.elapsed()),
            Err(e) => {
                failed += 1;
                eprintln!("=== {} FAILED after {:.1?}: {e}", s.name, t.elapsed());
            }
        }
    }
    println!(
        "\n=== lab: {total} scenario(s) in {:.1?}, {failed} failed",
        all.elapsed()
    );
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
        })
    })
}
