//! Deleting many objects fast without being throttled into making no progress.
//!
//! DeleteObjects requests (1,000 keys each) go out with adaptive concurrency, as icechunk
//! settled on after draining the SDK's retry quota in a second (PR#2408): one request in
//! flight at first, doubled after every window of clean answers, halved on any throttle
//! signal (a 503 or SlowDown, an `<Error>` body in a 200, per-key SlowDown or InternalError,
//! a timeout, a dropped connection), with a cool-down before the next request that doubles
//! on repeated throttles (1 s to 32 s) and resets once answers are clean again; never more
//! than `JANITOR_S3_MAX_INFLIGHT` in flight, nor more than `JANITOR_S3_MAX_RPS` a second.
//! The SDK's own retries are off for these requests, so every throttle reaches the
//! controller.
//!
//! Every answer is read key by key (verbose DeleteObjects): a key counts as deleted only
//! when S3 lists it as deleted; one it reports with a retriable code, or does not mention at
//! all, is sent again (up to [`KEY_TRIES`] times); one with another code is recorded failed.

use std::collections::VecDeque;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::S3;
use crate::backend::BackendError;
use crate::metrics::Metrics;

/// Tries per key before it is recorded failed.
pub const KEY_TRIES: u32 = 4;
/// Cool-down after a first throttle, and its ceiling.
const COOL_MIN: Duration = Duration::from_secs(1);
const COOL_MAX: Duration = Duration::from_secs(32);

/// Per-key error codes worth another try.
fn retriable(code: &str) -> bool {
    matches!(
        code,
        "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout" | "Throttling"
    )
}

/// What one DeleteObjects answered, key by key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeleteAnswer {
    /// Keys S3 listed as deleted.
    pub deleted: Vec<String>,
    /// Keys S3 reported with an error, and its code.
    pub errors: Vec<(String, String)>,
    /// Keys the answer did not mention (an `<Error>` body in a 200, a truncated answer).
    pub unanswered: Vec<String>,
}

impl DeleteAnswer {
    /// Whether the answer asks to slow down: a retriable per-key code, or keys unanswered.
    pub fn throttled(&self) -> bool {
        !self.unanswered.is_empty() || self.errors.iter().any(|(_, c)| retriable(c))
    }
}

/// The concurrency controller of one run's deletions.
#[derive(Debug)]
pub struct Throttle {
    limit: usize,
    max: usize,
    clean: usize,
    cool: Duration,
    resume_at: Option<Instant>,
    min_gap: Option<Duration>,
    next_send: Instant,
    peak: usize,
    throttles: u64,
}

impl Throttle {
    /// Starts at one request in flight, at most `max`, at most `rps` a second (0: no cap).
    pub fn new(max: usize, rps: u32) -> Self {
        Self {
            limit: 1,
            max: max.max(1),
            clean: 0,
            cool: Duration::ZERO,
            resume_at: None,
            min_gap: (rps > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(rps))),
            next_send: Instant::now(),
            peak: 1,
            throttles: 0,
        }
    }

    /// Requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The most requests allowed in flight at once so far.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Throttle signals seen.
    pub fn throttles(&self) -> u64 {
        self.throttles
    }

    /// A clean answer: a full window of them doubles the limit (the cool-down resets).
    pub fn clean(&mut self) {
        self.clean += 1;
        if self.clean >= self.limit {
            self.clean = 0;
            self.cool = Duration::ZERO;
            if self.limit < self.max {
                self.limit = (self.limit * 2).min(self.max);
                self.peak = self.peak.max(self.limit);
                tracing::debug!(
                    inflight = self.limit,
                    "s3 deletes: answers clean, more in flight"
                );
            }
        }
    }

    /// A throttle signal: halve the limit and wait a cool-down that doubles while throttles
    /// repeat.
    pub fn throttled(&mut self, why: &str) {
        self.throttles += 1;
        self.clean = 0;
        self.limit = (self.limit / 2).max(1);
        self.cool = (self.cool * 2).clamp(COOL_MIN, COOL_MAX);
        self.resume_at = Some(Instant::now() + self.cool);
        tracing::warn!(
            inflight = self.limit,
            cool_down_ms = self.cool.as_millis() as u64,
            why,
            "s3 deletes throttled: fewer in flight"
        );
    }

    /// Waits until another request may go (the cool-down, the rate cap).
    async fn ready(&mut self) {
        let mut at = self.next_send;
        if let Some(resume) = self.resume_at {
            at = at.max(resume);
        }
        tokio::time::sleep_until(at).await;
        if let Some(gap) = self.min_gap {
            self.next_send = Instant::now() + gap;
        }
    }
}

/// What deleting a set of keys did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Keys S3 said it deleted.
    pub deleted: Vec<String>,
    /// Keys not deleted: a permanent per-key error, or retriable ones out of tries.
    pub failed: Vec<String>,
    /// Of those, the keys still throttled after [`KEY_TRIES`] tries.
    pub throttled_out: usize,
    /// A request failed for another reason than throttling (the keys of the requests not
    /// answered are in `failed`): the caller ends the run with it.
    pub error: Option<BackendError>,
}

/// Deletes `keys` through `throttle`, at most `chunk` keys per request (1,000 at most);
/// `check` runs right before each request and returns the keys of its chunk that must stay
/// (referenced again), which are left out.
pub async fn delete_all<F, Fut, E>(
    s3: &S3,
    keys: Vec<String>,
    chunk: usize,
    throttle: &mut Throttle,
    metrics: Option<&Metrics>,
    mut check: F,
) -> Result<(Deleted, Vec<String>), E>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<String>, Vec<String>), E>>,
{
    let mut queue: VecDeque<(Vec<String>, u32)> = keys
        .chunks(chunk.clamp(1, super::sweep::DELETE_OBJECTS_MAX))
        .map(|c| (c.to_vec(), 0))
        .collect();
    let mut out = Deleted::default();
    let mut kept = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let set_gauge = |n: usize| {
        if let Some(m) = metrics {
            m.set_s3_delete_inflight(n);
        }
    };
    loop {
        while out.error.is_none() && in_flight.len() < throttle.limit() && !queue.is_empty() {
            throttle.ready().await;
            // the bucket's slot comes before the re-check, so that waiting for it (the other
            // runs' requests) does not widen the window between check and delete; while this
            // run's own requests hold slots it waits for their answers (polled below) instead
            let slot = match s3.try_delete_slot() {
                Some(slot) => slot,
                None if in_flight.is_empty() => s3.delete_slot().await,
                None => break,
            };
            let Some((chunk, tries)) = queue.pop_front() else {
                break;
            };
            // a document written since planning saves its object, even with requests in flight
            let (send, keep) = check(chunk).await?;
            kept.extend(keep);
            if send.is_empty() {
                continue;
            }
            let s3 = s3.clone();
            in_flight.push(async move {
                let answer = s3.delete_objects(slot, &send).await;
                (send, tries + 1, answer)
            });
            set_gauge(in_flight.len());
        }
        let Some((sent, tries, answer)) = in_flight.next().await else {
            break;
        };
        set_gauge(in_flight.len());
        let mut again = Vec::new();
        match answer {
            Ok(answer) => {
                if answer.throttled() {
                    throttle.throttled("per-key errors or keys left unanswered");
                } else {
                    throttle.clean();
                }
                out.deleted.extend(answer.deleted);
                again.extend(answer.unanswered);
                for (key, code) in answer.errors {
                    if retriable(&code) {
                        again.push(key);
                    } else {
                        tracing::warn!(key, code, "s3 refused to delete a key");
                        out.failed.push(key);
                    }
                }
            }
            Err(e @ BackendError::Throttled { .. }) | Err(e @ BackendError::Timeout { .. }) => {
                throttle.throttled(&e.to_string());
                again = sent;
            }
            Err(e) => {
                // unknown whether it applied: reported failed, nothing more is sent
                out.failed.extend(sent);
                out.error.get_or_insert(e);
            }
        }
        if !again.is_empty() {
            if tries >= KEY_TRIES || out.error.is_some() {
                if out.error.is_none() {
                    out.throttled_out += again.len();
                }
                out.failed.extend(again);
            } else {
                queue.push_back((again, tries));
            }
        }
    }
    // requests never sent after an error
    out.failed.extend(queue.into_iter().flat_map(|(c, _)| c));
    set_gauge(0);
    Ok((out, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_windows_double_and_throttles_halve_with_a_growing_cool_down() {
        let mut t = Throttle::new(8, 0);
        assert_eq!(t.limit(), 1);
        t.clean();
        assert_eq!(t.limit(), 2);
        t.clean();
        assert_eq!(t.limit(), 2, "a window is as many answers as the limit");
        t.clean();
        assert_eq!(t.limit(), 4);
        for _ in 0..4 {
            t.clean();
        }
        assert_eq!(t.limit(), 8);
        for _ in 0..16 {
            t.clean();
        }
        assert_eq!((t.limit(), t.peak()), (8, 8), "never past the maximum");
        t.throttled("test");
        assert_eq!((t.limit(), t.cool), (4, COOL_MIN));
        t.throttled("test");
        t.throttled("test");
        assert_eq!((t.limit(), t.cool), (1, Duration::from_secs(4)));
        for _ in 0..10 {
            t.throttled("test");
        }
        assert_eq!(
            (t.limit(), t.cool),
            (1, COOL_MAX),
            "the cool-down has a ceiling"
        );
        t.clean();
        assert_eq!(
            (t.limit(), t.cool),
            (2, Duration::ZERO),
            "clean again: it resets"
        );
        assert_eq!(t.throttles(), 13);
    }

    #[test]
    fn answers_that_say_nothing_or_slow_down_are_throttles() {
        let clean = DeleteAnswer {
            deleted: vec!["a".into()],
            errors: vec![("b".into(), "AccessDenied".into())],
            unanswered: vec![],
        };
        assert!(!clean.throttled(), "a permanent error is not a throttle");
        let silent = DeleteAnswer {
            unanswered: vec!["a".into()],
            ..DeleteAnswer::default()
        };
        assert!(silent.throttled());
        let slow = DeleteAnswer {
            errors: vec![("a".into(), "SlowDown".into())],
            ..DeleteAnswer::default()
        };
        assert!(slow.throttled());
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_cap_spaces_requests() {
        let mut t = Throttle::new(8, 4);
        let start = Instant::now();
        for _ in 0..5 {
            t.ready().await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(1),
            "5 requests at 4 a second"
        );
    }
}
