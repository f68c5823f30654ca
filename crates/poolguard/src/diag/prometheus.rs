//! A writer of the Prometheus text exposition format (version 0.0.4), grouped by family.
//!
//! Every series is buffered under its family (metric name) in the order families first
//! appear, and [`PrometheusWriter::finish`] writes each family once: one `# HELP`, one
//! `# TYPE`, then all its series, whichever pools added them. So one writer can take any
//! number of pools of any kind (see [`render`]) and the text still passes the reference
//! parsers (`promtool check metrics`), which reject a second `HELP` or `TYPE` line for a
//! family, or a family whose series are split.
//!
//! Why a small fixed writer rather than the `prometheus-client` crate: that crate encodes
//! OpenMetrics text (a different content type, `# EOF`, `_total` handled by the encoder),
//! and registering one collector per pool would repeat the families this writer groups. The
//! pools' figures are already snapshots, so a writer of the 0.0.4 text is all that is needed,
//! with no dependency and no registry to keep alive.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{Diagnose, HistogramSnapshot, BUCKET_EDGES};

/// The HTTP `Content-Type` of the text [`PrometheusWriter`] produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `le` label values of [`BUCKET_EDGES`] (seconds), then `+Inf`.
const LE: [&str; BUCKET_EDGES.len() + 1] = [
    "5e-06", "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60",
    "+Inf",
];

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: &'static str,
    body: String,
}

/// Accumulates metrics in the Prometheus text format, grouped by family.
///
/// Label values are escaped; metric names are the caller's responsibility (use
/// `snake_case` with a `poolguard_` prefix). A family keeps the help text and type of the
/// first series added under its name.
#[derive(Debug, Default)]
pub struct PrometheusWriter {
    families: Vec<Family>,
    index: HashMap<String, usize>,
    /// The family of the previous sample: pools of one kind add their families in the same
    /// order, so the next family is usually this one or the one after it (no hashing).
    last: usize,
    /// Scratch for a histogram's rendered labels (reused, so a histogram allocates nothing).
    scratch: String,
}

fn needs_escape(v: &str) -> bool {
    v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n'))
}

fn escape_into(out: &mut String, v: &str) {
    if !needs_escape(v) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `k="v",k="v"` (escaped), no braces.
fn labels_into(out: &mut String, labels: &[(&str, &str)]) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_into(out, v);
        out.push('"');
    }
}

/// A sample value: integers as integers, the rest in Rust's shortest round-trip form.
enum Value {
    Int(u64),
    Float(f64),
}

fn value_into(out: &mut String, value: Value) {
    match value {
        Value::Int(n) => {
            let _ = writeln!(out, " {n}");
        }
        Value::Float(v) if v.is_infinite() => {
            out.push_str(if v > 0.0 { " +Inf\n" } else { " -Inf\n" });
        }
        Value::Float(v) if v.is_nan() => out.push_str(" NaN\n"),
        Value::Float(v) => {
            let _ = writeln!(out, " {v}");
        }
    }
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, value: Value) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    value_into(out, value);
}

fn sample_with(out: &mut String, name: &str, labels: &[(&str, &str)], value: Value) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        labels_into(out, labels);
        out.push('}');
    }
    value_into(out, value);
}

impl PrometheusWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    fn family_index(&mut self, name: &str, help: &str, kind: &'static str) -> usize {
        for i in [self.last, self.last + 1] {
            if self.families.get(i).is_some_and(|f| f.name == name) {
                self.last = i;
                return i;
            }
        }
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let i = self.families.len();
                self.families.push(Family {
                    name: name.to_owned(),
                    help: escape_help(help),
                    kind,
                    body: String::with_capacity(256),
                });
                self.index.insert(name.to_owned(), i);
                i
            }
        };
        self.last = i;
        i
    }

    fn family(&mut self, name: &str, help: &str, kind: &'static str) -> &mut String {
        let i = self.family_index(name, help, kind);
        &mut self.families[i].body
    }

    /// A counter (monotonic total).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        let body = self.family(name, help, "counter");
        sample_with(body, name, labels, Value::Int(value));
    }

    /// A gauge (current value).
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let body = self.family(name, help, "gauge");
        sample_with(body, name, labels, Value::Float(value));
    }

    /// A duration histogram in seconds: cumulative `_bucket{le=...}` at the fixed
    /// [`BUCKET_EDGES`] (exact counts), `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
    ) {
        // The labels are escaped once, then reused by the 25 lines of the histogram.
        let mut ls = std::mem::take(&mut self.scratch);
        ls.clear();
        labels_into(&mut ls, labels);
        let prefix_len = ls.len();
        let i = self.family_index(name, help, "histogram");
        let body = &mut self.families[i].body;
        let mut cumulative = 0u64;
        for (le, n) in LE.iter().zip(h.edge_counts()) {
            cumulative += n;
            ls.truncate(prefix_len);
            if prefix_len > 0 {
                ls.push(',');
            }
            ls.push_str("le=\"");
            ls.push_str(le);
            ls.push('"');
            sample(body, name, "_bucket", &ls, Value::Int(cumulative));
        }
        ls.truncate(prefix_len);
        sample(body, name, "_sum", &ls, Value::Float(h.sum().as_secs_f64()));
        sample(body, name, "_count", &ls, Value::Int(cumulative));
        self.scratch = ls;
    }

    /// The finished text: each family once (`# HELP`, `# TYPE`, its series), in the order
    /// the families were first added.
    pub fn finish(self) -> String {
        let len = self
            .families
            .iter()
            .map(|f| f.body.len() + f.help.len() + 2 * f.name.len() + 24)
            .sum();
        let mut out = String::with_capacity(len);
        for f in &self.families {
            for (tag, text) in [("# HELP ", f.help.as_str()), ("# TYPE ", f.kind)] {
                out.push_str(tag);
                out.push_str(&f.name);
                out.push(' ');
                out.push_str(text);
                out.push('\n');
            }
            out.push_str(&f.body);
        }
        out
    }
}

/// Renders every pool in `pools` (any kinds, any number) as one Prometheus text body, each
/// family once. Serve it with [`CONTENT_TYPE`].
///
/// ```
/// use poolguard::diag::{render, Diagnose};
/// use poolguard::object::Pool;
///
/// let a = Pool::builder(String::new).name("a").build()?;
/// let b = Pool::builder(String::new).name("b").build()?;
/// let text = render(&[&a as &dyn Diagnose, &b]);
/// assert_eq!(text.matches("# HELP poolguard_object_gets_total ").count(), 1);
/// assert!(text.contains("poolguard_object_gets_total{pool=\"b\"} 0"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn render(pools: &[&dyn Diagnose]) -> String {
    let mut w = PrometheusWriter::new();
    for p in pools {
        p.write_metrics(&mut w);
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Histogram;
    use std::time::Duration;

    #[test]
    fn renders_counters_and_escaped_labels() {
        let mut w = PrometheusWriter::new();
        w.counter("poolguard_gets_total", "Gets.", &[("pool", "a\"b")], 7);
        let h = Histogram::new();
        h.record(Duration::from_millis(2));
        w.histogram(
            "poolguard_wait_seconds",
            "Wait.",
            &[("pool", "p")],
            &h.snapshot(),
        );
        let text = w.finish();
        assert!(
            text.contains("poolguard_gets_total{pool=\"a\\\"b\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE poolguard_wait_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("poolguard_wait_seconds_bucket{pool=\"p\",le=\"0.001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("poolguard_wait_seconds_bucket{pool=\"p\",le=\"0.0025\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("poolguard_wait_seconds_bucket{pool=\"p\",le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("poolguard_wait_seconds_count{pool=\"p\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn families_are_grouped_in_first_seen_order() {
        let mut w = PrometheusWriter::new();
        w.counter("a_total", "A.", &[("pool", "1")], 1);
        w.gauge("b", "B.", &[("pool", "1")], 2.0);
        w.counter("a_total", "A.", &[("pool", "2")], 3);
        let text = w.finish();
        assert_eq!(
            text,
            "# HELP a_total A.\n# TYPE a_total counter\na_total{pool=\"1\"} 1\na_total{pool=\"2\"} 3\n\
             # HELP b B.\n# TYPE b gauge\nb{pool=\"1\"} 2\n"
        );
    }

    #[test]
    fn values_and_escapes() {
        let mut w = PrometheusWriter::new();
        w.counter("c_total", "C.", &[], u64::MAX);
        w.gauge(
            "g",
            "G \\ two\nlines.",
            &[("a", "x\\y\nz"), ("b", "plain")],
            0.5,
        );
        w.gauge("g", "G.", &[], f64::INFINITY);
        w.gauge("g", "G.", &[], f64::NAN);
        w.gauge("g", "G.", &[], 3.0);
        let h = Histogram::new();
        w.histogram("h_seconds", "H.", &[], &h.snapshot());
        let text = w.finish();
        assert!(text.contains("\nc_total 18446744073709551615\n"), "{text}");
        assert!(text.contains("# HELP g G \\\\ two\\nlines.\n"), "{text}");
        assert!(
            text.contains("g{a=\"x\\\\y\\nz\",b=\"plain\"} 0.5\n"),
            "{text}"
        );
        assert!(text.contains("\ng +Inf\ng NaN\ng 3\n"), "{text}");
        assert!(
            text.contains("\nh_seconds_bucket{le=\"5e-06\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nh_seconds_sum 0\nh_seconds_count 0\n"),
            "{text}"
        );
    }

    #[test]
    fn le_labels_match_the_edges() {
        for (le, edge) in LE.iter().zip(BUCKET_EDGES) {
            let secs: f64 = le.parse().unwrap();
            assert_eq!((secs * 1e9).round() as u64, edge, "{le}");
        }
        assert_eq!(LE[LE.len() - 1], "+Inf");
    }
}
