//! The doctor's vocabulary: a finding names a misuse, the evidence and the fix.

use std::fmt;

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Severity {
    /// Worth knowing; nothing is wrong yet.
    Info,
    /// A misuse that costs memory, latency or capacity.
    Warning,
    /// The pool is failing the service now (exhausted, leaking, backend down).
    Critical,
}

/// One diagnosis: what is wrong, the figures that show it, and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Finding {
    /// How urgent.
    pub severity: Severity,
    /// A stable short code, e.g. `object.long-holds` (for alert rules and docs).
    pub code: &'static str,
    /// Which pool (its label or type name).
    pub pool: String,
    /// What is wrong, with the figures that show it.
    pub message: String,
    /// What to change.
    pub fix: String,
}

impl Finding {
    /// A finding.
    pub fn new(
        severity: Severity,
        code: &'static str,
        pool: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            code,
            pool: pool.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:?}] {} ({}): {} -- fix: {}",
            self.severity, self.code, self.pool, self.message, self.fix
        )
    }
}
