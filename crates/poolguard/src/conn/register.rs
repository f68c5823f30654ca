//! How a [`Registry`](crate::diag::Registry) holds a connection pool: weakly, by its shared
//! state, counting as a handle only while it reads the pool.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::{Arc, Weak};

use super::engine::Shared;
use super::{Manager, Pool};
use crate::diag::registry::{Facts, Sealed, Source};
use crate::diag::Diagnose;

struct WeakPool<M: Manager> {
    shared: Weak<Shared<M>>,
    min_idle: usize,
}

impl<M: Manager> Source for WeakPool<M> {
    fn upgrade(&self) -> Option<Box<dyn Diagnose>> {
        let shared = self.shared.upgrade()?;
        // A new handle only while another one lives: once the last `Pool` is dropped (the
        // pool closed, its state kept alive by connections still out or closing), the pool
        // is gone for the registry.
        shared
            .handles
            .fetch_update(Acquire, Relaxed, |h| h.checked_add(1).filter(|_| h > 0))
            .ok()?;
        Some(Box::new(Pool { shared }))
    }
    fn addr(&self) -> usize {
        self.shared.as_ptr() as *const () as usize
    }
    fn facts(&self) -> Facts {
        Facts {
            min_idle: Some(self.min_idle),
        }
    }
}

impl<M: Manager> Sealed for Pool<M> {
    fn source(&self) -> Box<dyn Source> {
        Box::new(WeakPool {
            shared: Arc::downgrade(&self.shared),
            min_idle: self.shared.cfg.min_idle,
        })
    }
}
