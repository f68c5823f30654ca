//! The per-connection cache of prepared statements behind
//! [`PgConnection::prepare_cached`](crate::PgConnection::prepare_cached).
//!
//! The cache sits behind a `parking_lot` mutex that is only ever held for a map operation,
//! never across an await, so statements can be prepared through `&self` (and from a
//! transaction, which borrows the client mutably). Preparing happens outside the lock: two
//! callers preparing the same SQL at once both prepare it and the second insert wins.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio_postgres::Statement;

/// A bounded map from SQL text to its prepared statement; full means emptied (the statements
/// are recreated on their next use, which is cheaper than tracking recency on every hit).
#[derive(Debug)]
pub(crate) struct StatementCache {
    map: Mutex<HashMap<String, Statement>>,
    capacity: usize,
}

impl StatementCache {
    pub(crate) fn new(capacity: usize) -> Self {
        StatementCache {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn get(&self, sql: &str) -> Option<Statement> {
        self.map.lock().get(sql).cloned()
    }

    pub(crate) fn insert(&self, sql: &str, statement: &Statement) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.map.lock();
        if map.len() >= self.capacity && !map.contains_key(sql) {
            map.clear();
        }
        map.insert(sql.to_owned(), statement.clone());
    }

    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub(crate) fn clear(&self) {
        // Dropped outside the lock: the last handle of a statement queues its `Close`.
        let old = std::mem::take(&mut *self.map.lock());
        drop(old);
    }
}
