//! `poolguard lab --quick --report FILE.html` opened in headless Chromium (the testkit's
//! browser, which installs chromium and chromedriver through `scripts/services.sh chromium`
//! when they are missing and fails loudly when it cannot): every scenario's charts render with
//! data, nothing on the page errs, and a screenshot is saved for a person to look at.

use std::process::Command;

use poolguard_testkit::browser::Browser;

/// The scenarios `poolguard lab` runs by default.
const SCENARIOS: &[&str] = &[
    "pool-abuse",
    "finalizer-stall",
    "conn-leak",
    "db-outage",
    "spike",
    "failover",
    "config-traps",
];

/// Per scenario, as the browser laid it out: charts, series paths with a non-empty `d`, the
/// smallest rendered width and height of those paths, the points they hold, the verdicts.
const MEASURE: &str = r#"
const out = {};
for (const s of document.querySelectorAll('section.scenario')) {
  const paths = [...s.querySelectorAll('svg.chart path.series')];
  const drawn = paths.filter(p => (p.getAttribute('d') || '').trim().length > 0);
  const boxes = drawn.map(p => p.getBBox());
  const charts = [...s.querySelectorAll('svg.chart')];
  out[s.dataset.scenario] = {
    charts: charts.length,
    shown: charts.filter(c => { const r = c.getBoundingClientRect(); return r.width > 100 && r.height > 50; }).length,
    paths: paths.length,
    drawn: drawn.length,
    points: drawn.reduce((n, p) => n + Number(p.dataset.points || 0), 0),
    min_extent: boxes.length ? Math.min(...boxes.map(b => Math.max(b.width, b.height))) : 0,
    empty: s.querySelectorAll('svg.chart text.empty').length,
    verdicts: [...s.querySelectorAll('.verdict')].map(v => v.textContent),
    legend_naive: s.querySelectorAll('.legend li.naive').length,
    legend_poolguard: s.querySelectorAll('.legend li.poolguard').length,
  };
}
return out;
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_every_scenarios_charts_in_chromium() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("report_browser");
    std::fs::create_dir_all(&dir).expect("the test's directory");
    let html = dir.join("lab-report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_poolguard"))
        .args(["lab", "--quick", "--report"])
        .arg(&html)
        .output()
        .expect("run the poolguard binary");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = html.canonicalize().expect("the report exists");

    let browser = Browser::start().await.expect("headless Chromium starts");
    browser
        .open(&format!("file://{}", path.display()))
        .await
        .expect("the report opens");
    let seen = browser.eval(MEASURE).await.expect("the page answers");
    let shot = browser
        .screenshot("lab-report")
        .await
        .expect("a screenshot");
    let errors = browser.console_errors().await.expect("the error collector");
    browser.close().await;

    assert!(errors.is_empty(), "the page logged errors: {errors:?}");
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "{}",
        shot.display()
    );
    for name in SCENARIOS {
        let s = &seen[*name];
        assert!(s.is_object(), "{name} is not on the page: {seen}");
        let n = |k: &str| s[k].as_f64().unwrap_or(-1.0);
        assert!(n("charts") >= 1.0, "{name}: no chart: {s}");
        assert_eq!(
            n("shown"),
            n("charts"),
            "{name}: a chart is not laid out: {s}"
        );
        assert!(n("paths") >= n("charts"), "{name}: {s}");
        assert_eq!(
            n("drawn"),
            n("paths"),
            "{name}: a series path is empty: {s}"
        );
        assert!(n("points") >= n("paths"), "{name}: {s}");
        assert!(
            n("min_extent") > 0.0,
            "{name}: a series is drawn with no extent: {s}"
        );
        assert_eq!(n("empty"), 0.0, "{name}: a chart says it has no data: {s}");
        assert!(n("legend_poolguard") >= 1.0, "{name}: {s}");
        if *name != "conn-leak" {
            assert!(
                n("legend_naive") >= 1.0,
                "{name}: no naive baseline in a legend: {s}"
            );
        }
        let verdicts = s["verdicts"].as_array().expect("verdicts");
        assert!(!verdicts.is_empty(), "{name}: no verdict: {s}");
        assert!(
            verdicts.iter().all(|v| v
                .as_str()
                .is_some_and(|v| v.starts_with("Verdict:") && v.len() > 30)),
            "{name}: {s}"
        );
    }
}
