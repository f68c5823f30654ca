//! One reading of a service's pools: parsed from its `/pools` JSON or, failing that, from its
//! `/metrics` Prometheus text (figures only: the text carries no findings).

use std::collections::BTreeMap;

use serde_json::Value;

/// How urgent a finding is (ordered: `Info < Warning < Critical`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    fn parse(s: &str) -> Severity {
        match s {
            "critical" => Severity::Critical,
            "warning" => Severity::Warning,
            _ => Severity::Info,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A finding as the pool itself reported it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolFinding {
    pub(crate) severity: Severity,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) fix: String,
}

/// A connection pool's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Conn {
    pub(crate) size: u64,
    pub(crate) max_size: u64,
    pub(crate) idle: u64,
    pub(crate) in_use: u64,
    pub(crate) waiters: u64,
    /// `closed`, `open` or `half-open` (as the pool prints it).
    pub(crate) breaker: String,
    pub(crate) gets: u64,
    pub(crate) timed_out: u64,
    pub(crate) leaks: u64,
    pub(crate) unleaked: u64,
    pub(crate) nested_acquires: u64,
    pub(crate) connect_failures: u64,
    pub(crate) unavailable: u64,
    pub(crate) abandoned: u64,
    /// Abandoned connections still held by their callers now (not in `in_use`).
    pub(crate) held_abandoned: u64,
}

/// An object pool's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Object {
    pub(crate) retained_bytes: u64,
    pub(crate) trims: u64,
    pub(crate) gets: u64,
    pub(crate) returns: u64,
}

/// A reclaimer's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Reclaim {
    pub(crate) queued: u64,
    pub(crate) running: u64,
    pub(crate) stuck: u64,
    pub(crate) slow: u64,
}

/// The figures of one pool, by kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Figures {
    Conn(Conn),
    Object(Object),
    Reclaim(Reclaim),
    Other,
}

/// One pool in one reading.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pool {
    pub(crate) name: String,
    pub(crate) kind: String,
    pub(crate) figures: Figures,
    pub(crate) findings: Vec<PoolFinding>,
}

/// Every pool in one reading.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    pub(crate) pools: Vec<Pool>,
}

fn u(v: &Value, key: &str) -> u64 {
    match &v[key] {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
            .unwrap_or(0),
        _ => 0,
    }
}

fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// Parses a `/pools` answer: `{"schema_version": 1, "pools": [report, ...]}`.
pub(crate) fn from_pools_json(body: &str) -> Result<Reading, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let version = v["schema_version"].as_u64().ok_or(
        "the answer has no `schema_version`: not a poolguard diagnostics endpoint's /pools",
    )?;
    if version != 1 {
        return Err(format!(
            "schema_version {version} is not understood (this doctor reads version 1): update poolguard-cli"
        ));
    }
    let list = v["pools"]
        .as_array()
        .ok_or("the answer has no `pools` list")?;
    let mut pools = Vec::with_capacity(list.len());
    for p in list {
        let snap = &p["snapshot"];
        let figures = if let Some(c) = snap.get("connection_pool") {
            let (st, t) = (&c["status"], &c["stats"]);
            Figures::Conn(Conn {
                size: u(st, "size"),
                max_size: u(st, "max_size"),
                idle: u(st, "idle"),
                in_use: u(st, "in_use"),
                waiters: u(st, "waiters"),
                breaker: s(st, "breaker"),
                gets: u(t, "gets"),
                timed_out: u(t, "timed_out"),
                leaks: u(t, "leaks"),
                unleaked: u(t, "unleaked"),
                nested_acquires: u(t, "nested_acquires"),
                connect_failures: u(t, "connect_failures"),
                unavailable: u(t, "unavailable"),
                abandoned: u(t, "abandoned"),
                held_abandoned: u(st, "abandoned"),
            })
        } else if let Some(o) = snap.get("object_pool") {
            Figures::Object(Object {
                retained_bytes: u(o, "retained_bytes"),
                trims: u(o, "trims"),
                gets: u(o, "gets"),
                returns: u(o, "returns"),
            })
        } else if let Some(r) = snap.get("reclaimer") {
            Figures::Reclaim(Reclaim {
                queued: u(r, "queued"),
                running: u(r, "running"),
                stuck: u(r, "stuck"),
                slow: u(r, "slow"),
            })
        } else {
            Figures::Other
        };
        let findings = p["findings"]
            .as_array()
            .map(|fs| {
                fs.iter()
                    .map(|f| PoolFinding {
                        severity: Severity::parse(f["severity"].as_str().unwrap_or("info")),
                        code: s(f, "code"),
                        message: s(f, "message"),
                        fix: s(f, "fix"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        pools.push(Pool {
            name: s(p, "name"),
            kind: s(p, "kind"),
            figures,
            findings,
        });
    }
    Ok(Reading { pools })
}

/// One series of the text format: family name, labels, value.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<&str, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match head.find('{') {
        Some(i) => (&head[..i], head[i + 1..].strip_suffix('}')?),
        None => (head, ""),
    };
    let mut map = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        // The value runs to the next unescaped quote.
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => val.push('\n'),
                    Some((_, c)) => val.push(c),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => val.push(c),
            }
        }
        let end = end?;
        map.insert(key.trim_start_matches(',').trim(), val);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some((name, map, value))
}

/// Parses `/metrics` (Prometheus text): the figures of every `poolguard_*` family, by the
/// pool's label. No findings (the doctor derives its own from the figures over the window).
pub(crate) fn from_metrics(text: &str) -> Result<Reading, String> {
    let mut conns: BTreeMap<String, Conn> = BTreeMap::new();
    let mut objects: BTreeMap<String, Object> = BTreeMap::new();
    let mut reclaims: BTreeMap<String, Reclaim> = BTreeMap::new();
    let mut order: Vec<(String, &'static str)> = Vec::new();
    for line in text.lines() {
        let Some((name, labels, value)) = parse_line(line) else {
            continue;
        };
        let v = if value.is_finite() && value > 0.0 {
            value as u64
        } else {
            0
        };
        if let Some(field) = name.strip_prefix("poolguard_conn_") {
            let Some(pool) = labels.get("pool") else {
                continue;
            };
            if !conns.contains_key(pool) {
                order.push((pool.clone(), "connection_pool"));
            }
            let c = conns.entry(pool.clone()).or_default();
            match field {
                "size" => c.size = v,
                "max_size" => c.max_size = v,
                "idle" => c.idle = v,
                "in_use" => c.in_use = v,
                "waiters" => c.waiters = v,
                "gets_total" => c.gets = v,
                "timeouts_total" => c.timed_out = v,
                "leaks_total" => c.leaks = v,
                "unleaks_total" => c.unleaked = v,
                "nested_acquires_total" => c.nested_acquires = v,
                "connect_failures_total" => c.connect_failures = v,
                "unavailable_total" => c.unavailable = v,
                "abandoned" => c.held_abandoned = v,
                "breaker_state" if v == 1 => {
                    c.breaker = labels
                        .get("state")
                        .map(|s| s.replace('_', "-"))
                        .unwrap_or_default()
                }
                _ => {}
            }
        } else if let Some(field) = name.strip_prefix("poolguard_object_") {
            let Some(pool) = labels.get("pool") else {
                continue;
            };
            if !objects.contains_key(pool) {
                order.push((pool.clone(), "object_pool"));
            }
            let o = objects.entry(pool.clone()).or_default();
            match field {
                // One series per tier (or one for the whole pool): summed.
                "retained_bytes" => o.retained_bytes += v,
                "trims_total" => o.trims = v,
                "gets_total" => o.gets = v,
                "returns_total" => o.returns = v,
                _ => {}
            }
        } else if let Some(field) = name.strip_prefix("poolguard_reclaim_") {
            let Some(pool) = labels.get("reclaimer") else {
                continue;
            };
            if !reclaims.contains_key(pool) {
                order.push((pool.clone(), "reclaimer"));
            }
            let r = reclaims.entry(pool.clone()).or_default();
            match field {
                "queued" => r.queued = v,
                "running" => r.running = v,
                "stuck_total" => r.stuck = v,
                "slow_total" => r.slow = v,
                _ => {}
            }
        }
    }
    if order.is_empty() {
        return Err("the metrics name no poolguard pool (no `poolguard_*` series)".into());
    }
    let pools = order
        .into_iter()
        .map(|(name, kind)| {
            let figures = match kind {
                "connection_pool" => Figures::Conn(conns.remove(&name).unwrap_or_default()),
                "object_pool" => Figures::Object(objects.remove(&name).unwrap_or_default()),
                _ => Figures::Reclaim(reclaims.remove(&name).unwrap_or_default()),
            };
            Pool {
                name,
                kind: kind.to_owned(),
                figures,
                findings: Vec::new(),
            }
        })
        .collect();
    Ok(Reading { pools })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_json_is_read_with_its_findings() {
        let body = r#"{"schema_version":1,"generated_at_unix_ms":5,"pools":[
          {"name":"db","kind":"connection_pool","snapshot":{"connection_pool":{
            "status":{"size":4,"max_size":4,"idle":0,"in_use":4,"waiters":3,"breaker":"closed"},
            "stats":{"gets":40,"timed_out":2,"leaks":4,"unleaked":1,"nested_acquires":0}}},
           "findings":[{"severity":"critical","code":"conn.leak","pool":"db","message":"m","fix":"f"}]},
          {"name":"bufs","kind":"object_pool","snapshot":{"object_pool":{"retained_bytes":1024,"trims":3,"gets":9,"returns":9}},"findings":[]}
        ]}"#;
        let r = from_pools_json(body).expect("valid");
        assert_eq!(r.pools.len(), 2);
        let Figures::Conn(c) = &r.pools[0].figures else {
            panic!("a connection pool: {:?}", r.pools[0])
        };
        assert_eq!((c.in_use, c.max_size, c.waiters, c.leaks), (4, 4, 3, 4));
        assert_eq!(r.pools[0].findings[0].severity, Severity::Critical);
        assert_eq!(r.pools[0].findings[0].code, "conn.leak");
        assert!(
            matches!(&r.pools[1].figures, Figures::Object(o) if o.retained_bytes == 1024 && o.trims == 3)
        );
    }

    #[test]
    fn a_wrong_schema_or_shape_is_refused_with_the_reason() {
        assert!(from_pools_json("<html>").unwrap_err().contains("not JSON"));
        assert!(from_pools_json(r#"{"pools":[]}"#)
            .unwrap_err()
            .contains("schema_version"));
        assert!(from_pools_json(r#"{"schema_version":9,"pools":[]}"#)
            .unwrap_err()
            .contains("version 9"));
    }

    #[test]
    fn metrics_text_gives_the_same_figures() {
        let text = "# HELP poolguard_conn_in_use x\n# TYPE poolguard_conn_in_use gauge\n\
            poolguard_conn_in_use{pool=\"db\"} 4\npoolguard_conn_max_size{pool=\"db\"} 4\n\
            poolguard_conn_waiters{pool=\"db\"} 2\npoolguard_conn_leaks_total{pool=\"db\"} 3\n\
            poolguard_conn_breaker_state{pool=\"db\",state=\"closed\"} 0\n\
            poolguard_conn_breaker_state{pool=\"db\",state=\"half_open\"} 1\n\
            poolguard_object_retained_bytes{pool=\"a \\\"q\\\" b\",tier=\"local\"} 2048\n\
            poolguard_object_retained_bytes{pool=\"a \\\"q\\\" b\",tier=\"shared\"} 1024\n\
            poolguard_reclaim_stuck_total{reclaimer=\"drops\"} 1\n\
            poolguard_conn_wait_seconds_bucket{pool=\"db\",le=\"+Inf\"} 7\n";
        let r = from_metrics(text).expect("valid");
        assert_eq!(r.pools.len(), 3);
        let Figures::Conn(c) = &r.pools[0].figures else {
            panic!("{:?}", r.pools[0])
        };
        assert_eq!((c.in_use, c.max_size, c.waiters, c.leaks), (4, 4, 2, 3));
        assert_eq!(c.breaker, "half-open");
        assert_eq!(r.pools[1].name, "a \"q\" b");
        assert!(
            matches!(&r.pools[1].figures, Figures::Object(o) if o.retained_bytes == 3072),
            "tiers summed: {:?}",
            r.pools[1]
        );
        assert!(matches!(&r.pools[2].figures, Figures::Reclaim(x) if x.stuck == 1));
        assert!(from_metrics("up 1\n").is_err());
    }
}
