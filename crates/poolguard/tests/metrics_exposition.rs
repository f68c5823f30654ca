//! The Prometheus text of many pools of every kind, rendered together, passes the reference
//! parser (`promtool check metrics`), has one HELP/TYPE per family, and its duration
//! histograms count at the fixed edges exactly.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use poolguard::conn;
use poolguard::diag::{render, Diagnose, CONTENT_TYPE};
use poolguard::object;
use poolguard::reclaim::Reclaimer;
use poolguard_testkit::sim::{Op, SimManager};

/// Runs `promtool check metrics` on `text`; panics with its complaints.
fn promtool_check(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool is needed to check the metrics text ({e}); install it with \
             `bash scripts/services.sh promtool` (Debian package `prometheus`)"
        ),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool check metrics rejected the text ({}): {complaints}\n--- text ---\n{text}",
        out.status
    );
}

struct Pools {
    objects: Vec<object::Pool<Vec<u8>>>,
    reclaimers: Vec<Reclaimer>,
    conns: Vec<conn::Pool<SimManager>>,
}

async fn pools(n: usize) -> Pools {
    let mut p = Pools {
        objects: Vec::new(),
        reclaimers: Vec::new(),
        conns: Vec::new(),
    };
    for i in 0..n {
        let o = object::Pool::builder(Vec::<u8>::new)
            .name(format!("expo-object-{i}"))
            .build()
            .expect("object pool");
        let mut v = o.get();
        v.extend_from_slice(&[1, 2, 3]);
        drop(v);
        o.trim();
        p.objects.push(o);

        let r = Reclaimer::builder()
            .name(format!("expo-reclaim-\"{i}\""))
            .build()
            .expect("reclaimer");
        r.defer_labelled("buffers", vec![0u8; 64]);
        r.defer_labelled("sockets", vec![0u8; 8]);
        r.flush(Duration::from_secs(10)).expect("flushed");
        p.reclaimers.push(r);

        let m = SimManager::new();
        m.latency(Op::Connect, Duration::from_millis(5));
        m.latency(Op::Validate, Duration::from_millis(2));
        m.latency(Op::Reset, Duration::from_millis(1));
        let c = conn::Pool::builder(m)
            .name(format!("expo-conn-{i}"))
            .validation_bypass(Duration::ZERO)
            .build()
            .expect("conn pool");
        drop(c.get().await.expect("a connection"));
        // The reset runs in the background; then a checkout validates the idle connection.
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(c.get().await.expect("a validated connection"));
        tokio::time::sleep(Duration::from_millis(10)).await;
        p.conns.push(c);
    }
    p
}

impl Pools {
    fn all(&self) -> Vec<&dyn Diagnose> {
        let mut all: Vec<&dyn Diagnose> = Vec::new();
        for i in 0..self.objects.len() {
            all.push(&self.objects[i]);
            all.push(&self.reclaimers[i]);
            all.push(&self.conns[i]);
        }
        all
    }
}

/// Every family's HELP and TYPE lines, counted; panics if a family's samples are split.
fn families(text: &str) -> BTreeMap<String, (usize, usize)> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut current = String::new();
    let mut closed: HashSet<String> = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            counts.entry(name.clone()).or_default().0 += 1;
            if !current.is_empty() {
                closed.insert(std::mem::take(&mut current));
            }
            current = name;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            counts.entry(name).or_default().1 += 1;
        } else {
            let series = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| series.strip_suffix(s).filter(|f| *f == current))
                .unwrap_or(series);
            assert_eq!(family, current, "series {line:?} outside its family");
            assert!(!closed.contains(family), "family {family} split: {line:?}");
        }
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn many_pools_of_every_kind_pass_promtool() {
    let p = pools(4).await;
    let text = render(&p.all());
    promtool_check(&text);
    let fams = families(&text);
    assert!(fams.len() > 60, "{} families", fams.len());
    for (name, (help, ty)) in &fams {
        assert_eq!((help, ty), (&1, &1), "{name}: HELP/TYPE lines");
    }
    // Every pool is in it, each series once.
    for i in 0..4 {
        for needle in [
            format!("poolguard_object_gets_total{{pool=\"expo-object-{i}\"}} 1\n"),
            format!("poolguard_conn_gets_total{{pool=\"expo-conn-{i}\"}} 2\n"),
            format!(
                "poolguard_reclaim_run_seconds_count{{reclaimer=\"expo-reclaim-\\\"{i}\\\"\",job_label=\"buffers\"}} 1\n"
            ),
        ] {
            assert_eq!(text.matches(&needle).count(), 1, "{needle} in {text}");
        }
    }
    // No reserved label names.
    for bad in ["{job=", ",job=", "instance=", "quantile="] {
        assert!(!text.contains(bad), "{bad} in {text}");
    }
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
}

#[tokio::test(start_paused = true)]
async fn one_pool_alone_passes_promtool_too() {
    let p = pools(1).await;
    for d in p.all() {
        promtool_check(&render(&[d]));
    }
}

#[tokio::test(start_paused = true)]
async fn conn_duration_histograms_count_each_phase_at_the_fixed_edges() {
    let p = pools(1).await;
    let text = p.conns[0].prometheus();
    let l = "pool=\"expo-conn-0\"";
    let expect = [
        // Connect: exactly 5 ms, so in le=0.005 and not in le=0.0025.
        format!("poolguard_conn_connect_seconds_bucket{{{l},le=\"0.0025\"}} 0\n"),
        format!("poolguard_conn_connect_seconds_bucket{{{l},le=\"0.005\"}} 1\n"),
        format!("poolguard_conn_connect_seconds_count{{{l}}} 1\n"),
        // The first get queued for that connect.
        format!("poolguard_conn_acquire_seconds_bucket{{{l},phase=\"queue\",le=\"0.0025\"}} 0\n"),
        format!("poolguard_conn_acquire_seconds_bucket{{{l},phase=\"queue\",le=\"0.005\"}} 1\n"),
        format!("poolguard_conn_acquire_seconds_count{{{l},phase=\"queue\"}} 1\n"),
        // The second validated the idle connection: 2 ms.
        format!("poolguard_conn_acquire_seconds_bucket{{{l},phase=\"validate\",le=\"0.001\"}} 0\n"),
        format!(
            "poolguard_conn_acquire_seconds_bucket{{{l},phase=\"validate\",le=\"0.0025\"}} 1\n"
        ),
        format!("poolguard_conn_validation_seconds_count{{{l}}} 1\n"),
        format!("poolguard_conn_validations_total{{{l}}} 1\n"),
        // Two returns, two resets of 1 ms.
        format!("poolguard_conn_reset_seconds_bucket{{{l},le=\"0.0005\"}} 0\n"),
        format!("poolguard_conn_reset_seconds_bucket{{{l},le=\"0.001\"}} 2\n"),
        format!("poolguard_conn_reset_seconds_bucket{{{l},le=\"+Inf\"}} 2\n"),
        format!("poolguard_conn_reset_seconds_sum{{{l}}} 0.002\n"),
        format!("poolguard_conn_resets_total{{{l}}} 2\n"),
        format!("poolguard_conn_breaker_state{{{l},state=\"closed\"}} 1\n"),
        format!("poolguard_conn_breaker_state{{{l},state=\"open\"}} 0\n"),
    ];
    for e in &expect {
        assert!(text.contains(e.as_str()), "{e} not in {text}");
    }
}
