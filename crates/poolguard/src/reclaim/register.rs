//! How a [`Registry`](crate::diag::Registry) holds a reclaimer: weakly, and read through a
//! [`ReclaimMonitor`], so the registry never runs a reclaimer's shutdown (the thread that
//! drops the last [`Reclaimer`] does).

use std::sync::{Arc, Weak};

use super::queue::Shared;
use super::reclaimer::Owner;
use super::{ReclaimMonitor, Reclaimer};
use crate::diag::registry::{Sealed, Source};
use crate::diag::Diagnose;

struct WeakReclaimer {
    /// Alive while some `Reclaimer` handle is.
    owner: Weak<Owner>,
    shared: Weak<Shared>,
}

impl Source for WeakReclaimer {
    fn upgrade(&self) -> Option<Box<dyn Diagnose>> {
        if self.owner.strong_count() == 0 {
            return None;
        }
        let shared = self.shared.upgrade()?;
        Some(Box::new(ReclaimMonitor { shared }))
    }
    fn addr(&self) -> usize {
        self.shared.as_ptr() as *const () as usize
    }
}

impl Sealed for Reclaimer {
    fn source(&self) -> Box<dyn Source> {
        Box::new(WeakReclaimer {
            owner: Arc::downgrade(&self.owner),
            shared: Arc::downgrade(&self.owner.shared),
        })
    }
}

impl Sealed for ReclaimMonitor {
    fn source(&self) -> Box<dyn Source> {
        Box::new(WeakMonitor(Arc::downgrade(&self.shared)))
    }
}

/// A monitor outlives its reclaimer by design: registered by a monitor, the reclaimer stays
/// in the registry as long as some monitor (or the reclaimer) does.
struct WeakMonitor(Weak<Shared>);

impl Source for WeakMonitor {
    fn upgrade(&self) -> Option<Box<dyn Diagnose>> {
        let shared = self.0.upgrade()?;
        Some(Box::new(ReclaimMonitor { shared }))
    }
    fn addr(&self) -> usize {
        self.0.as_ptr() as *const () as usize
    }
}
