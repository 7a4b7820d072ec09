//! Per-workspace admission: at most `max_concurrency` requests in flight, and requests paced
//! evenly at `requests_per_second` with no burst, so no one-second window ever sees more than
//! `requests_per_second + 1` of them. Databricks does not say how it counts its limit (a window,
//! a bucket); an even pace stays under it whatever the counting, where a burst of a second's
//! worth after a pause could double the rate inside one second. Both queues are first come,
//! first served: tokio's semaphore is fair, and the pace is entered one waiter at a time through
//! a fair mutex (governor alone lets sleeping waiters race when they wake).

use std::{num::NonZeroU32, time::Duration};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

use crate::Error;

pub(crate) struct Limits {
    in_flight: Semaphore,
    bucket: DefaultDirectRateLimiter,
    bucket_queue: Mutex<()>,
}

impl Limits {
    pub fn new(max_concurrency: usize, requests_per_second: f64) -> Result<Self, Error> {
        if max_concurrency == 0 {
            return Err(Error::Config {
                message: "max_concurrency must be at least 1".into(),
            });
        }
        if !(requests_per_second.is_finite() && requests_per_second > 0.0) {
            return Err(Error::Config {
                message: "requests_per_second must be a positive number".into(),
            });
        }
        let rps = requests_per_second.clamp(0.001, 1_000_000.0);
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rps))
            .ok_or_else(|| Error::Config {
                message: "requests_per_second is too large".into(),
            })?
            .allow_burst(NonZeroU32::MIN);
        Ok(Self {
            in_flight: Semaphore::new(max_concurrency.min(Semaphore::MAX_PERMITS)),
            bucket: RateLimiter::direct(quota),
            bucket_queue: Mutex::new(()),
        })
    }

    /// Wait for a concurrency slot, then for the bucket. The slot is held until the permit drops.
    pub async fn admit(&self) -> Result<SemaphorePermit<'_>, Error> {
        let permit = self.in_flight.acquire().await.map_err(|_| Error::Config {
            message: "client is shut down".into(),
        })?;
        let _turn = self.bucket_queue.lock().await;
        self.bucket.until_ready().await;
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        time::Instant,
    };

    use super::*;

    #[test]
    fn zero_or_nonsense_limits_are_refused() {
        assert!(Limits::new(0, 1.0).is_err());
        assert!(Limits::new(1, 0.0).is_err());
        assert!(Limits::new(1, -3.0).is_err());
        assert!(Limits::new(1, f64::NAN).is_err());
    }

    #[test]
    fn there_is_no_burst_even_after_a_pause() {
        let limits = Limits::new(8, 30.0).unwrap();
        let admitted = (0..20)
            .take_while(|_| limits.bucket.check().is_ok())
            .count();
        assert_eq!(admitted, 1);
    }

    #[test]
    fn fractional_rates_still_admit_one() {
        let limits = Limits::new(8, 0.5).unwrap();
        assert!(limits.bucket.check().is_ok());
        assert!(limits.bucket.check().is_err());
    }

    #[tokio::test]
    async fn requests_are_paced_at_the_rate() {
        let limits = Limits::new(8, 20.0).unwrap();
        let started = Instant::now();
        for _ in 0..21 {
            drop(limits.admit().await.unwrap());
        }
        // One at once, then 20 more at 20/s: at least 1 s (a lower bound, safe on slow machines).
        assert!(
            started.elapsed() >= Duration::from_millis(950),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_flight_never_exceeds_the_cap() {
        let limits = Arc::new(Limits::new(3, 1_000.0).unwrap());
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let (limits, now, peak) = (limits.clone(), now.clone(), peak.clone());
                tokio::spawn(async move {
                    let _permit = limits.admit().await.unwrap();
                    let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(current, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiters_are_admitted_in_arrival_order() {
        let limits = Arc::new(Limits::new(8, 50.0).unwrap());
        while limits.bucket.check().is_ok() {} // take the first slot so everyone queues
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let (limits, order) = (limits.clone(), order.clone());
                tokio::spawn(async move {
                    let _permit = limits.admit().await.unwrap();
                    order.lock().unwrap().push(i);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }
}
