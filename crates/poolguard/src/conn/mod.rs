//! Async connection pool (issue 4).

mod manager;

pub use manager::{ErrorClass, Manager};
