//! The built `poolguard` binary: `lab --list`, usage errors, password redaction, and
//! connection scenarios against the real PostgreSQL and Redis (`--postgres URL --redis URL`, the servers that
//! `scripts/services.sh` starts; override with `POOLGUARD_PG` / `POOLGUARD_REDIS`).

use std::process::{Command, Output};

/// The scenarios `poolguard lab` has always had; `--list` must name each of them.
const SCENARIOS: &[&str] = &[
    "pool-abuse",
    "finalizer-stall",
    "conn-leak",
    "db-outage",
    "spike",
    "failover",
    "config-traps",
];

fn pg_url() -> String {
    std::env::var("POOLGUARD_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

fn redis_url() -> String {
    std::env::var("POOLGUARD_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn poolguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolguard"))
        .args(args)
        .output()
        .expect("run the poolguard binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn list_names_every_scenario_with_a_description() {
    let out = poolguard(&["lab", "--list"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let listed: Vec<(&str, &str)> = stdout
        .lines()
        .map(|l| {
            let (name, about) = l.split_once(' ').unwrap_or((l, ""));
            (name, about.trim())
        })
        .collect();
    for s in SCENARIOS {
        let about = listed
            .iter()
            .find(|(n, _)| n == s)
            .unwrap_or_else(|| panic!("`lab --list` does not name {s}:\n{stdout}"))
            .1;
        assert!(!about.is_empty(), "{s} has no description:\n{stdout}");
    }
    // --list only lists: no scenario ran.
    assert!(!stdout.contains("=== lab"), "{stdout}");
}

#[test]
fn an_unknown_scenario_exits_2_and_names_the_known_ones() {
    let out = poolguard(&["lab", "no-such-scenario"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown scenario `no-such-scenario`"),
        "{stderr}"
    );
    for s in SCENARIOS {
        assert!(stderr.contains(s), "the message should list {s}: {stderr}");
    }
    assert!(
        !text(&out.stdout).contains("=== lab"),
        "nothing ran before the refusal"
    );
}

#[test]
fn spike_runs_against_the_real_postgres_and_redis() {
    let (pg, redis) = (pg_url(), redis_url());
    let out = poolguard(&["lab", "spike", "--postgres", &pg, "--redis", &redis]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "the lab failed against the real servers (run scripts/services.sh to start them):\n{stdout}\n{stderr}"
    );
    // One section per real backend, in order, each with the scenario's table.
    let pg_at = stdout
        .find(&format!("--- against PostgreSQL ({pg})"))
        .unwrap_or_else(|| panic!("no PostgreSQL section:\n{stdout}"));
    let redis_at = stdout
        .find(&format!("--- against Redis ({redis})"))
        .unwrap_or_else(|| panic!("no Redis section:\n{stdout}"));
    assert!(pg_at < redis_at, "{stdout}");
    for (backend, section) in [
        ("PostgreSQL", &stdout[pg_at..redis_at]),
        ("Redis", &stdout[redis_at..]),
    ] {
        assert!(
            section.contains("| pool (real server, its own connect latency)"),
            "{backend}: no spike table:\n{section}"
        );
        for row in [
            "| poolguard (max_concurrent_opens 1, default)",
            "| open one per waiter (max_concurrent_opens 50)",
        ] {
            let line = section
                .lines()
                .find(|l| l.starts_with(row))
                .unwrap_or_else(|| panic!("{backend}: no row {row}:\n{section}"));
            // The last column is `failed`: every request of the spike was served.
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            assert_eq!(cells[cells.len() - 2], "0", "{backend}: {line}");
        }
    }
    assert!(stdout.contains("=== spike done in"), "{stdout}");
}

#[test]
fn a_refused_port_fails_once_before_any_scenario_with_the_servers_address_and_reason() {
    // Port 1 on localhost: nothing listens there, so the connect is refused at once. No
    // scenario is named: every scenario would run, four of them against the server.
    let out = poolguard(&[
        "lab",
        "--postgres",
        "host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=5",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The message names the flag, the address the user gave (not the lab's proxy) and why,
    // once, and nothing ran.
    assert_eq!(
        stderr
            .matches("--postgres: cannot connect to 127.0.0.1:1")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(!stdout.contains("=== "), "a scenario ran:\n{stdout}");

    let out = poolguard(&["lab", "conn-leak", "--redis", "redis://127.0.0.1:1"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr
            .matches("--redis: cannot connect to 127.0.0.1:1")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(!stdout.contains("=== "), "a scenario ran:\n{stdout}");
}

/// Bad `--postgres` / `--redis` values are usage errors: exit 2, said once, before anything
/// runs (no scenario output at all, not even the simulator-only ones).
#[test]
fn bad_connection_arguments_exit_2_once_before_anything_runs() {
    for (flag, arg, says) in [
        (
            "--postgres",
            "garbage",
            "not a PostgreSQL connection string",
        ),
        (
            "--postgres",
            "host=127.0.0.1 port=x user=u",
            "invalid value for option `port`",
        ),
        ("--postgres", "host=a,b user=u", "more than one server"),
        ("--postgres", "host=127.0.0.1", "no user"),
        ("--redis", "garbage", "not a Redis URL"),
        (
            "--redis",
            "redis://127.0.0.1:6379/not-a-db",
            "not a Redis URL",
        ),
    ] {
        let out = poolguard(&["lab", flag, arg]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{flag} {arg}: {stderr}");
        assert_eq!(stderr.matches(says).count(), 1, "{flag} {arg}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{flag} {arg}: one line, once: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{flag} `{arg}`")),
            "{flag} {arg}: names the flag and its value: {stderr}"
        );
        assert!(stdout.is_empty(), "{flag} {arg}: something ran:\n{stdout}");
    }
}

/// tokio-postgres's `Config::host`/`port` append to the lists, so a rewrite that only set
/// them left the real server (with the user's port) first in line, and the lab's outage, a
/// blackhole in the proxy, never reached the pool.
#[test]
fn db_outage_with_a_port_in_the_url_reaches_the_pool() {
    let pg = pg_url();
    assert!(
        pg.contains("port=") || pg.contains(":5432"),
        "this test needs a port in the URL: {pg}"
    );
    let out = poolguard(&["lab", "db-outage", "--postgres", &pg]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("| without breaker"))
        .unwrap_or_else(|| panic!("no `without breaker` row:\n{stdout}"));
    // Columns: pool | failed requests during outage | ...
    let failed: u64 = row
        .split('|')
        .map(str::trim)
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(failed > 0, "the outage never reached the pool: {row}");
}

const SECRET: &str = "S3cretPw";

/// Every line the command writes, with tracing on (`RUST_LOG=trace`), for `args`.
fn all_output(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_poolguard"))
        .args(args)
        .env("RUST_LOG", "trace")
        .output()
        .expect("run the poolguard binary");
    (
        out.status.code(),
        format!("{}\n{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// No output (progress lines, tables, errors, tracing events) shows a password given in
/// `--postgres` / `--redis`, in either form, whether the server is reachable, refuses the
/// connection or the argument does not parse.
#[test]
fn no_output_shows_a_password() {
    let pg_kv = format!("host=127.0.0.1 port=5432 user=postgres dbname=test password={SECRET}");
    let pg_url = format!("postgres://postgres:{SECRET}@127.0.0.1:5432/test");
    // The shared PostgreSQL trusts local connections, so these run: the progress lines name
    // the server, with the password hidden. The URL runs every connection scenario (their
    // tables print pool errors, the tracing events name connections and failures).
    for (arg, shown, scenarios) in [
        (&pg_kv, "password=***", &["conn-leak"][..]),
        (
            &pg_url,
            "postgres://postgres:***@127.0.0.1:5432/test",
            &[
                "conn-leak",
                "db-outage",
                "spike",
                "failover",
                "config-traps",
            ][..],
        ),
    ] {
        // The report and the JSON (which keep every line, table and chart) too.
        let (html, json) = (tmp("secret.html"), tmp("secret.json"));
        let mut argv = vec!["lab"];
        argv.extend(scenarios);
        argv.extend(["--postgres", arg.as_str()]);
        argv.extend(["--report", html.to_str().unwrap()]);
        argv.extend(["--json", json.to_str().unwrap()]);
        let (code, all) = all_output(&argv);
        assert_eq!(code, Some(0), "{all}");
        assert!(all.contains("--- against PostgreSQL ("), "{all}");
        assert!(all.contains(shown), "{all}");
        assert!(!all.contains(SECRET), "{arg}:\n{all}");
        for file in [&html, &json] {
            let body = std::fs::read_to_string(file).expect("the output file");
            assert!(body.contains("PostgreSQL"), "{}", file.display());
            assert!(
                body.contains(&esc_html(shown)) || body.contains(shown),
                "{}",
                file.display()
            );
            assert!(!body.contains(SECRET), "{arg}: {}", file.display());
        }
    }
    let failing: Vec<Vec<String>> = vec![
        // A password the Redis server does not expect: AUTH fails (or works); either way.
        vec![
            "--redis".into(),
            format!("redis://:{SECRET}@127.0.0.1:6379/0"),
        ],
        vec![
            "--redis".into(),
            format!("redis://default:{SECRET}@127.0.0.1:6379/0"),
        ],
        // Refused ports.
        vec![
            "--postgres".into(),
            format!("postgres://postgres:{SECRET}@127.0.0.1:1/test"),
        ],
        vec![
            "--postgres".into(),
            format!("host=127.0.0.1 port=1 user=postgres password='{SECRET}'"),
        ],
        vec!["--redis".into(), format!("redis://:{SECRET}@127.0.0.1:1")],
        // Arguments that do not parse.
        vec![
            "--postgres".into(),
            format!("host=127.0.0.1 password={SECRET} port=x"),
        ],
        vec![
            "--postgres".into(),
            format!("postgres://u:{SECRET}@127.0.0.1:x/test"),
        ],
        vec![
            "--redis".into(),
            format!("redis://:{SECRET}@127.0.0.1:6379/x"),
        ],
        vec!["--redis".into(), format!("redis:/:{SECRET}@127.0.0.1:6379")],
        // A URL given without its flag is taken for a scenario name.
        vec![format!("postgres://postgres:{SECRET}@127.0.0.1:5432/test")],
    ];
    for args in &failing {
        let mut argv = vec!["lab", "conn-leak"];
        argv.extend(args.iter().map(String::as_str));
        let (_, all) = all_output(&argv);
        assert!(!all.trim().is_empty(), "{args:?}: no output at all");
        assert!(!all.contains(SECRET), "{args:?}:\n{all}");
    }
}

/// `12.3ms`, `1.0s`, `850.1µs`, `2.1ns` (Debug of a `Duration` with one decimal).
fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_alphabetic() || c == 'µ')?);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1e3,
        "µs" => v / 1e6,
        "ns" => v / 1e9,
        _ => return None,
    };
    Some(std::time::Duration::from_secs_f64(secs))
}

/// The planned-restart table shows the breaker's former 1 s backoff beside today's short
/// one, each with the time to the first success after the server is back, and the short
/// backoff recovers sooner (both rows run side by side, under the same load).
#[test]
fn db_outage_shows_the_restart_recovery_beside_the_former_backoff() {
    let out = poolguard(&["lab", "db-outage"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let header = stdout
        .lines()
        .find(|l| l.contains("planned restart"))
        .unwrap_or_else(|| panic!("no planned-restart table:\n{stdout}"));
    let col = header
        .split('|')
        .map(str::trim)
        .position(|c| c == "first success after the server is back")
        .unwrap_or_else(|| panic!("no recovery column: {header}"));
    let recovery = |prefix: &str| {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {prefix}")))
            .unwrap_or_else(|| panic!("no `{prefix}` row:\n{stdout}"));
        let cell = row.split('|').map(str::trim).nth(col).unwrap();
        parse_duration(cell).unwrap_or_else(|| panic!("not a duration: {cell:?} in {row}"))
    };
    let former = recovery("breaker, 1 s backoff (former default)");
    let today = recovery("breaker, 25 ms backoff (default), refused");
    assert!(
        today < former,
        "the short backoff recovers sooner: {today:?} against {former:?}\n{stdout}"
    );
}

/// A fresh path under cargo's per-target temporary directory.
fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab_cli");
    std::fs::create_dir_all(&dir).expect("create the test's temporary directory");
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// The `<section class="scenario" ...>` of `name` in a report page.
fn html_section<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!("data-scenario=\"{name}\""))
        .unwrap_or_else(|| panic!("no section for {name}"));
    let rest = &page[start..];
    &rest[..rest.find("</section>").expect("the section ends")]
}

/// The `data-points` counts of every series path in `html`.
fn drawn_points(html: &str) -> Vec<usize> {
    html.split("<path class=\"series")
        .skip(1)
        .map(|p| {
            let at = p.find("data-points=\"").expect("a point count") + 13;
            p[at..p[at..].find('"').unwrap() + at].parse().unwrap()
        })
        .collect()
}

/// `lab --quick --report --json`: the JSON has every scenario with its tables (each with a
/// verdict, printed under its text table too) and charts whose every series has points; the
/// HTML page draws every scenario's charts with data and loads nothing from outside.
#[test]
fn report_and_json_have_every_scenario_with_series_and_verdicts() {
    let (html, json) = (tmp("all.html"), tmp("all.json"));
    let out = poolguard(&[
        "lab",
        "--quick",
        "--report",
        html.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Not a terminal: the progress spinners draw nothing, stdout has no colour codes.
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "{stderr}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON file")).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["quick"], true);
    let scenarios = v["scenarios"].as_array().expect("scenarios");
    for name in SCENARIOS {
        let s = scenarios
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap_or_else(|| panic!("{name} is not in the JSON"));
        assert_eq!(s["ok"], true, "{name}: {}", s["error"]);
        let tables = s["tables"].as_array().unwrap();
        assert!(!tables.is_empty(), "{name}: no table");
        for t in tables {
            let verdict = t["verdict"].as_str().unwrap();
            assert!(verdict.len() > 20, "{name}: verdict {verdict:?}");
            assert!(
                verdict.chars().any(|c| c.is_ascii_digit()),
                "{name}: {verdict}"
            );
            assert!(
                stdout.contains(&format!("verdict: {verdict}")),
                "{name}: the verdict is not printed under its table: {verdict}"
            );
            assert!(
                !t["rows"].as_array().unwrap().is_empty(),
                "{name}: empty table"
            );
        }
        let charts = s["charts"].as_array().unwrap();
        assert!(!charts.is_empty(), "{name}: no chart");
        for c in charts {
            let series = c["series"].as_array().unwrap();
            assert!(!series.is_empty(), "{name}: {} has no series", c["title"]);
            for sr in series {
                let points = sr["points"].as_array().unwrap();
                assert!(
                    !points.is_empty(),
                    "{name}: {} / {} has no points",
                    c["title"],
                    sr["name"]
                );
                assert!(["naive", "poolguard"].contains(&sr["role"].as_str().unwrap()));
            }
        }
    }
    let page = std::fs::read_to_string(&html).expect("the HTML file");
    assert!(page.starts_with("<!DOCTYPE html>"));
    for external in ["<script", "<link", "src=", "href=\"http", "@import", "url("] {
        assert!(!page.contains(external), "the page loads {external}");
    }
    for name in SCENARIOS {
        let section = html_section(&page, name);
        let charts = v["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap()["charts"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(section.matches("<svg").count(), charts, "{name}");
        let drawn = drawn_points(section);
        assert!(
            !drawn.is_empty() && drawn.iter().all(|n| *n > 0),
            "{name}: {drawn:?}"
        );
        assert!(!section.contains("no data recorded"), "{name}");
        assert!(section.contains("class=\"verdict\""), "{name}");
        assert!(
            section.contains("(naive)") || *name == "conn-leak",
            "{name}: legend"
        );
        assert!(section.contains("(poolguard)"), "{name}: legend");
    }
}

/// An output file that cannot be created is a usage error, said before anything runs.
#[test]
fn an_unwritable_report_path_exits_2_before_anything_runs() {
    for flag in ["--report", "--json"] {
        let out = poolguard(&["lab", "conn-leak", flag, "/nonexistent-dir/r.out"]);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{flag} /nonexistent-dir/r.out: cannot create the file"
            )),
            "{stderr}"
        );
        assert!(stdout.is_empty(), "{flag}: something ran:\n{stdout}");
    }
}

/// What `shown` looks like in HTML text.
fn esc_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A `failover` table: its section and, paced then unpaced, (pools, opens per pool, peak).
type FailoverTable = (Option<String>, [(u64, u64, u64); 2]);

/// The `failover` tables of a `--json` report, by section (`None`: the simulator): per
/// table, the paced and the unpaced rows as (pools, opens per pool, peak connects at once).
fn failover_peaks(json: &std::path::Path) -> Vec<FailoverTable> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).expect("the JSON file")).unwrap();
    let s = v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "failover")
        .expect("the failover scenario in the JSON");
    assert_eq!(s["ok"], true, "{}", s["error"]);
    let row = |r: &serde_json::Value| {
        let cells: Vec<&str> = r
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let (pools, opens) = cells[1].split_once(" x ").expect("pools x opens");
        (
            pools.parse().unwrap(),
            opens.parse().unwrap(),
            cells[2].parse().unwrap(),
        )
    };
    s["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let rows = t["rows"].as_array().unwrap();
            assert_eq!(rows.len(), 2, "{t}");
            assert!(rows[0][0].as_str().unwrap().starts_with("paced"), "{t}");
            assert!(rows[1][0].as_str().unwrap().starts_with("unpaced"), "{t}");
            let verdict = t["verdict"].as_str().unwrap();
            assert!(verdict.contains("within the bound"), "{verdict}");
            (
                t["section"].as_str().map(str::to_owned),
                [row(&rows[0]), row(&rows[1])],
            )
        })
        .collect()
}

/// `lab failover`: the paced fleet never has more than `max_concurrent_opens` x pools
/// connects in progress at the database; the unpaced fleet has more.
#[test]
fn failover_paced_refill_stays_within_its_bound_and_unpaced_does_not() {
    let json = tmp("failover.json");
    let out = poolguard(&[
        "lab",
        "failover",
        "--quick",
        "--json",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let tables = failover_peaks(&json);
    assert_eq!(tables.len(), 1, "{stdout}");
    let [(pools, opens, paced), (upools, uopens, unpaced)] = tables[0].1;
    assert_eq!((pools, opens, upools, uopens), (8, 2, 8, 10), "{stdout}");
    assert!(paced <= pools * opens, "paced peak {paced}:\n{stdout}");
    assert!(unpaced > pools * opens, "unpaced peak {unpaced}:\n{stdout}");
    assert!(stdout.contains("verdict: paced: at most"), "{stdout}");
}

/// The same against the real PostgreSQL (`--postgres`): 4 pools of 5.
#[test]
fn failover_runs_against_the_real_postgres() {
    let json = tmp("failover-pg.json");
    let pg = pg_url();
    let out = poolguard(&[
        "lab",
        "failover",
        "--quick",
        "--postgres",
        &pg,
        "--json",
        json.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "the lab failed against the real server (run scripts/services.sh to start it):\n{stdout}\n{stderr}"
    );
    let tables = failover_peaks(&json);
    assert_eq!(tables.len(), 1, "{stdout}");
    assert_eq!(tables[0].0.as_deref(), Some("PostgreSQL"));
    let [(pools, opens, paced), (_, uopens, unpaced)] = tables[0].1;
    assert_eq!((pools, opens, uopens), (4, 1, 5), "{stdout}");
    assert!(paced <= pools * opens, "paced peak {paced}:\n{stdout}");
    assert!(unpaced > pools * opens, "unpaced peak {unpaced}:\n{stdout}");
}
