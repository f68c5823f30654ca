//! How a [`Registry`](crate::diag::Registry) holds an object pool: weakly.

use std::sync::{Arc, Weak};

use super::engine::Inner;
use super::{Pool, Recycle};
use crate::diag::registry::{Sealed, Source};
use crate::diag::Diagnose;

struct WeakPool<T>(Weak<Inner<T>>);

impl<T: Recycle + Send + 'static> Source for WeakPool<T> {
    fn upgrade(&self) -> Option<Box<dyn Diagnose>> {
        let inner = self.0.upgrade()?;
        Some(Box::new(Pool { inner }))
    }
    fn addr(&self) -> usize {
        self.0.as_ptr() as *const () as usize
    }
}

impl<T: Recycle + Send + 'static> Sealed for Pool<T> {
    fn source(&self) -> Box<dyn Source> {
        Box::new(WeakPool(Arc::downgrade(&self.inner)))
    }
}
