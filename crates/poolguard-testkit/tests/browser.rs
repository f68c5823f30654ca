//! The headless Chromium helper: pages open, scripts run, console errors are caught from the
//! first script on, screenshots land under the target directory.

use std::time::Duration;

use poolguard_testkit::browser::{screenshot_dir, Browser};

/// A page that logs an error while it loads and throws one a moment later.
const PAGE: &str = "data:text/html,<title>probe</title><p id=p>static</p><script>\
console.error('loaded with a problem');\
document.getElementById('p').textContent='scripted';\
setTimeout(()=>{document.body.dataset.late='1';throw new Error('late failure')},10);\
</script>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_evaluates_collects_errors_and_screenshots() {
    let browser = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    browser.open(PAGE).await.expect("open");
    assert_eq!(
        browser.eval("return document.title").await.expect("eval"),
        "probe"
    );
    assert_eq!(
        browser
            .eval("return document.getElementById('p').textContent")
            .await
            .expect("eval"),
        "scripted",
        "the page's script ran"
    );
    browser
        .wait_until(
            "the late error",
            "return document.body.dataset.late === '1'",
            Duration::from_secs(10),
        )
        .await
        .expect("the timer fired");
    let errors = browser.console_errors().await.expect("errors");
    assert!(
        errors.iter().any(|e| e.contains("loaded with a problem")),
        "an error logged during load is caught: {errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("late failure")),
        "an uncaught error is caught: {errors:?}"
    );

    // A clean page has none: the collector starts empty on each document.
    browser
        .open("data:text/html,<title>clean</title>")
        .await
        .expect("open");
    assert_eq!(
        browser.console_errors().await.expect("errors"),
        Vec::<String>::new()
    );

    let path = browser
        .screenshot("testkit-probe")
        .await
        .expect("screenshot");
    assert!(path.starts_with(screenshot_dir()));
    let png = std::fs::read(&path).expect("the file exists");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_never_holds_times_out_naming_what_it_waited_for() {
    let browser = Browser::start().await.unwrap_or_else(|e| panic!("{e}"));
    browser.open("data:text/html,<p>x</p>").await.expect("open");
    let err = browser
        .wait_until(
            "a thing that never happens",
            "return false",
            Duration::from_millis(300),
        )
        .await
        .expect_err("never true");
    assert!(
        err.to_string().contains("a thing that never happens"),
        "{err}"
    );
    browser.close().await;
}
