//! Optional wall-clock accounting per op (forward and backward), for `strata bench` and the
//! step benchmark. Off by default; when off a scope costs one relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<Vec<(&'static str, Duration, u64)>> = Mutex::new(Vec::new());

/// Turns the accounting on or off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Forgets everything recorded so far.
pub fn reset() {
    TOTALS.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// The recorded `(name, total time, count)` rows, in first-seen order.
pub fn totals() -> Vec<(&'static str, Duration, u64)> {
    TOTALS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Records the time until the returned guard drops under `name`.
pub fn scope(name: &'static str) -> Scope {
    Scope {
        name,
        start: ENABLED.load(Ordering::Relaxed).then(Instant::now),
    }
}

/// A running measurement; see [`scope`].
pub struct Scope {
    name: &'static str,
    start: Option<Instant>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let Some(start) = self.start else {
            return;
        };
        let elapsed = start.elapsed();
        let mut totals = TOTALS.lock().unwrap_or_else(|p| p.into_inner());
        match totals.iter_mut().find(|(name, _, _)| *name == self.name) {
            Some(row) => {
                row.1 += elapsed;
                row.2 += 1;
            }
            None => totals.push((self.name, elapsed, 1)),
        }
    }
}
