//! Reclaimer: the finalizer queue done right (issue 3).
