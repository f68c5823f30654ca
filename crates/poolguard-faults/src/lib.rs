//! Fault injection for poolguard's connection pool: the simulator and the fault proxy that
//! `poolguard lab` and poolguard's own tests use, published so your tests can use them too.
//!
//! * [`sim`]: an in-process database simulator ([`sim::SimManager`], a
//!   [`poolguard::conn::Manager`]) whose every operation can fail, be slow or hang, with
//!   counters that prove no connection is lost.
//! * [`proxy`]: a TCP proxy with switchable faults ([`proxy::FaultProxy`]) to put between a
//!   pool and a real server.
//!
//! Nothing here panics on bad input or on I/O failure: the proxy returns [`std::io::Error`]s,
//! the simulator returns [`sim::SimError`]s through the pool.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]

pub mod proxy;
pub mod sim;

/// The crate README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
