//! Feature `serde`: [`RedisSettings`], the manager's settings (and the pool's) as plain data
//! read from a file or the environment. The password is a [`Secret`], and a password inside
//! the URL is masked too: neither shows in `Debug` or an error.

use std::fmt;
use std::time::Duration;

use poolguard::conn::{Config, Secret};
use redis::IntoConnectionInfo;

use crate::{redact_url, BuildError, RedisManager, RedisManagerBuilder};

/// The Redis manager's settings and the pool's, for `serde`:
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use poolguard_redis::RedisSettings;
///
/// let s: RedisSettings = serde_json::from_str(r#"{
///     "url": "redis://127.0.0.1:6379", "password": "hunter2", "db": 1,
///     "query_timeout": "2s", "pool": { "max_size": 8 }
/// }"#)?;
/// assert!(!format!("{s:?}").contains("hunter2"));
/// let manager = s.manager()?; // validated like RedisManager::builder(..).build()
/// # let _ = manager; Ok(()) }
/// ```
///
/// Every key is optional (`url` defaults to `redis://127.0.0.1:6379`); unknown keys are
/// refused by name; durations are human strings. `username`, `password` and `db` override
/// what the URL says. `pool` is a [`poolguard::conn::Config`]: pass it to
/// `Builder::from_config`.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`, `rediss://...` (feature `tls`) or
    /// `redis+unix://...`.
    pub url: Option<String>,
    /// The ACL user name.
    pub username: Option<String>,
    /// The password: never printed.
    pub password: Option<Secret>,
    /// The database number.
    pub db: Option<i64>,
    /// See [`RedisManagerBuilder::response_timeout`].
    #[serde(deserialize_with = "poolguard::conn::config_serde::opt_duration")]
    pub response_timeout: Option<Duration>,
    /// See [`RedisManagerBuilder::query_timeout`].
    #[serde(deserialize_with = "poolguard::conn::config_serde::opt_duration")]
    pub query_timeout: Option<Duration>,
    /// The pool's configuration.
    pub pool: Config,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("db", &self.db)
            .field("response_timeout", &self.response_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("pool", &self.pool)
            .finish()
    }
}

impl RedisSettings {
    /// A manager builder with these settings (TLS roots can still be added).
    pub fn builder(&self) -> RedisManagerBuilder {
        let url = self.url.as_deref().unwrap_or("redis://127.0.0.1:6379");
        let b = match url.into_connection_info() {
            Ok(info) => {
                let mut redis = info.redis_settings().clone();
                if let Some(user) = &self.username {
                    redis = redis.set_username(user);
                }
                if let Some(password) = &self.password {
                    redis = redis.set_password(password.expose());
                }
                if let Some(db) = self.db {
                    redis = redis.set_db(db);
                }
                RedisManager::builder(info.set_redis_settings(redis))
            }
            // The builder reports the same parse error (the URL's own error text).
            Err(_) => RedisManager::builder(url),
        };
        b.response_timeout(self.response_timeout)
            .query_timeout(self.query_timeout)
    }

    /// The validated manager.
    ///
    /// # Errors
    /// What [`RedisManagerBuilder::build`] refuses (a bad URL, a zero timeout...).
    pub fn manager(&self) -> Result<RedisManager, BuildError> {
        self.builder().build()
    }
}
