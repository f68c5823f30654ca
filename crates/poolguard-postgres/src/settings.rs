//! Feature `serde`: [`PostgresSettings`], the manager's settings (and the pool's) as plain
//! data read from a file or the environment, turned into a validated manager by the
//! builder. The password is a [`Secret`]: it never shows in `Debug` or an error.

use std::time::Duration;

use poolguard::conn::{Config, Secret};

use crate::{BuildError, PostgresManager, PostgresManagerBuilder, RecyclingMethod, StatementMode};

/// The PostgreSQL manager's settings and the pool's, for `serde` (a file section, say):
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use poolguard_postgres::PostgresSettings;
///
/// let s: PostgresSettings = serde_json::from_str(r#"{
///     "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "hunter2",
///     "dbname": "test", "connect_timeout": "5s", "recycling": "verified",
///     "pool": { "max_size": 16, "acquire_timeout": "2s" }
/// }"#)?;
/// assert!(!format!("{s:?}").contains("hunter2"));
/// let manager = s.manager()?; // validated like PostgresManager::builder(..).build()
/// # let _ = manager; Ok(()) }
/// ```
///
/// Every key is optional; unknown keys are refused by name; durations are human strings
/// (`"5s"`, `"off"`). `host` may list several hosts separated by commas (as libpq). `pool`
/// is a [`poolguard::conn::Config`]: pass it to `Builder::from_config`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresSettings {
    /// Host name(s), IP address(es) or Unix socket directory(ies), comma-separated.
    pub host: Option<String>,
    /// The port (default 5432).
    pub port: Option<u16>,
    /// The user name.
    pub user: Option<String>,
    /// The password: never printed.
    pub password: Option<Secret>,
    /// The database (default: the user name).
    pub dbname: Option<String>,
    /// `application_name`, shown in `pg_stat_activity`.
    pub application_name: Option<String>,
    /// The TCP connect timeout of each attempt.
    #[serde(deserialize_with = "poolguard::conn::config_serde::opt_duration")]
    pub connect_timeout: Option<Duration>,
    /// What happens to a connection on return (`"fast"`, `"verified"`, `"clean"`).
    pub recycling: RecyclingMethod,
    /// `"named"` or `"unnamed"` (transaction-pooling proxies).
    pub statement_mode: StatementMode,
    /// Prepared statements cached per connection (default 256; 0: off).
    pub statement_cache_capacity: Option<usize>,
    /// See [`PostgresManagerBuilder::query_timeout`].
    #[serde(deserialize_with = "poolguard::conn::config_serde::opt_duration")]
    pub query_timeout: Option<Duration>,
    /// The pool's configuration.
    pub pool: Config,
}

impl PostgresSettings {
    /// A manager builder with these settings (further options, such as TLS, can be added).
    pub fn builder(&self) -> PostgresManagerBuilder {
        let mut pg = tokio_postgres::Config::new();
        if let Some(hosts) = &self.host {
            for h in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                pg.host(h);
            }
        }
        if let Some(port) = self.port {
            pg.port(port);
        }
        if let Some(user) = &self.user {
            pg.user(user);
        }
        if let Some(password) = &self.password {
            pg.password(password.expose());
        }
        if let Some(db) = &self.dbname {
            pg.dbname(db);
        }
        if let Some(app) = &self.application_name {
            pg.application_name(app);
        }
        if let Some(t) = self.connect_timeout {
            pg.connect_timeout(t);
        }
        let mut b = PostgresManagerBuilder::new(pg)
            .recycling(self.recycling)
            .statement_mode(self.statement_mode);
        if let Some(n) = self.statement_cache_capacity {
            b = b.statement_cache_capacity(n);
        }
        if let Some(t) = self.query_timeout {
            b = b.query_timeout(t);
        }
        b
    }

    /// The validated manager.
    ///
    /// # Errors
    /// What [`PostgresManagerBuilder::build`] refuses (no host, a zero timeout...).
    pub fn manager(&self) -> Result<PostgresManager, BuildError> {
        self.builder().build()
    }
}
