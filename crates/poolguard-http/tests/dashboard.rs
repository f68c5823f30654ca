//! The dashboard in headless Chromium, over real pools of every kind: the charts render with
//! data, the pool names and the holders' call sites show, no console error, the page updates
//! when the pools change, and screenshots land under the target directory (`screenshots/`).

use std::time::Duration;

use poolguard_testkit::browser::Browser;

mod common;
use common::{Scene, BUFFERS, DROPS, ORDERS, SECRET, SLOW_JOB};

const WAIT: Duration = Duration::from_secs(20);

fn card(name: &str) -> String {
    format!("document.querySelector('section.pool[data-pool=\"{name}\"]')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_the_pools_and_updates_in_chromium() {
    let mut scene = Scene::build().await;
    let server = poolguard_http::Server::bind_loopback(0, scene.registry.clone())
        .await
        .expect("bind");
    let url = format!("http://{}/", server.local_addr());
    let browser = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    browser.open(&url).await.expect("open the dashboard");

    // Traffic while the page reads: buffers of varying sizes come and go, drops queue up
    // behind the slow job.
    let traffic = {
        let buffers = scene.buffers.clone();
        let drops = scene.drops.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            for i in 0usize.. {
                every.tick().await;
                let n = 1 + (i * 7) % 13;
                let mut out: Vec<_> = (0..n).map(|_| buffers.get()).collect();
                for (j, b) in out.iter_mut().enumerate() {
                    b.reserve(512 * (1 + (i + j) % 24));
                }
                drop(out);
                if i % 3 == 0 {
                    drop(drops.defer(vec![0u8; 256]));
                }
            }
        })
    };
    // A few reads, so that every chart has a line.
    browser
        .wait_until(
            "six reads of /pools",
            "return Number(document.body.dataset.ticks || 0) >= 6",
            WAIT,
        )
        .await
        .expect("the page polls");

    let names = browser
        .eval("return [...document.querySelectorAll('section.pool')].map(s => s.dataset.pool)")
        .await
        .expect("eval");
    let names: Vec<&str> = names
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [ORDERS, "billing password=<redacted>", BUFFERS, DROPS]
    );

    // Every chart of every pool draws a non-empty path per series.
    for (pool, chart, series) in [
        (ORDERS, "connections", "in_use"),
        (ORDERS, "connections", "waiters"),
        (ORDERS, "wait_p99", "wait_p99"),
        (BUFFERS, "retained_bytes", "retained_bytes"),
        (BUFFERS, "retained_bytes", "shared"),
        (DROPS, "backlog", "queued"),
    ] {
        let d = browser
            .eval(&format!(
                "const p = {}.querySelector('svg.chart[data-chart=\"{chart}\"] path.series[data-series=\"{series}\"]'); return p ? p.getAttribute('d') : null",
                card(pool)
            ))
            .await
            .expect("eval");
        let d = d
            .as_str()
            .unwrap_or_else(|| panic!("{pool}: no {series} line in {chart}"));
        assert!(
            d.starts_with('M') && d.contains('L'),
            "{pool} {chart}/{series}: {d}"
        );
    }

    // The figures, the holders with their call site, leaks, breaker, trims, the slow job.
    let field = |pool: &str, f: &str| {
        format!(
            "return {}.querySelector('[data-field=\"{f}\"]').textContent",
            card(pool)
        )
    };
    assert_eq!(
        browser.eval(&field(ORDERS, "in_use")).await.expect("eval"),
        "2"
    );
    assert_eq!(
        browser.eval(&field(ORDERS, "waiters")).await.expect("eval"),
        "1"
    );
    assert_eq!(
        browser
            .eval(&field(ORDERS, "leaks_out"))
            .await
            .expect("eval"),
        "2"
    );
    assert_eq!(
        browser
            .eval(&field("billing password=<redacted>", "breaker"))
            .await
            .expect("eval"),
        "open"
    );
    let sites = browser
        .eval(&format!(
            "return [...{}.querySelectorAll('tr.holder.leaked td.site')].map(t => t.textContent)",
            card(ORDERS)
        ))
        .await
        .expect("eval");
    let sites = sites.as_array().expect("list");
    assert_eq!(sites.len(), 2, "{sites:?}");
    for s in sites {
        assert!(s.as_str().expect("text").contains("common/mod.rs:"), "{s}");
    }
    let trims = browser
        .eval(&format!(
            "return {}.querySelectorAll('ol.trims li.trim').length",
            card(BUFFERS)
        ))
        .await
        .expect("eval");
    assert_eq!(trims, 2, "both trim traces are listed");
    let job = browser
        .eval(&format!(
            "return {}.querySelector('tr.job td.site').textContent",
            card(DROPS)
        ))
        .await
        .expect("eval");
    assert_eq!(job, SLOW_JOB);
    let page = browser
        .eval("return document.documentElement.outerHTML")
        .await
        .expect("eval");
    assert!(
        !page.as_str().expect("html").contains(SECRET),
        "the password shows"
    );
    browser.set_window_size(1400, 1160).await.expect("resize");
    let shot = browser.screenshot("dashboard").await.expect("screenshot");
    // `POOLGUARD_UPDATE_DOCS=1` refreshes the README's picture from this run.
    if std::env::var_os("POOLGUARD_UPDATE_DOCS").is_some() {
        let docs =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
        std::fs::create_dir_all(docs.parent().expect("docs/")).expect("docs/");
        std::fs::copy(&shot, &docs).expect("copy the screenshot to docs/");
    }

    traffic.abort();
    let _ = traffic.await;

    // The pools change: a holder returns its connection (the waiter gets it), another trim
    // runs, the slow job finishes. The page follows.
    drop(scene.held.pop());
    scene.buffers.trim();
    scene.release_slow_job();
    browser
        .wait_until(
            "the waiter to leave the dashboard's figures",
            &format!(
                "return {}.querySelector('[data-field=\"waiters\"]').textContent === '0'",
                card(ORDERS)
            ),
            WAIT,
        )
        .await
        .expect("the page updates");
    browser
        .wait_until(
            "the third trim trace",
            &format!(
                "return {}.querySelectorAll('ol.trims li.trim').length === 3",
                card(BUFFERS)
            ),
            WAIT,
        )
        .await
        .expect("trims appear as they happen");
    browser
        .wait_until(
            "the slow job to leave",
            &format!(
                "return {}.querySelectorAll('tr.job').length === 0",
                card(DROPS)
            ),
            WAIT,
        )
        .await
        .expect("the slow job is gone once done");

    // A dropped pool leaves the page (the scene keeps an unregistered one in its place).
    let unregistered = poolguard::object::Pool::builder(Vec::<u8>::new)
        .build()
        .expect("pool");
    drop(std::mem::replace(&mut scene.buffers, unregistered));
    browser
        .wait_until(
            "the dropped pool to leave the page",
            &format!("return {} === null", card(BUFFERS)),
            WAIT,
        )
        .await
        .expect("a dropped pool disappears");
    let errors = browser.console_errors().await.expect("errors");
    assert!(errors.is_empty(), "console errors: {errors:?}");
    browser
        .screenshot("dashboard-after")
        .await
        .expect("screenshot");
    browser.close().await;
    server.shutdown(Duration::from_secs(5)).await;
}
