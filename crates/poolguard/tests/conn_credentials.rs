//! Credentials that change: the provider is called once per connect under its own
//! deadline, its failures are typed and counted, a changed answer is proven by one probe
//! connect before use, then old-credential connections retire paced by
//! `max_concurrent_opens`; a failed probe keeps the old credentials serving; auth failures
//! that open the breaker are the doctor's first finding. All on the paused clock.

mod cred_common;

use std::time::Duration;

use cred_common::{Answer, AuthError, AuthSim, Switch};
use poolguard::conn::{BreakerState, CloseReason, CredentialsFault, Error, Phase, Pool};
use poolguard_testkit::sim::Op;
use tokio::time::{sleep, Instant};

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

fn pool(m: &AuthSim, s: &Switch, max: usize, opens: usize) -> Pool<AuthSim> {
    Pool::builder(m.clone())
        .max_size(max)
        .max_concurrent_opens(opens)
        .acquire_timeout(Duration::from_secs(5))
        .keepalive_interval(None)
        .max_lifetime(None)
        .idle_timeout(None)
        .credentials(s.provider())
        .build()
        .expect("valid config")
}

/// The password of every idle connection (looked at, all kept).
fn idle_passwords(p: &Pool<AuthSim>) -> Vec<String> {
    let mut seen = Vec::new();
    p.retain(|c, _| {
        seen.push(c.password.clone());
        true
    });
    seen.sort();
    seen
}

#[tokio::test(start_paused = true)]
async fn the_provider_is_called_once_per_connect_and_its_answer_used() {
    let m = AuthSim::new(&["A"]);
    let s = Switch::new("A");
    let p = pool(&m, &s, 3, 3);
    let (a, b, c) = tokio::join!(p.get(), p.get(), p.get());
    let held = [a.expect("get"), b.expect("get"), c.expect("get")];
    assert!(held.iter().all(|c| c.password == "A"));
    assert_eq!(s.calls(), 3, "one call per connect");
    assert_eq!(p.stats().credentials_calls, 3);
    assert_eq!(
        m.plain_connects.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    drop(held);
    // A checkout of an idle connection asks nothing.
    drop(p.get().await.expect("idle"));
    assert_eq!(s.calls(), 3);
    assert!(p
        .prometheus()
        .contains("poolguard_conn_credentials_calls_total{pool=\""));
}

#[tokio::test(start_paused = true)]
async fn a_provider_is_refused_for_a_manager_that_ignores_credentials() {
    let s = Switch::new("A");
    let e = Pool::builder(poolguard_testkit::sim::SimManager::new())
        .credentials(s.provider())
        .build()
        .expect_err("the simulator ignores credentials");
    assert_eq!(e.field, "credentials");
    let e = Pool::builder(AuthSim::new(&["A"]))
        .credentials_timeout(Duration::ZERO)
        .build()
        .expect_err("zero timeout");
    assert_eq!(e.field, "credentials_timeout");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_fails_its_connect_at_credentials_timeout() {
    let m = AuthSim::new(&["A"]);
    let s = Switch::new("A");
    s.set(Answer::Hang);
    let p = Pool::builder(m.clone())
        .max_size(2)
        .acquire_timeout(Duration::from_secs(5))
        .credentials_timeout(Duration::from_millis(200))
        .credentials(s.provider())
        .build()
        .expect("valid");
    let t0 = Instant::now();
    let e = p.get().await.expect_err("the provider hangs");
    assert_eq!(t0.elapsed(), Duration::from_millis(200), "its own deadline");
    assert!(
        matches!(
            e,
            Error::Credentials(CredentialsFault::TimedOut(d)) if d == Duration::from_millis(200)
        ),
        "{e:?}"
    );
    assert_eq!(e.phase(), Some(Phase::Credentials));
    assert_eq!(e.code(), "credentials");
    settle().await;
    let st = p.status();
    assert_eq!((st.size, st.opening), (0, 0), "the place is given back");
    let t = p.stats();
    assert_eq!((t.credentials_calls, t.credentials_failures), (1, 1));
    assert_eq!(t.connect_failures, 1, "a failed connect for the breaker");
    assert_eq!(m.sim.attempts(), 0, "no connect without credentials");
    // A slow provider within its deadline is fine.
    s.set(Answer::Slow(Duration::from_millis(150), "A".into()));
    let c = p.get().await.expect("slow but in time");
    assert_eq!(c.password, "A");
}

#[tokio::test(start_paused = true)]
async fn a_failing_or_panicking_provider_is_a_typed_error_without_the_secret() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("provider panicked at random") {
            default(info);
        }
    }));
    let m = AuthSim::new(&["s3cret-A"]);
    let s = Switch::new("s3cret-A");
    let p = pool(&m, &s, 2, 1);
    s.set(Answer::Fail);
    let e = p.get().await.expect_err("provider fails");
    match &e {
        Error::Credentials(CredentialsFault::Failed(inner)) => {
            assert_eq!(inner.message(), "secrets manager unreachable")
        }
        other => panic!("expected a provider failure, got {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "credentials provider failed: secrets manager unreachable"
    );
    let f = p.doctor();
    let finding = f
        .iter()
        .find(|f| f.code == "conn.credentials-provider")
        .unwrap_or_else(|| panic!("no provider finding: {f:#?}"));
    assert!(finding.message.contains("secrets manager unreachable"));
    s.set(Answer::Panic);
    let e = p.get().await.expect_err("provider panics");
    assert!(
        matches!(&e, Error::Credentials(CredentialsFault::Panicked(m)) if m.contains("provider panicked at random")),
        "{e:?}"
    );
    assert_eq!(p.stats().credentials_failures, 2);
    s.password("s3cret-A");
    let c = p.get().await.expect("the provider answers again");
    assert_eq!(c.password, "s3cret-A");
    drop(c);
    let all: String = p
        .doctor()
        .iter()
        .map(|f| format!("{}{}{}", f.code, f.message, f.fix))
        .collect();
    assert!(!all.contains("conn.credentials-provider"), "cleared: {all}");
    assert!(!all.contains("s3cret"), "{all}");
    assert!(!format!("{:?}{}", p.status(), p.prometheus()).contains("s3cret"));
}

#[tokio::test(start_paused = true)]
async fn a_rotation_is_proven_by_one_probe_then_old_connections_retire_paced() {
    let m = AuthSim::new(&["A"]);
    m.sim.latency(Op::Connect, Duration::from_millis(100));
    let s = Switch::new("A");
    let p = pool(&m, &s, 6, 2);
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(p.get().await.expect("get"));
    }
    drop(held);
    assert_eq!(idle_passwords(&p), ["A"; 6]);
    // The secret rotates: the server takes both while the change rolls out.
    m.accept(&["A", "B"]);
    s.password("B");
    m.sim.reset_connecting_max();
    let t0 = Instant::now();
    assert!(p.refresh_credentials().await.expect("the probe succeeds"));
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(100),
        "one probe connect"
    );
    let t = p.stats();
    assert_eq!(t.rotations, 1);
    // The pool was full: the probe is closed; two old ones retire now, with their
    // replacements opening (max_concurrent_opens = 2), the other four still serve.
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Rotated), 2);
    let st = p.status();
    assert_eq!((st.size, st.idle, st.opening), (6, 4, 2), "{st:?}");
    // Gets meanwhile are served at once by the remaining old connections.
    drop(p.get().await.expect("served"));
    assert_eq!(t0.elapsed(), Duration::from_millis(100));
    let mut rounds = 0;
    while p.stats().closed_by(CloseReason::Rotated) < 6 {
        sleep(Duration::from_millis(100)).await;
        settle().await;
        rounds += 1;
        let st = p.status();
        assert_eq!(st.size, 6, "a swap keeps the place: {st:?}");
        assert!(st.opening <= 2, "{st:?}");
        assert!(rounds <= 3, "three rounds of two swaps: {:?}", p.stats());
    }
    sleep(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(idle_passwords(&p), ["B"; 6]);
    assert!(
        m.sim.connecting_max() <= 2,
        "paced: {}",
        m.sim.connecting_max()
    );
    assert_eq!(p.stats().closed_by(CloseReason::Rotated), 6);
    assert_eq!(p.stats().rotations, 1);
    // Nothing more changes: no further probe, no more retirements.
    assert!(!p.refresh_credentials().await.expect("same answer"));
}

#[tokio::test(start_paused = true)]
async fn a_connect_detects_the_rotation_and_held_old_connections_retire_on_return() {
    let m = AuthSim::new(&["A", "B"]);
    m.sim.latency(Op::Connect, Duration::from_millis(100));
    let s = Switch::new("A");
    let p = pool(&m, &s, 4, 1);
    let old1 = p.get().await.expect("get");
    let old2 = p.get().await.expect("get");
    s.password("B");
    // This get needs a connect: it is the probe, with the new credentials.
    let probe = p.get().await.expect("the probe serves its caller");
    assert_eq!(probe.password, "B");
    assert_eq!(p.stats().rotations, 1);
    // Both old connections are held: they retire when they come back, one slot at a time.
    drop(old1);
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Rotated), 1);
    assert_eq!(p.status().opening, 1, "its replacement");
    drop(old2);
    settle().await;
    assert_eq!(
        p.stats().closed_by(CloseReason::Rotated),
        1,
        "the slot is busy: the second one stays for now"
    );
    assert_eq!(p.status().idle, 1, "kept idle until a slot frees");
    // The replacement is done: the other one retires then, with its own replacement.
    sleep(Duration::from_millis(100)).await;
    settle().await;
    assert_eq!(p.stats().closed_by(CloseReason::Rotated), 2);
    assert_eq!(p.status().opening, 1);
    drop(probe);
    sleep(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(idle_passwords(&p), ["B"; 3]);
    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(p.get().await.expect("get"));
    }
    assert!(all.iter().all(|c| c.password == "B"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_keeps_the_old_credentials_serving() {
    let m = AuthSim::new(&["A"]);
    let s = Switch::new("A");
    let p = Pool::builder(m.clone())
        .max_size(3)
        .acquire_timeout(Duration::from_secs(5))
        .keepalive_interval(None)
        .breaker_threshold(Some(2))
        .breaker_backoff(Duration::from_millis(100))
        .breaker_max_backoff(Duration::from_secs(1))
        .credentials(s.provider())
        .build()
        .expect("valid");
    drop(p.get().await.expect("get"));
    // The provider says B before the server knows it.
    s.password("B");
    let e = p.refresh_credentials().await.expect_err("B is refused");
    assert!(
        matches!(&e, Error::Backend { phase: Phase::Connect, source } if matches!(**source, AuthError::WrongPassword(_))),
        "{e:?}"
    );
    assert_eq!(p.stats().rotation_probe_failures, 1);
    // Connects meanwhile keep the proven credentials: no failed get.
    let (a, b, c) = tokio::join!(p.get(), p.get(), p.get());
    let held = [a.expect("get"), b.expect("get"), c.expect("get")];
    assert!(held.iter().all(|c| c.password == "A"), "{held:?}");
    drop(held);
    assert_eq!(
        p.status().breaker,
        BreakerState::Closed,
        "not the backend's fault"
    );
    assert_eq!(p.stats().rotations, 0);
    let f = p.doctor();
    let finding = f
        .iter()
        .find(|f| f.code == "conn.credentials-rotation")
        .unwrap_or_else(|| panic!("no rotation finding: {f:#?}"));
    assert!(finding.message.contains("password authentication failed"));
    // The server learns B; after the backoff the next probe proves it.
    m.accept(&["A", "B"]);
    sleep(Duration::from_secs(1)).await;
    assert!(p.refresh_credentials().await.expect("proven now"));
    assert!(p
        .doctor()
        .iter()
        .all(|f| f.code != "conn.credentials-rotation"));
}

#[tokio::test(start_paused = true)]
async fn a_probe_failing_inside_a_get_falls_back_to_the_old_credentials() {
    let m = AuthSim::new(&["A"]);
    let s = Switch::new("A");
    let p = pool(&m, &s, 2, 1);
    let first = p.get().await.expect("get");
    s.password("B");
    let second = p.get().await.expect("served with the proven credentials");
    assert_eq!(second.password, "A");
    let t = p.stats();
    assert_eq!((t.rotation_probe_failures, t.rotations), (1, 0));
    assert_eq!(t.auth_failures, 1, "the probe's refusal is an auth failure");
    drop((first, second));
}

#[tokio::test(start_paused = true)]
async fn auth_failures_opening_the_breaker_rank_first_in_the_doctor() {
    let m = AuthSim::new(&[]);
    let s = Switch::new("s3cret-A");
    let p = Pool::builder(m.clone())
        .max_size(2)
        .acquire_timeout(Duration::from_secs(5))
        .breaker_threshold(Some(3))
        .credentials(s.provider())
        .build()
        .expect("valid");
    let mut last = None;
    for _ in 0..5 {
        last = Some(p.get().await.expect_err("the server refuses the password"));
    }
    assert!(
        matches!(last, Some(Error::Unavailable { .. })),
        "the breaker opened: {last:?}"
    );
    assert_ne!(p.status().breaker, BreakerState::Closed);
    assert!(p.stats().auth_failures >= 3);
    let f = p.doctor();
    assert_eq!(f[0].code, "conn.auth-failures", "{f:#?}");
    assert!(f[0].fix.contains("credentials provider"), "{}", f[0].fix);
    assert!(f[0].message.contains("password authentication failed"));
    let all: String = f
        .iter()
        .map(|f| format!("{}{}", f.message, f.fix))
        .collect();
    assert!(!all.contains("s3cret"), "{all}");
    // The right password comes back: the finding goes once a connect succeeds.
    m.accept(&["s3cret-A"]);
    sleep(Duration::from_secs(2)).await;
    drop(p.get().await.expect("recovered"));
    assert!(p.doctor().iter().all(|f| f.code != "conn.auth-failures"));
}
