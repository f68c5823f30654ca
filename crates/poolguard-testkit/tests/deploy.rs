//! What operators load into their own monitoring stack, `deploy/prometheus/poolguard-rules.yml`
//! and `deploy/grafana/poolguard-dashboard.json`, checked against the exporter:
//!
//! - `promtool check rules` and `promtool test rules` pass;
//! - every dashboard expression is valid PromQL;
//! - every metric (and label) the rules and the dashboard query is one the core renders for
//!   real pools of every kind (an object pool, a reclaimer, a connection pool);
//! - a real Prometheus server scraping a service whose connection pool is exhausted by leaked
//!   connections receives those series under the expected names and fires the matching alerts.
//!
//! `promtool` and `prometheus` come from the Debian package `prometheus`, which
//! `scripts/services.sh prometheus` installs. These tests fail, never skip, without them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poolguard::conn;
use poolguard::diag::{Diagnose, PrometheusWriter};
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::NoopManager;
use regex::Regex;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yaml_rust2::{Yaml, YamlLoader};

// ------------------------------------------------------------------------------------------
// The shipped files.

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
fn rules_path() -> PathBuf {
    repo().join("deploy/prometheus/poolguard-rules.yml")
}
fn rules_test_path() -> PathBuf {
    repo().join("deploy/prometheus/poolguard-rules.test.yml")
}
fn dashboard_path() -> PathBuf {
    repo().join("deploy/grafana/poolguard-dashboard.json")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// One rule of the shipped file.
#[derive(Debug, Clone)]
struct Rule {
    /// The alert's or the recorded series' name.
    name: String,
    alert: bool,
    expr: String,
    severity: Option<String>,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

fn yaml_str(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        _ => None,
    }
}

fn yaml_map(y: &Yaml) -> BTreeMap<String, String> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((yaml_str(k)?, yaml_str(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

fn load_rules(text: &str) -> Vec<Rule> {
    let docs = YamlLoader::load_from_str(text).expect("the rules file is YAML");
    let groups = docs[0]["groups"].as_vec().expect("a `groups` list");
    let mut out = Vec::new();
    for g in groups {
        for r in g["rules"].as_vec().expect("each group has `rules`") {
            let (name, alert) = match (yaml_str(&r["alert"]), yaml_str(&r["record"])) {
                (Some(a), None) => (a, true),
                (None, Some(rec)) => (rec, false),
                _ => panic!("a rule is either an alert or a record: {r:?}"),
            };
            let labels = yaml_map(&r["labels"]);
            out.push(Rule {
                expr: yaml_str(&r["expr"]).unwrap_or_else(|| panic!("{name} has no expr")),
                severity: labels.get("severity").cloned(),
                annotations: yaml_map(&r["annotations"]),
                labels,
                name,
                alert,
            });
        }
    }
    out
}

fn rules() -> Vec<Rule> {
    load_rules(&read(&rules_path()))
}

/// Every PromQL expression of the dashboard (panel targets and query variables), with
/// Grafana's variables replaced by values Prometheus accepts.
fn dashboard_exprs() -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(&read(&dashboard_path())).expect("the dashboard is JSON");
    let mut out = Vec::new();
    fn panels(v: &Value, out: &mut Vec<(String, String)>) {
        for p in v.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((title.clone(), e.to_owned()));
                }
            }
            panels(&p["panels"], out);
        }
    }
    panels(&d["panels"], &mut out);
    let label_values = Regex::new(r"^label_values\((.*),\s*\w+\)$").unwrap();
    for v in d["templating"]["list"].as_array().expect("templating.list") {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .expect("a query variable has a query");
        let sel = label_values.captures(q).unwrap_or_else(|| {
            panic!("variable {}: label_values(selector, label): {q}", v["name"])
        })[1]
            .to_owned();
        out.push((format!("variable {}", v["name"]), sel));
    }
    out.into_iter()
        .map(|(t, e)| {
            let e = e
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "1m")
                .replace("$pool", ".*")
                .replace("$reclaimer", ".*");
            (t, e)
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// What an expression queries.

/// A series selector in an expression: a metric name (or `__name__` regex) and its label
/// matchers.
#[derive(Debug, Clone)]
struct Selector {
    /// The metric name, or `None` for `{__name__=~"..."}`.
    name: Option<String>,
    /// (label, operator, value); `__name__` matchers included.
    matchers: Vec<(String, String, String)>,
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
];

/// Aggregation operators: `sum by (pool) (...)` puts the grouping before the parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// The selectors of a PromQL expression. A small lexer, enough for what the shipped files
/// use: string literals are skipped, `[...]` ranges are skipped, `by (...)`-style label lists
/// are not selectors, an identifier followed by `(` is a function or aggregation.
fn selectors(expr: &str) -> Vec<Selector> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let skip_ws = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    let mut after_grouping = false;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_string(b, i);
        } else if c == b'[' {
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i += 1;
        } else if c == b'{' {
            let (m, j) = matchers(expr, i);
            out.push(Selector {
                name: None,
                matchers: m,
            });
            i = j;
        } else if c.is_ascii_digit() || c == b'.' {
            // A number (or a duration such as `10m` after `offset`).
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let j = skip_ws(i);
            let lower = word.to_ascii_lowercase();
            if KEYWORDS.contains(&lower.as_str()) {
                after_grouping = matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
                continue;
            }
            if (j < b.len() && b[j] == b'(') || AGGREGATIONS.contains(&lower.as_str()) {
                // A function or an aggregation.
                continue;
            }
            let mut sel = Selector {
                name: Some(word.to_owned()),
                matchers: Vec::new(),
            };
            if j < b.len() && b[j] == b'{' {
                let (m, k) = matchers(expr, j);
                sel.matchers = m;
                i = k;
            }
            out.push(sel);
        } else if c == b'(' && after_grouping {
            // `by (pool, le)`: label names, not selectors.
            while i < b.len() && b[i] != b')' {
                i += 1;
            }
            i += 1;
            after_grouping = false;
        } else {
            i += 1;
        }
    }
    out
}

fn skip_string(b: &[u8], mut i: usize) -> usize {
    let q = b[i];
    i += 1;
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The matchers of `{...}` starting at `open`; returns them and the index after `}`.
fn matchers(expr: &str, open: usize) -> (Vec<(String, String, String)>, usize) {
    let close = expr[open..]
        .find('}')
        .map(|k| open + k)
        .unwrap_or_else(|| panic!("unclosed selector in {expr}"));
    let m = Regex::new(r#"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?"#)
        .unwrap();
    let body = &expr[open + 1..close];
    let found: Vec<_> = m
        .captures_iter(body)
        .map(|c| (c[1].to_owned(), c[2].to_owned(), c[3].replace("\\\\", "\\")))
        .collect();
    (found, close + 1)
}

// ------------------------------------------------------------------------------------------
// What the exporter renders.

/// The families of a Prometheus text exposition: name -> (TYPE, label name -> values).
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    /// Sample name -> label name -> values seen.
    samples: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exposition {
    fn parse(text: &str) -> Self {
        let mut e = Exposition::default();
        let sample = Regex::new(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+$").unwrap();
        let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)""#).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                if let (Some(n), Some(t)) = (it.next(), it.next()) {
                    e.types.insert(n.to_owned(), t.to_owned());
                }
            } else if line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                let c = sample
                    .captures(line)
                    .unwrap_or_else(|| panic!("not a sample line: {line}"));
                let entry = e.samples.entry(c[1].to_owned()).or_default();
                if let Some(ls) = c.get(3) {
                    for l in label.captures_iter(ls.as_str()) {
                        entry
                            .entry(l[1].to_owned())
                            .or_default()
                            .insert(l[2].to_owned());
                    }
                }
            }
        }
        e
    }

    /// The labels of the samples a query of `name` reads, if the exporter emits it: a
    /// sample name, or a histogram family's `_bucket`/`_sum`/`_count`.
    fn emitted(&self, name: &str) -> Option<BTreeMap<String, BTreeSet<String>>> {
        if let Some(s) = self.samples.get(name) {
            return Some(s.clone());
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = name.strip_suffix(suffix) {
                if self.types.get(family).map(String::as_str) == Some("histogram") {
                    return Some(self.samples.get(name).cloned().unwrap_or_default());
                }
            }
        }
        None
    }
}

/// Real pools of every kind, with some traffic, rendered through the core's writer.
async fn render_every_kind() -> String {
    let objects = object::Pool::builder(|| Vec::<u8>::with_capacity(64))
        .name("deploy-object")
        .build()
        .expect("object pool");
    drop(objects.get());
    let _ = objects.trim();
    let reclaimer = Reclaimer::builder()
        .name("deploy-reclaim")
        .build()
        .expect("reclaimer");
    drop(reclaimer.defer_labelled("buffer", vec![0u8; 16]));
    reclaimer
        .flush(Duration::from_secs(5))
        .expect("the drop runs on a worker");
    let conns = conn::Pool::builder(NoopManager)
        .name("deploy-conn")
        .max_size(2)
        .build()
        .expect("conn pool");
    for _ in 0..3 {
        drop(conns.get().await.expect("a connection"));
    }
    let all: Vec<&dyn Diagnose> = vec![&objects, &reclaimer, &conns];
    let mut w = PrometheusWriter::new();
    for d in all {
        d.write_metrics(&mut w);
    }
    w.finish()
}

/// The problems of `exprs` against `exp`: metrics it does not emit, labels its series do
/// not carry, matcher values it never renders. Recorded series must be recorded by `rules`.
fn check_against(
    exp: &Exposition,
    recorded: &BTreeSet<String>,
    exprs: &[(String, String)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (what, expr) in exprs {
        for sel in selectors(expr) {
            let names: Vec<String> = match &sel.name {
                Some(n) if recorded.contains(n) => continue,
                Some(n) if n.contains(':') => {
                    problems.push(format!("{what}: `{n}` is recorded by no rule"));
                    continue;
                }
                Some(n) => vec![n.clone()],
                None => {
                    let Some((_, op, re)) = sel.matchers.iter().find(|(l, _, _)| l == "__name__")
                    else {
                        problems.push(format!("{what}: a selector without a metric name"));
                        continue;
                    };
                    assert_eq!(op, "=~", "{what}: __name__ {op}");
                    let re = Regex::new(&format!("^(?:{re})$")).expect("a valid regex");
                    // Each alternative of the regex must name an emitted metric.
                    let alts = expand_alternatives(re.as_str());
                    let ns: Vec<String> = exp
                        .samples
                        .keys()
                        .filter(|n| re.is_match(n))
                        .cloned()
                        .collect();
                    if ns.len() < alts {
                        problems.push(format!(
                            "{what}: `__name__=~{re}` matches only {ns:?}, fewer than its {alts} alternatives"
                        ));
                    }
                    ns
                }
            };
            for n in names {
                if !n.starts_with("poolguard_") {
                    problems.push(format!("{what}: `{n}` is not a poolguard metric"));
                    continue;
                }
                let Some(labels) = exp.emitted(&n) else {
                    problems.push(format!("{what}: `{n}` is not emitted by the exporter"));
                    continue;
                };
                for (label, op, value) in &sel.matchers {
                    if label == "__name__" || label == "job" || label == "instance" {
                        continue;
                    }
                    let Some(values) = labels.get(label) else {
                        problems.push(format!("{what}: `{n}` has no label `{label}`"));
                        continue;
                    };
                    let ok = match op.as_str() {
                        "=" => values.contains(value),
                        "=~" => {
                            let re = Regex::new(&format!("^(?:{value})$")).expect("a valid regex");
                            value == ".*"
                                || value.split('|').all(|alt| values.iter().any(|v| v == alt))
                                    && values.iter().any(|v| re.is_match(v))
                        }
                        _ => true,
                    };
                    if !ok {
                        problems.push(format!(
                            "{what}: `{n}{{{label}{op}\"{value}\"}}` but `{label}` is one of {values:?}"
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// How many top-level alternatives a `^(?:a|b(c|d)_x)$`-style regex has (each must match).
fn expand_alternatives(re: &str) -> usize {
    // `poolguard_(conn|object)_gets_total`: one group of alternatives.
    let groups = Regex::new(r"\(([^()]*)\)").unwrap();
    groups
        .captures_iter(re)
        .map(|c| c[1].split('|').count())
        .max()
        .unwrap_or(1)
}

fn rule_exprs() -> Vec<(String, String)> {
    rules()
        .into_iter()
        .map(|r| (format!("rule {}", r.name), r.expr))
        .collect()
}

fn recorded() -> BTreeSet<String> {
    rules()
        .into_iter()
        .filter(|r| !r.alert)
        .map(|r| r.name)
        .collect()
}

// ------------------------------------------------------------------------------------------
// promtool.

fn promtool(args: &[&str], dir: &Path) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install it with `scripts/services.sh prometheus` \
                 (Debian package prometheus)"
            )
        })
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let dir = repo().join("deploy/prometheus");
    let out = promtool(&["check", "rules", "poolguard-rules.yml"], &dir);
    assert_success("promtool check rules", &out);
    let n = rules().len();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("SUCCESS: {n} rules found")),
        "promtool and this test see the same {n} rules: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = promtool(&["test", "rules", "poolguard-rules.test.yml"], &dir);
    assert_success("promtool test rules", &out);
}

#[test]
fn every_alert_is_unit_tested_firing_and_not_firing() {
    let tests = read(&rules_test_path());
    let docs = YamlLoader::load_from_str(&tests).expect("the rule tests are YAML");
    let owner = Regex::new(r#"(?:pool|reclaimer)="([^"]*)""#).unwrap();
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in docs[0]["tests"].as_vec().expect("tests") {
        // The pools (and reclaimers) the group's input series describe.
        let inputs: BTreeSet<String> = t["input_series"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|s| yaml_str(&s["series"]))
            .filter_map(|s| owner.captures(&s).map(|c| c[1].to_owned()))
            .collect();
        let mut alerting: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for a in t["alert_rule_test"].as_vec().into_iter().flatten() {
            let name = yaml_str(&a["alertname"]).expect("alertname");
            let exp = a["exp_alerts"].as_vec().cloned().unwrap_or_default();
            if exp.is_empty() {
                // A check at a time when nothing may fire.
                quiet.insert(name.clone());
            }
            let owners = alerting.entry(name.clone()).or_default();
            for e in exp {
                fired.insert(name.clone());
                let l = &e["exp_labels"];
                if let Some(o) = yaml_str(&l["pool"]).or(yaml_str(&l["reclaimer"])) {
                    owners.insert(o);
                }
            }
        }
        // An input series that never fires the group's alert is a must-not-fire case.
        for (name, owners) in alerting {
            if inputs.iter().any(|i| !owners.contains(i)) {
                quiet.insert(name);
            }
        }
    }
    for r in rules().into_iter().filter(|r| r.alert) {
        assert!(fired.contains(&r.name), "no test makes {} fire", r.name);
        assert!(
            quiet.contains(&r.name),
            "no test where {} must not fire",
            r.name
        );
    }
}

#[test]
fn every_alert_speaks_to_the_person_on_call() {
    for r in rules().into_iter().filter(|r| r.alert) {
        let sev = r.severity.as_deref();
        assert!(
            matches!(sev, Some("critical" | "warning" | "info")),
            "{}: severity {sev:?}",
            r.name
        );
        for a in ["summary", "description"] {
            let text = r.annotations.get(a).map(String::as_str).unwrap_or("");
            assert!(!text.trim().is_empty(), "{} has no {a}", r.name);
        }
        let d = &r.annotations["description"];
        assert!(
            d.contains("First"),
            "{}: the description says what to check first: {d}",
            r.name
        );
        for l in r.labels.keys() {
            assert!(
                !matches!(l.as_str(), "job" | "instance" | "le" | "quantile"),
                "{}: label `{l}` would clash with Prometheus' own",
                r.name
            );
        }
    }
}

#[test]
fn dashboard_queries_are_valid_promql_with_both_variables() {
    let d: Value = serde_json::from_str(&read(&dashboard_path())).expect("the dashboard is JSON");
    let vars: Vec<(&str, &str)> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or(""),
                v["type"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(vars.contains(&("datasource", "datasource")), "{vars:?}");
    assert!(vars.contains(&("pool", "query")), "{vars:?}");
    // Every panel reads the chosen data source.
    let text = read(&dashboard_path());
    let ds = Regex::new(r#""uid":\s*"([^"]*)""#).unwrap();
    for c in ds.captures_iter(&text) {
        if &c[1] != "${datasource}" && &c[1] != "poolguard-overview" {
            panic!("a fixed data source uid {:?}: use ${{datasource}}", &c[1]);
        }
    }
    // promtool parses every query (as recording rules of a scratch file).
    let dir = tempfile::tempdir().expect("temp dir");
    let mut yaml = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (title, e)) in dashboard_exprs().iter().enumerate() {
        yaml.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n        labels:\n          panel: {}\n",
            serde_json::to_string(e).unwrap(),
            serde_json::to_string(title).unwrap()
        ));
    }
    std::fs::write(dir.path().join("dashboard.yml"), yaml).unwrap();
    let out = promtool(&["check", "rules", "dashboard.yml"], dir.path());
    assert_success("promtool check rules on the dashboard's queries", &out);
}

#[test]
fn the_lexer_finds_names_labels_and_recorded_series() {
    let s = selectors(
        r#"histogram_quantile(0.99, sum by (le, pool) (rate(poolguard_conn_wait_seconds_bucket{pool=~".*"}[5m]))) > 0.1
           and on (pool) pool:poolguard_x:p99 offset 10m and {__name__=~"poolguard_(a|b)"}"#,
    );
    let names: Vec<_> = s.iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        names,
        [
            Some("poolguard_conn_wait_seconds_bucket".to_owned()),
            Some("pool:poolguard_x:p99".to_owned()),
            None
        ]
    );
    assert_eq!(s[0].matchers, [("pool".into(), "=~".into(), ".*".into())]);
    assert_eq!(s[2].matchers[0].2, "poolguard_(a|b)");
}

#[tokio::test]
async fn every_metric_the_rules_and_dashboard_query_is_exported() {
    let text = render_every_kind().await;
    let exp = Exposition::parse(&text);
    let mut exprs = rule_exprs();
    exprs.extend(dashboard_exprs());
    let problems = check_against(&exp, &recorded(), &exprs);
    assert!(
        problems.is_empty(),
        "the rules and dashboard query what the exporter does not render:\n  {}\n\nexporter families: {:?}",
        problems.join("\n  "),
        exp.types
    );
}

// ------------------------------------------------------------------------------------------
// A real Prometheus scraping a service in trouble.

/// A private Prometheus server: killed and its data directory removed when dropped, on every
/// path (the test's panics included).
struct PromServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` is removed after this, when the field drops.
    }
}

impl PromServer {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Starts `prometheus` on the first free port from 9091 with `config` and the rule
    /// files (name, text) beside it, and waits until it is ready.
    async fn start(config: &str, rule_files: &[(&str, String)]) -> PromServer {
        let mut last = String::new();
        for port in 9091..9191u16 {
            if TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let dir = tempfile::Builder::new()
                .prefix("poolguard-prometheus-")
                .tempdir()
                .expect("temp dir");
            std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
            for (name, text) in rule_files {
                std::fs::write(dir.path().join(name), text).unwrap();
            }
            let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let child = Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot start prometheus ({e}): install it with \
                         `scripts/services.sh prometheus` (Debian package prometheus)"
                    )
                });
            let mut server = PromServer { child, addr, dir };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(status)) = server.child.try_wait() {
                    // Lost the port to someone else, or a bad config: say which.
                    last = format!("prometheus exited ({status}):\n{}", server.log());
                    break;
                }
                if let Ok((200, _)) = http_get(addr, "/-/ready").await {
                    return server;
                }
                assert!(
                    Instant::now() < deadline,
                    "prometheus on {addr} not ready within 60 s:\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if last.contains("address already in use") {
                continue;
            }
            panic!("{last}");
        }
        panic!("no free port for prometheus in 127.0.0.1:9091..9190: {last}");
    }

    /// `/api/v1/<path>?query=...` as JSON (`data`).
    async fn api(&self, path: &str, query: Option<&str>) -> Value {
        let target = match query {
            Some(q) => format!("/api/v1/{path}?query={}", percent_encode(q)),
            None => format!("/api/v1/{path}"),
        };
        let (status, body) = http_get(self.addr, &target)
            .await
            .unwrap_or_else(|e| panic!("GET {target}: {e}"));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {target}: {status} not JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "GET {target}: {body}");
        v["data"].clone()
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET (the server closes the connection after the answer): status and body.
async fn http_get(addr: SocketAddr, target: &str) -> std::io::Result<(u16, String)> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head}")))?;
        Ok((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("no answer within 10 s")))
}

/// The shipped rules with every `for:` shortened to 2s, for a test that cannot wait minutes.
fn rules_with_short_for() -> String {
    let f = Regex::new(r"(?m)^(\s+for:\s*)\S+\s*$").unwrap();
    let text = read(&rules_path());
    let short = f.replace_all(&text, "${1}2s").into_owned();
    assert!(short.contains("for: 2s"), "the rules have `for:` durations");
    short
}

/// The service: a connection pool, an object pool and a reclaimer; `/metrics` renders all
/// three through the core's writer. [`Service::leak_connections`] starts the fault.
struct Service {
    addr: SocketAddr,
    pool: conn::Pool<NoopManager>,
    held: Vec<conn::PooledConnection<NoopManager>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Service {
    async fn start(pool_name: &str) -> Service {
        let pool = conn::Pool::builder(NoopManager)
            .name(pool_name)
            .max_size(2)
            .acquire_timeout(Duration::from_millis(200))
            .leak_threshold(Some(Duration::from_millis(500)))
            .maintenance_interval(Duration::from_millis(50))
            .build()
            .expect("conn pool");
        drop(pool.get().await.expect("a connection"));
        let objects = object::Pool::builder(|| Vec::<u8>::with_capacity(64))
            .name(format!("{pool_name}-objects"))
            .build()
            .expect("object pool");
        drop(objects.get());
        let reclaimer = Reclaimer::builder()
            .name(format!("{pool_name}-reclaimer"))
            .build()
            .expect("reclaimer");
        drop(reclaimer.defer_labelled("buffer", vec![0u8; 16]));
        let all: Arc<Vec<Box<dyn Diagnose>>> = Arc::new(vec![
            Box::new(pool.clone()),
            Box::new(objects),
            Box::new(reclaimer),
        ]);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let all = Arc::clone(&all);
                async move {
                    let mut w = PrometheusWriter::new();
                    for d in all.iter() {
                        d.write_metrics(&mut w);
                    }
                    w.finish()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the service");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Service {
            addr,
            pool,
            held: Vec::new(),
            tasks: vec![server],
        }
    }

    /// The fault: both connections taken and never given back (reported as leaks after
    /// 500 ms), while 4 callers keep asking for one and time out after 200 ms each.
    async fn leak_connections(&mut self) {
        for _ in 0..2 {
            self.held
                .push(self.pool.get().await.expect("a connection to leak"));
        }
        for _ in 0..4 {
            let pool = self.pool.clone();
            self.tasks.push(tokio::spawn(async move {
                loop {
                    let _ = pool.get().await;
                }
            }));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_an_exhausted_pool_and_fires_its_alerts() {
    let pool = "deploy-scrape";
    let mut service = Service::start(pool).await;
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - poolguard-rules.yml\n\
         scrape_configs:\n  - job_name: poolguard-service\n    static_configs:\n      - targets: ['{}']\n",
        service.addr
    );
    let prom = PromServer::start(&config, &[("poolguard-rules.yml", rules_with_short_for())]).await;

    // The healthy pool is scraped first (so its counters have a sample before the fault),
    // then the fault starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    let healthy = format!("poolguard_conn_leaks_total{{pool=\"{pool}\"}} == 0");
    loop {
        let r = prom.api("query", Some(&healthy)).await;
        if r["result"].as_array().is_some_and(|v| !v.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape the service within 60 s: {r}\n{}",
            prom.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.leak_connections().await;

    // The alerts the fault must raise, each on this pool.
    let want = [
        "PoolguardConnPoolSaturated",
        "PoolguardConnAcquireTimeouts",
        "PoolguardConnLeaks",
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut firing = BTreeSet::new();
    let mut last = Value::Null;
    while Instant::now() < deadline && firing.len() < want.len() {
        last = prom.api("alerts", None).await;
        for a in last["alerts"].as_array().into_iter().flatten() {
            if a["state"] == "firing" && a["labels"]["pool"] == pool {
                firing.insert(a["labels"]["alertname"].as_str().unwrap_or("").to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The series arrived under the names the rules and the dashboard query.
    let present = prom
        .api(
            "query",
            Some(r#"count by (__name__) ({__name__=~"poolguard_.+"})"#),
        )
        .await;
    let got: BTreeSet<String> = present["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["metric"]["__name__"].as_str().map(str::to_owned))
        .collect();
    let recorded = recorded();
    let mut queried = BTreeSet::new();
    for (_, e) in rule_exprs().into_iter().chain(dashboard_exprs()) {
        for s in selectors(&e) {
            if let Some(n) = s.name.filter(|n| !recorded.contains(n)) {
                queried.insert(n);
            }
        }
    }
    let missing: Vec<&String> = queried.difference(&got).collect();
    let waiters = prom
        .api(
            "query",
            Some(&format!("poolguard_conn_waiters{{pool=\"{pool}\"}}")),
        )
        .await;
    let up = prom.api("query", Some("up")).await;

    let missing_alerts: Vec<&&str> = want.iter().filter(|a| !firing.contains(**a)).collect();
    assert!(
        missing.is_empty() && missing_alerts.is_empty(),
        "queried but not scraped: {missing:?}\nalerts not firing: {missing_alerts:?}\n\
         up: {up}\nwaiters: {waiters}\nlast /api/v1/alerts: {last}\nprometheus log:\n{}",
        prom.log()
    );
    // The waiters series is the pool's, labelled by Prometheus with the scrape target.
    let w = &waiters["result"][0];
    assert_eq!(w["metric"]["job"], "poolguard-service", "{waiters}");
    assert_eq!(
        w["metric"]["instance"],
        service.addr.to_string(),
        "{waiters}"
    );
    drop(prom);
    drop(service);
}
