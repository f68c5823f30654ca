//! Object pool: `sync.Pool` done right (issue 2).
