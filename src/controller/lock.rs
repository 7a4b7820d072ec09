//! Locks whose holder panicked stay usable: every map behind them is bookkeeping that a
//! half-done update leaves consistent enough.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
