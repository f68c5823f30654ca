//! Shared helpers for poolguard's criterion benches (not published).
#![forbid(unsafe_code)]
pub mod backends;
pub mod object;
