//! A token bucket for `POST /api/resources/cleanup`.
//!
//! Twenty lines on tokio's clock rather than a crate: the rate-limit crates (governor) run
//! on their own clock, which tokio's paused time cannot drive in tests, and pull in a
//! dozen dependencies for one bucket.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Allows `capacity` calls at once, refilled at `capacity` per minute.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: f64,
    per_sec: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `n` calls per minute, bursts of up to `n`.
    pub fn per_minute(n: u32) -> Self {
        let capacity = f64::from(n.max(1));
        Self {
            capacity,
            per_sec: capacity / 60.0,
            bucket: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, last) = *bucket;
        let tokens =
            (tokens + now.duration_since(last).as_secs_f64() * self.per_sec).min(self.capacity);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            Ok(())
        } else {
            *bucket = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn six_per_minute_then_one_every_ten_seconds() {
        let limiter = RateLimiter::per_minute(6);
        for _ in 0..6 {
            assert!(limiter.try_acquire().is_ok());
        }
        let wait = limiter.try_acquire().unwrap_err();
        assert_eq!(wait.as_secs(), 10);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(limiter.try_acquire().is_err());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(limiter.try_acquire().is_ok());
        assert!(limiter.try_acquire().is_err());
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..6 {
            assert!(
                limiter.try_acquire().is_ok(),
                "refills to the burst size only"
            );
        }
        assert!(limiter.try_acquire().is_err());
    }
}
