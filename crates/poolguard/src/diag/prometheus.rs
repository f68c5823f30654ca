//! A minimal writer of the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;

use super::HistogramSnapshot;

/// Accumulates metrics in the Prometheus text format.
///
/// Label values are escaped; metric names are the caller's responsibility (use
/// `snake_case` with a `poolguard_` prefix).
#[derive(Debug, Default)]
pub struct PrometheusWriter {
    out: String,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl PrometheusWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A counter (monotonic total).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.header(name, help, "counter");
        self.sample(name, labels, value as f64);
    }

    /// A gauge (current value).
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.header(name, help, "gauge");
        self.sample(name, labels, value);
    }

    /// A latency histogram as a summary in seconds (quantiles 0.5, 0.95, 0.99, plus sum/count).
    pub fn summary(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        h: &HistogramSnapshot,
    ) {
        self.header(name, help, "summary");
        for (q, qs) in [(0.5, "0.5"), (0.95, "0.95"), (0.99, "0.99")] {
            let mut l: Vec<(&str, &str)> = labels.to_vec();
            l.push(("quantile", qs));
            self.sample(name, &l, h.quantile(q).as_secs_f64());
        }
        self.sample(&format!("{name}_sum"), labels, h.sum().as_secs_f64());
        self.sample(&format!("{name}_count"), labels, h.count() as f64);
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.out
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
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
        w.summary(
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
            text.contains("# TYPE poolguard_wait_seconds summary"),
            "{text}"
        );
        assert!(
            text.contains("poolguard_wait_seconds_count{pool=\"p\"} 1"),
            "{text}"
        );
    }
}
