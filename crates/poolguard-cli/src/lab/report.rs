//! The lab's results as data: what every scenario printed (its tables, each with a verdict
//! computed from the table's figures) and the time series it recorded (naive vs poolguard),
//! serializable for `--json` and drawn by [`super::html`] for `--report`.
//!
//! # JSON schema (`schema_version` 1)
//!
//! ```text
//! { "schema_version": 1, "poolguard_version": "0.1.0", "quick": false,
//!   "scenarios": [ { "name", "about", "ok": bool, "error": string|null, "seconds": f64,
//!       "notes": [string],                       // the scenario's other output lines
//!       "tables": [ { "section": string|null,    // e.g. "PostgreSQL" for --postgres runs
//!                     "header": [string], "rows": [[string]], "verdict": string } ],
//!       "charts": [ { "section": string|null, "title": string,
//!                     "x": { "label": string, "unit": UNIT, "log": bool },
//!                     "y": { "label": string, "unit": UNIT, "log": bool },
//!                     "marks": [ { "x": f64, "label": string } ],  // e.g. outage begins
//!                     "series": [ { "name": string, "role": "naive"|"poolguard",
//!                                   "points": [[x, y]] } ] } ] } ] }
//! ```
//!
//! `UNIT` is `"seconds"`, `"bytes"`, `"count"` or `"percentile"` (0-100); times are in
//! seconds (from the start of the measured phase), byte counts in bytes. A field is only ever
//! added under the same `schema_version`; a removal or a change of meaning bumps it.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use poolguard::diag::HistogramSnapshot;
use serde::Serialize;

use super::Table;

/// The version of the JSON layout above.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Everything one `poolguard lab` run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) schema_version: u32,
    pub(crate) poolguard_version: &'static str,
    /// `--quick`: the scenarios ran with shortened phases.
    pub(crate) quick: bool,
    pub(crate) scenarios: Vec<ScenarioReport>,
}

/// One scenario's results.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ScenarioReport {
    pub(crate) name: String,
    pub(crate) about: String,
    pub(crate) ok: bool,
    pub(crate) error: Option<String>,
    pub(crate) seconds: f64,
    pub(crate) notes: Vec<String>,
    pub(crate) tables: Vec<TableData>,
    pub(crate) charts: Vec<Chart>,
}

/// A printed table and its verdict.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TableData {
    pub(crate) section: Option<String>,
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
    pub(crate) verdict: String,
}

/// What an axis measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Unit {
    Seconds,
    Bytes,
    Count,
    /// 0-100.
    Percentile,
}

/// One axis of a chart.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Axis {
    pub(crate) label: String,
    pub(crate) unit: Unit,
    /// Logarithmic scale (latencies that span microseconds to seconds).
    pub(crate) log: bool,
}

impl Axis {
    pub(crate) fn new(label: impl Into<String>, unit: Unit) -> Self {
        Self {
            label: label.into(),
            unit,
            log: false,
        }
    }
    pub(crate) fn log(mut self) -> Self {
        self.log = true;
        self
    }
}

/// Which side of the comparison a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    Naive,
    Poolguard,
}

/// One line of a chart.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) points: Vec<[f64; 2]>,
}

impl Series {
    pub(crate) fn new(name: impl Into<String>, role: Role, points: Vec<[f64; 2]>) -> Self {
        Self {
            name: name.into(),
            role,
            points,
        }
    }
}

/// A vertical marker (an outage begins, the server is back).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Mark {
    pub(crate) x: f64,
    pub(crate) label: String,
}

/// A chart of recorded series.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Chart {
    pub(crate) section: Option<String>,
    pub(crate) title: String,
    pub(crate) x: Axis,
    pub(crate) y: Axis,
    pub(crate) marks: Vec<Mark>,
    pub(crate) series: Vec<Series>,
}

impl Chart {
    pub(crate) fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Self {
            section: None,
            title: title.into(),
            x,
            y,
            marks: Vec::new(),
            series: Vec::new(),
        }
    }
    pub(crate) fn series(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }
    pub(crate) fn mark(mut self, x: f64, label: impl Into<String>) -> Self {
        self.marks.push(Mark {
            x,
            label: label.into(),
        });
        self
    }
}

/// A latency distribution as chart points: (percentile, seconds) at p50 ... max.
pub(crate) fn percentiles(s: &HistogramSnapshot) -> Vec<[f64; 2]> {
    if s.count() == 0 {
        return Vec::new();
    }
    [50.0, 75.0, 90.0, 95.0, 99.0, 99.9]
        .into_iter()
        .map(|p| [p, s.quantile(p / 100.0).as_secs_f64()])
        .chain([[100.0, s.max().as_secs_f64()]])
        .collect()
}

/// The chart of latency distributions, one series per histogram.
pub(crate) fn latency_chart(title: &str, dists: &[(&str, Role, &HistogramSnapshot)]) -> Chart {
    let mut c = Chart::new(
        title,
        Axis::new("percentile", Unit::Percentile),
        Axis::new("latency", Unit::Seconds).log(),
    );
    for (name, role, s) in dists {
        c = c.series(Series::new(*name, *role, percentiles(s)));
    }
    c
}

/// Whether stdout gets colour: a terminal, and `NO_COLOR` unset or empty.
pub(crate) fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[derive(Debug, Default)]
struct State {
    report: ScenarioReport,
    section: Option<String>,
}

/// Where a scenario puts its output: every line, table (with its verdict) and chart is
/// printed to stdout (lines and tables) and kept for the report. Clones share one record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder {
    state: Arc<Mutex<State>>,
    /// Shown while the scenario runs; printing suspends it so lines do not tear.
    progress: Option<indicatif::ProgressBar>,
    /// Nothing goes to stdout (unit tests that only look at the record).
    quiet: Arc<AtomicBool>,
}

impl Recorder {
    pub(crate) fn new(progress: Option<indicatif::ProgressBar>) -> Self {
        Self {
            progress,
            ..Self::default()
        }
    }

    /// A recorder that prints nothing (for tests of the record).
    #[cfg(test)]
    pub(crate) fn silent() -> Self {
        let r = Self::default();
        r.quiet.store(true, Ordering::Relaxed);
        r
    }

    fn print(&self, text: &str) {
        if self.quiet.load(Ordering::Relaxed) {
            return;
        }
        match &self.progress {
            Some(p) => p.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    /// The running scenario's current step, on the progress spinner (stderr).
    pub(crate) fn step(&self, what: impl Into<String>) {
        if let Some(p) = &self.progress {
            p.set_message(what.into());
        }
    }

    /// Tables and charts recorded from now on belong to `section` (a real backend's name).
    pub(crate) fn section(&self, section: Option<String>) {
        self.state.lock().section = section;
    }

    /// Prints a line and keeps it as a note.
    pub(crate) fn say(&self, line: impl Into<String>) {
        let line = line.into();
        self.print(&line);
        self.state.lock().report.notes.push(line);
    }

    /// Prints a table with its verdict under it, and keeps both.
    pub(crate) fn table(&self, t: &Table, verdict: impl Into<String>) {
        let verdict = verdict.into();
        let shown = if colour_stdout() {
            console::style(format!("verdict: {verdict}"))
                .bold()
                .force_styling(true)
                .to_string()
        } else {
            format!("verdict: {verdict}")
        };
        self.print(&format!("{}\n{shown}", t.render()));
        let mut st = self.state.lock();
        let section = st.section.clone();
        st.report.tables.push(TableData {
            section,
            header: t.header().to_vec(),
            rows: t.rows().to_vec(),
            verdict,
        });
    }

    /// Keeps a chart.
    pub(crate) fn chart(&self, mut c: Chart) {
        let mut st = self.state.lock();
        c.section = st.section.clone();
        st.report.charts.push(c);
    }

    /// What was recorded so far.
    pub(crate) fn take(&self) -> ScenarioReport {
        std::mem::take(&mut self.state.lock().report)
    }
}

/// Samples a value at a fixed period on its own thread, off the measured code's path:
/// `stop` returns every sample as (seconds since start, value).
#[derive(Debug)]
pub(crate) struct Sampler<T> {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Vec<(f64, T)>>,
    t0: Instant,
}

impl<T: Send + 'static> Sampler<T> {
    /// Starts sampling `read` every `period` (the first sample at once). `capacity`: room
    /// reserved up front, so sampling allocates nothing until it is exceeded.
    pub(crate) fn start(
        period: Duration,
        capacity: usize,
        mut read: impl FnMut() -> T + Send + 'static,
    ) -> Self {
        let (stop, rx) = mpsc::channel::<()>();
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut v = Vec::with_capacity(capacity);
            let mut next = t0;
            loop {
                v.push((t0.elapsed().as_secs_f64(), read()));
                next += period;
                let wait = next.saturating_duration_since(Instant::now());
                // A message or a hung-up sender both mean stop; a timeout is the next tick.
                if !matches!(rx.recv_timeout(wait), Err(mpsc::RecvTimeoutError::Timeout)) {
                    break;
                }
            }
            v.push((t0.elapsed().as_secs_f64(), read()));
            v
        });
        Self { stop, thread, t0 }
    }

    /// When sampling started (the samples' time origin).
    pub(crate) fn started(&self) -> Instant {
        self.t0
    }

    /// Stops and returns the samples (empty if the sampling thread panicked).
    pub(crate) fn stop(self) -> Vec<(f64, T)> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// One field of samples as chart points, times shifted by `-offset` seconds.
pub(crate) fn points<T>(samples: &[(f64, T)], offset: f64, f: impl Fn(&T) -> f64) -> Vec<[f64; 2]> {
    samples.iter().map(|(t, v)| [t - offset, f(v)]).collect()
}

/// `a` as a multiple of `b` ("12x"), for verdicts; "-" when `b` is zero.
pub(crate) fn times(a: f64, b: f64) -> String {
    if b <= 0.0 || !a.is_finite() || !b.is_finite() {
        return "-".into();
    }
    let r = a / b;
    if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.1}x")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolguard::diag::Histogram;

    #[test]
    fn percentiles_rise_to_the_max_and_an_empty_histogram_has_none() {
        let h = Histogram::new();
        assert!(percentiles(&h.snapshot()).is_empty());
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p = percentiles(&h.snapshot());
        assert_eq!(p.first().map(|p| p[0]), Some(50.0));
        assert_eq!(p.last().copied(), Some([100.0, 0.1]));
        assert!(p.windows(2).all(|w| w[0][1] <= w[1][1]), "{p:?}");
    }

    #[test]
    fn the_sampler_returns_samples_in_time_order_until_stopped() {
        let (tx, rx) = mpsc::channel::<()>();
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = Arc::clone(&n);
        let s = Sampler::start(Duration::from_millis(1), 16, move || {
            let _ = tx.send(());
            seen.fetch_add(1, Ordering::Relaxed)
        });
        // Three samples taken (events, not sleeps), then stop.
        for _ in 0..3 {
            rx.recv().expect("a sample");
        }
        let v = s.stop();
        assert!(v.len() >= 3, "{v:?}");
        assert!(v.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
    }

    #[test]
    fn the_recorder_keeps_tables_with_verdicts_and_charts_with_their_section() {
        let r = Recorder::silent();
        let mut t = Table::new(["pool", "failures"]);
        t.row(["naive", "3"]);
        r.say("a note");
        r.section(Some("PostgreSQL".into()));
        r.table(&t, "poolguard failed 0 times instead of 3");
        r.chart(Chart::new(
            "c",
            Axis::new("t", Unit::Seconds),
            Axis::new("n", Unit::Count),
        ));
        let rep = r.take();
        assert_eq!(rep.notes, ["a note"]);
        assert_eq!(rep.tables[0].rows, [["naive", "3"]]);
        assert_eq!(
            rep.tables[0].verdict,
            "poolguard failed 0 times instead of 3"
        );
        assert_eq!(rep.tables[0].section.as_deref(), Some("PostgreSQL"));
        assert_eq!(rep.charts[0].section.as_deref(), Some("PostgreSQL"));
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["charts"][0]["x"]["unit"], "seconds");
    }

    #[test]
    fn times_reads_as_a_ratio() {
        assert_eq!(times(30.0, 3.0), "10x");
        assert_eq!(times(3.0, 2.0), "1.5x");
        assert_eq!(times(1.0, 0.0), "-");
    }
}
