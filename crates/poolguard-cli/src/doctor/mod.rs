//! `poolguard doctor URL`: samples a running service's pools through its diagnostics
//! endpoint over a window and prints a verdict (findings ranked by severity, each with its
//! evidence and fix). Exit code 0 healthy, 1 warnings, 2 critical, 3 the endpoint could not
//! be read.

mod fetch;
mod sample;
mod verdict;

use std::process::ExitCode;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use sample::Reading;
use verdict::{Finding, Sampled};

/// The exit code when the endpoint could not be read at all (or the arguments are unusable).
pub(crate) const EXIT_UNREACHABLE: u8 = 3;

/// The most readings one run takes (`--for` / `--every`).
const MAX_READINGS: u128 = 100_000;

/// Arguments of `poolguard doctor`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 healthy (no finding above info), 1 warnings, 2 critical, 3 the endpoint could \
not be read (or an argument is unusable).

The endpoint is a poolguard diagnostics endpoint (the poolguard-http crate, or `poolguard lab \
--serve`): GET /pools is read, or /metrics (Prometheus text) when /pools is not there. The \
anomaly rule: over 3 consecutive readings, a standard deviation of in-use connections above 80 % \
of their average (when the highest uses at least a quarter of max_size) is a demand spike.")]
pub(crate) struct DoctorArgs {
    /// The service's diagnostics endpoint, e.g. http://127.0.0.1:9090/ (plain http).
    url: String,
    /// How long to watch (e.g. 30s, 500ms, 2m).
    #[arg(long = "for", default_value = "30s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// How often to read the endpoint within the window (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    every: Duration,
    /// Print the verdict as JSON (one object on stdout) instead of text.
    #[arg(long)]
    json: bool,
}

/// Where the readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Pools,
    Metrics,
}

impl Source {
    fn path(self) -> &'static str {
        match self {
            Source::Pools => "/pools",
            Source::Metrics => "/metrics",
        }
    }

    fn parse(self, body: &str) -> Result<Reading, String> {
        match self {
            Source::Pools => sample::from_pools_json(body),
            Source::Metrics => sample::from_metrics(body),
        }
    }
}

/// What a run saw.
struct Run {
    source: Source,
    samples: Vec<Sampled>,
    errors: Vec<String>,
    span: Duration,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("poolguard doctor: {msg}");
    ExitCode::from(EXIT_UNREACHABLE)
}

pub(crate) fn run(args: DoctorArgs) -> ExitCode {
    if args.every.is_zero() {
        return fail("--every must be above 0 (e.g. --every 1s)");
    }
    if args.window.as_nanos() / args.every.as_nanos() >= MAX_READINGS {
        return fail(format!(
            "--for {:?} at --every {:?} is more than {MAX_READINGS} readings: read less often",
            args.window, args.every
        ));
    }
    let shown = crate::redact::connection_string(&args.url);
    let endpoint = match fetch::Endpoint::new(&args.url) {
        Ok(e) => e,
        Err(e) => return fail(format!("{shown}: {e}")),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the tokio runtime: {e}")),
    };
    let run = match rt.block_on(watch(&endpoint, args.window, args.every)) {
        Ok(r) => r,
        Err(e) => return fail(format!("{shown}: {e}")),
    };
    let findings = verdict::judge(&run.samples);
    let code = verdict::exit_code(&findings);
    if args.json {
        let v = serde_json::json!({
            "url": shown,
            "source": run.source.path(),
            "readings": run.samples.len(),
            "window_s": run.span.as_secs_f64(),
            "every_s": args.every.as_secs_f64(),
            "verdict": verdict_word(code),
            "exit_code": code,
            "findings": findings,
            "errors": run.errors,
        });
        println!("{v:#}");
    } else {
        print_text(&shown, &run, args.every, &findings, code);
    }
    ExitCode::from(code)
}

fn verdict_word(code: u8) -> &'static str {
    match code {
        0 => "healthy",
        1 => "warning",
        _ => "critical",
    }
}

/// Reads the endpoint at `t = 0, every, 2 * every, ...` up to `window`. The source is chosen
/// on the first reading: `/pools`, or `/metrics` when `/pools` is missing or not poolguard's.
async fn watch(
    endpoint: &fetch::Endpoint,
    window: Duration,
    every: Duration,
) -> Result<Run, String> {
    // Every request has a deadline: the period, but at least 1 s and at most 10 s.
    let limit = every.clamp(Duration::from_secs(1), Duration::from_secs(10));
    let start = Instant::now();
    let (source, first) = match read(endpoint, Source::Pools, limit).await {
        Ok(r) => (Source::Pools, r),
        Err(pools) => match read(endpoint, Source::Metrics, limit).await {
            Ok(r) => (Source::Metrics, r),
            Err(metrics) => return Err(format!("cannot read the endpoint: {pools}; {metrics}")),
        },
    };
    let mut samples = vec![Sampled {
        at: Duration::ZERO,
        reading: first,
    }];
    let mut errors = Vec::new();
    let mut tick = tokio::time::interval_at(start + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let end = start + window;
    while Instant::now() + every <= end + every / 2 {
        let at = tick.tick().await;
        if at > end {
            break;
        }
        match read(endpoint, source, limit).await {
            Ok(reading) => samples.push(Sampled {
                at: at - start,
                reading,
            }),
            Err(e) => errors.push(format!("at {:.1} s: {e}", (at - start).as_secs_f64())),
        }
    }
    let span = samples.last().map(|s| s.at).unwrap_or_default();
    Ok(Run {
        source,
        samples,
        errors,
        span,
    })
}

async fn read(
    endpoint: &fetch::Endpoint,
    source: Source,
    limit: Duration,
) -> Result<Reading, String> {
    let body = endpoint.get(source.path(), limit).await?;
    source
        .parse(&body)
        .map_err(|e| format!("{}: {e}", source.path()))
}

fn print_text(url: &str, run: &Run, every: Duration, findings: &[Finding], code: u8) {
    let pools = run
        .samples
        .last()
        .map(|s| s.reading.pools.len())
        .unwrap_or(0);
    println!(
        "poolguard doctor {url}: {} readings of {} over {:.1} s (every {every:?}), {pools} pools",
        run.samples.len(),
        run.source.path(),
        run.span.as_secs_f64()
    );
    let count = |s| findings.iter().filter(|f| f.severity == s).count();
    println!(
        "verdict: {} ({} critical, {} warnings, {} info)",
        verdict_word(code).to_uppercase(),
        count(sample::Severity::Critical),
        count(sample::Severity::Warning),
        count(sample::Severity::Info)
    );
    for (i, f) in findings.iter().enumerate() {
        println!(
            "\n{}. [{}] {} ({}): {}",
            i + 1,
            f.severity.as_str(),
            f.code,
            f.pool,
            f.message
        );
        if f.seen_in > 0 {
            println!("   seen in {} of {} readings", f.seen_in, run.samples.len());
        }
        for e in &f.evidence {
            println!("   evidence: {e}");
        }
        println!("   fix: {}", f.fix);
    }
    for e in &run.errors {
        println!("\nreading failed {e}");
    }
}
