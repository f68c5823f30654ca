//! Feature `serde`: how a [`Config`] is read, and the field helpers it uses, public so a
//! manager's own configuration (the Postgres and Redis ones) reads durations the same way:
//! `#[serde(deserialize_with = "poolguard::conn::config_serde::opt_duration")]`.
//!
//! Durations are human strings (`"30s"`, `"250ms"`, `"1h 30m"`); an optional one also takes
//! `"off"` (or `"none"`, `"never"`, `"disabled"`, or a null) for `None`.
//! [`Config::from_env`] feeds environment variables to the same derived `Deserialize`
//! through a string-valued deserializer, so a file and the environment share one set of
//! keys, one unknown-key rule and one validation (`build()`).

use std::time::Duration;

use serde::de::value::{Error as ValueError, MapDeserializer};
use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, Visitor};

use super::Config;

/// The words that mean "no value" for an optional setting.
fn is_off(s: &str) -> bool {
    matches!(
        s.trim().to_ascii_lowercase().as_str(),
        "off" | "none" | "never" | "disabled"
    )
}

fn parse_duration<E: de::Error>(s: &str) -> Result<Duration, E> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        E::custom(format_args!(
            "invalid duration {s:?}: {e} (write it as \"30s\", \"250ms\", \"1h 30m\")"
        ))
    })
}

/// A required duration: `"30s"`.
///
/// # Errors
/// The deserializer's error for a value that is not such a string.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
}

/// An optional duration: `"30s"`, or `"off"` / `null` for `None`.
///
/// # Errors
/// As [`duration`].
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if is_off(&s) => Ok(None),
        Some(s) => parse_duration(&s).map(Some),
    }
}

/// A `tracing` level by name (`"debug"`, `"warn"`...), or `"off"` / `null` for `None`.
///
/// # Errors
/// The deserializer's error for an unknown level name.
pub fn level<'de, D: Deserializer<'de>>(d: D) -> Result<Option<tracing::Level>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if is_off(&s) => Ok(None),
        Some(s) => s.trim().parse().map(Some).map_err(|_| {
            de::Error::custom(format_args!(
                "invalid level {s:?}: use trace, debug, info, warn, error or off"
            ))
        }),
    }
}

impl Config {
    /// Reads a configuration from the environment variables whose names start with
    /// `prefix` (e.g. `POOLGUARD_`): the rest of the name, lowercased, is the key
    /// (`POOLGUARD_MAX_SIZE=20`, `POOLGUARD_ACQUIRE_TIMEOUT=5s`,
    /// `POOLGUARD_IDLE_TIMEOUT=off`), with the same rules as a file: every key optional,
    /// human durations, and a variable with the prefix that names no setting is refused by
    /// its name. Validate the result with [`Builder::from_config`](super::Builder::from_config)
    /// and `build()`.
    ///
    /// # Errors
    /// The deserializer's error, naming the bad key or value. A variable whose value is
    /// not valid Unicode is skipped.
    pub fn from_env(prefix: &str) -> Result<Config, ValueError> {
        Self::from_vars(prefix, std::env::vars())
    }

    /// [`from_env`](Self::from_env) over the given `(name, value)` pairs instead of the
    /// process environment (tests, or variables gathered elsewhere).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(
        prefix: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ValueError> {
        let pairs: Vec<(String, EnvValue)> = vars
            .into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(prefix)
                    .map(|rest| (rest.to_ascii_lowercase(), EnvValue(v)))
            })
            .collect();
        Config::deserialize(MapDeserializer::new(pairs.into_iter()))
    }
}

/// One environment value: a string that parses itself into whatever the field asks for.
struct EnvValue(String);

impl<'de> IntoDeserializer<'de, ValueError> for EnvValue {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl EnvValue {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, ValueError> {
        self.0
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format_args!("invalid {what} {:?}", self.0)))
    }
}

impl<'de> Deserializer<'de> for EnvValue {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_string(self.0)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_bool(self.parse("boolean")?)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_u64(self.parse("number")?)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_u64(self.parse("number")?)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_u64(self.parse("number")?)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_u64(self.parse("number")?)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_i64(self.parse("number")?)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_f64(self.parse("number")?)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        v.visit_f64(self.parse("number")?)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, ValueError> {
        if self.0.trim().is_empty() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, ValueError> {
        let s: String = self.0.trim().to_ascii_lowercase();
        v.visit_enum(s.into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u128 char str string bytes byte_buf unit unit_struct
        newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}
