//! Session state a borrower leaves behind does not reach the next borrower of the same
//! backend under `RecyclingMethod::Fast`: each kind is detected from the protocol and reset on
//! return, and a clean session costs no reset at all.
//!
//! Every pool has one connection, so the next borrower gets the same backend (checked with
//! `pg_backend_pid()`).

mod common;

use std::time::Duration;

use common::*;
use poolguard::conn::Pool;
use poolguard_postgres::{PostgresManager, RecyclingMethod, SessionChange};

async fn pool(tag: &str, method: RecyclingMethod) -> Pool<PostgresManager> {
    let (b, _app) = manager_builder(tag).await;
    Pool::builder(b.recycling(method).build().unwrap())
        .max_size(1)
        .acquire_timeout(Duration::from_secs(10))
        .reset_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn text(c: &tokio_postgres::Client, sql: &str) -> String {
    let rows = c.simple_query(sql).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

/// Runs `change` on a borrowed connection, gives it back, borrows again (same backend) and
/// returns what `probe` says there, with what it said before the change. Also checks the
/// reset ran once for `kind`.
async fn across_borrows(
    p: &Pool<PostgresManager>,
    kind: SessionChange,
    change: &str,
    probe: &str,
) -> (String, String, i32) {
    let c = p.get().await.unwrap();
    let pid = text(&c, "SELECT pg_backend_pid()").await;
    let before = text(&c, probe).await;
    c.batch_execute(change).await.unwrap();
    assert_ne!(
        text(&c, probe).await,
        before,
        "the change must be visible in its own session: {change}"
    );
    drop(c);
    let c = p.get().await.unwrap();
    assert_eq!(
        text(&c, "SELECT pg_backend_pid()").await,
        pid,
        "same backend"
    );
    let after = text(&c, probe).await;
    let stats = p.manager().session_stats();
    assert_eq!(stats.count(kind), 1, "{kind:?} counted once: {stats:?}");
    assert_eq!(stats.resets, 1, "one reset: {stats:?}");
    (before, after, pid.parse().unwrap())
}

#[tokio::test]
async fn set_role_does_not_reach_the_next_borrower() {
    let admin = admin().await;
    let role = unique("poolguard_role");
    admin
        .batch_execute(&format!("CREATE ROLE {role}"))
        .await
        .unwrap();
    for method in [RecyclingMethod::Fast, RecyclingMethod::Verified] {
        let p = pool("pg_ss_role", method).await;
        let (before, after, _) = across_borrows(
            &p,
            SessionChange::Role,
            &format!("SET ROLE {role}"),
            "SELECT current_user",
        )
        .await;
        assert_eq!(after, before, "{method:?}");
        drop(p);
    }
    // `set_config('role', ..)` is `SET ROLE` by another name.
    let p = pool("pg_ss_setcfg", RecyclingMethod::Fast).await;
    let (before, after, _) = across_borrows(
        &p,
        SessionChange::Role,
        &format!("SELECT set_config('role', '{role}', false)"),
        "SELECT current_user",
    )
    .await;
    assert_eq!(after, before);
    drop(p);
    let p = pool("pg_ss_setcfg", RecyclingMethod::Fast).await;
    let (before, after, _) = across_borrows(
        &p,
        SessionChange::Setting,
        "SELECT set_config('work_mem', '1234kB', false)",
        "SHOW work_mem",
    )
    .await;
    assert_eq!(after, before);
    drop(p);
    let p = pool("pg_ss_auth", RecyclingMethod::Fast).await;
    let (before, after, _) = across_borrows(
        &p,
        SessionChange::Role,
        &format!("SET SESSION AUTHORIZATION {role}"),
        "SELECT session_user",
    )
    .await;
    assert_eq!(after, before);
    p.close();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn settings_do_not_reach_the_next_borrower() {
    for (change, probe) in [
        ("SET search_path = pg_catalog", "SHOW search_path"),
        ("SET statement_timeout = '7s'", "SHOW statement_timeout"),
        // Several statements in one simple query: the second one is the change.
        ("SELECT 1; SET lock_timeout = '3s'", "SHOW lock_timeout"),
    ] {
        let p = pool("pg_ss_set", RecyclingMethod::Fast).await;
        let (before, after, _) = across_borrows(&p, SessionChange::Setting, change, probe).await;
        assert_eq!(after, before, "{change}");
    }
}

/// A change the statement text does not show (inside a function) is caught by the server's
/// report of the setting (`ParameterStatus`).
#[tokio::test]
async fn a_reported_setting_changed_inside_a_function_is_reset() {
    let admin = admin().await;
    let f = unique("pg_ss_fn");
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION {f}() RETURNS text LANGUAGE plpgsql AS \
             $b$ BEGIN PERFORM set_config('TimeZone', 'Asia/Tokyo', false); RETURN 'x'; END $b$"
        ))
        .await
        .unwrap();
    let p = pool("pg_ss_report", RecyclingMethod::Fast).await;
    let (before, after, _) = across_borrows(
        &p,
        SessionChange::Setting,
        &format!("SELECT {f}()"),
        "SHOW TimeZone",
    )
    .await;
    assert_eq!(after, before);
    p.close();
    admin
        .batch_execute(&format!("DROP FUNCTION {f}()"))
        .await
        .unwrap();
}

#[tokio::test]
async fn advisory_locks_are_released_on_return() {
    let admin = admin().await;
    let p = pool("pg_ss_lock", RecyclingMethod::Fast).await;
    let key: i64 = rand::random::<u32>().into();
    let probe = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND pid = pg_backend_pid() AND objid = {key}"
    );
    let (before, after, pid) = across_borrows(
        &p,
        SessionChange::AdvisoryLock,
        &format!("SELECT pg_advisory_lock({key})"),
        &probe,
    )
    .await;
    assert_eq!((before.as_str(), after.as_str()), ("0", "0"));
    // And seen from another session.
    let held: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0);
}

#[tokio::test]
async fn listen_prepare_temp_tables_and_hold_cursors_are_reset() {
    let table = unique("pg_ss_tmp");
    for (kind, change, probe) in [
        (
            SessionChange::Listen,
            format!("LISTEN {table}"),
            "SELECT count(*) FROM pg_listening_channels()".to_owned(),
        ),
        (
            SessionChange::PreparedStatement,
            format!("PREPARE {table} (int) AS SELECT $1"),
            "SELECT count(*) FROM pg_prepared_statements WHERE from_sql".to_owned(),
        ),
        (
            SessionChange::TempTable,
            format!("CREATE TEMP TABLE {table} (v int)"),
            format!("SELECT to_regclass('pg_temp.{table}') IS NULL"),
        ),
        (
            SessionChange::HoldCursor,
            format!("DECLARE {table} CURSOR WITH HOLD FOR SELECT 1"),
            "SELECT count(*) FROM pg_cursors".to_owned(),
        ),
    ] {
        let p = pool("pg_ss_misc", RecyclingMethod::Fast).await;
        let (before, after, _) = across_borrows(&p, kind, &change, &probe).await;
        assert_eq!(after, before, "{change}");
    }
}

/// `DEALLOCATE ALL` also drops the statements the connection prepared itself: the statement
/// cache is emptied with it, so cached statements keep working.
#[tokio::test]
async fn cached_statements_survive_the_prepare_reset() {
    let p = pool("pg_ss_cache", RecyclingMethod::Fast).await;
    let sql = "SELECT $1::int + 1";
    let c = p.get().await.unwrap();
    let s = c.prepare_cached(sql).await.unwrap();
    let _: i32 = c.query_one(&s, &[&1i32]).await.unwrap().get(0);
    c.batch_execute("PREPARE pg_ss_p AS SELECT 1")
        .await
        .unwrap();
    drop(s);
    drop(c);
    let c = p.get().await.unwrap();
    let s = c.prepare_cached(sql).await.unwrap();
    let v: i32 = c.query_one(&s, &[&41i32]).await.unwrap().get(0);
    assert_eq!(v, 42);
}

#[tokio::test]
async fn a_clean_session_costs_no_reset() {
    let p = pool("pg_ss_clean", RecyclingMethod::Fast).await;
    let c = p.get().await.unwrap();
    let s = c.prepare_cached("SELECT $1::text").await.unwrap();
    drop(c);
    let resets = p.stats().resets;
    for _ in 0..3 {
        let c = p.get().await.unwrap();
        let s2 = c.prepare_cached("SELECT $1::text").await.unwrap();
        let _: String = c.query_one(&s2, &[&"set role x"]).await.unwrap().get(0);
        c.batch_execute(
            "SELECT 1; BEGIN; SET LOCAL statement_timeout = '1s'; SELECT pg_advisory_xact_lock(1); COMMIT",
        )
        .await
        .unwrap();
        text(&c, "SELECT 'LISTEN x; SET ROLE y'").await;
    }
    drop(s);
    let _c = p.get().await.unwrap();
    assert_eq!(p.stats().resets, resets, "no reset for clean sessions");
    assert_eq!(p.manager().session_stats().resets, 0);
}

/// Every kind at once, left inside an open transaction: one `ROLLBACK`, then one reset query
/// with every statement (it runs as one implicit transaction, which each of them allows).
#[tokio::test]
async fn every_kind_at_once_is_reset_in_one_query() {
    let admin = admin().await;
    let role = unique("poolguard_role_all");
    admin
        .batch_execute(&format!("CREATE ROLE {role}"))
        .await
        .unwrap();
    let p = pool("pg_ss_all", RecyclingMethod::Fast).await;
    let name = unique("pg_ss_all");
    let probe = format!(
        "SELECT concat_ws(',', current_user, current_setting('statement_timeout'), \
           (SELECT count(*) FROM pg_listening_channels()), \
           (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), \
           (SELECT count(*) FROM pg_prepared_statements WHERE from_sql), \
           to_regclass('pg_temp.{name}') IS NULL, (SELECT count(*) FROM pg_cursors))"
    );
    let c = p.get().await.unwrap();
    let pid = text(&c, "SELECT pg_backend_pid()").await;
    let before = text(&c, &probe).await;
    c.batch_execute(&format!(
        "SET statement_timeout = '9s'; LISTEN {name}; SELECT pg_advisory_lock(42); \
         PREPARE {name} AS SELECT 1; CREATE TEMP TABLE {name} (v int); \
         DECLARE {name} CURSOR WITH HOLD FOR SELECT 1; SET ROLE {role}"
    ))
    .await
    .unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    assert_ne!(text(&c, &probe).await, before);
    drop(c);
    let c = p.get().await.unwrap();
    assert_eq!(
        text(&c, "SELECT pg_backend_pid()").await,
        pid,
        "same backend"
    );
    assert_eq!(text(&c, &probe).await, before);
    let stats = p.manager().session_stats();
    assert_eq!(stats.resets, 1, "{stats:?}");
    for kind in SessionChange::ALL {
        assert_eq!(stats.count(kind), 1, "{kind:?}: {stats:?}");
    }
    drop(c);
    p.close();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}
