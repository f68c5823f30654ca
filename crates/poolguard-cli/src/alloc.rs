//! Allocation figures straight from the global allocator (see the crate's `GLOBAL`).
#![allow(dead_code)] // used by the lab scenarios as they land

use stats_alloc::{Region, StatsAlloc};
use std::alloc::System;

/// Bytes and allocation counts observed since [`AllocMeter::start`].
#[derive(Debug)]
pub(crate) struct AllocMeter {
    region: Region<'static, System>,
}

/// What the allocator saw in a region.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AllocDelta {
    /// Number of allocations (including reallocations).
    pub(crate) allocations: u64,
    /// Bytes currently held that were allocated in the region, minus bytes freed in it.
    pub(crate) net_bytes: i64,
}

impl AllocMeter {
    pub(crate) fn start() -> Self {
        let alloc: &'static StatsAlloc<System> = super::GLOBAL;
        Self {
            region: Region::new(alloc),
        }
    }

    pub(crate) fn delta(&self) -> AllocDelta {
        let s = self.region.change();
        AllocDelta {
            allocations: (s.allocations + s.reallocations) as u64,
            net_bytes: s.bytes_allocated as i64 - s.bytes_deallocated as i64
                + s.bytes_reallocated as i64,
        }
    }
}

/// Human-readable bytes (KiB/MiB/GiB, binary units).
pub(crate) fn fmt_bytes(b: i64) -> String {
    let sign = if b < 0 { "-" } else { "" };
    let v = b.unsigned_abs() as f64;
    if v >= (1u64 << 30) as f64 {
        format!("{sign}{:.2} GiB", v / (1u64 << 30) as f64)
    } else if v >= (1u64 << 20) as f64 {
        format!("{sign}{:.2} MiB", v / (1u64 << 20) as f64)
    } else if v >= 1024.0 {
        format!("{sign}{:.1} KiB", v / 1024.0)
    } else {
        format!("{sign}{v} B")
    }
}
