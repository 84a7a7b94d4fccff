//! Expiry by time windows: a TTL rule deleted at the engine's own pace.
//!
//! Listing every expired id, deleting by `has_id` + the age filter and asking for the ids
//! again costs about three times one filtered delete, on the real server too. A TTL needs
//! none of that: the rule is "older than the cutoff", and the server can apply it itself.
//! So the range `[oldest, cutoff)` is cut into windows of about one batch each, sized with
//! the timestamp index's exact range counts, and each window is deleted with its range
//! filter (`wait=true`). The filter is evaluated when the delete runs, so a point
//! re-upserted with a fresh timestamp has left every window and is never deleted: the
//! safety the `has_id` re-check gave is kept, and a window never reaches past the cutoff.
//!
//! The plan and the audit log hold one item per window: the collection, the field, the
//! range and the count planned (an honest record for a time-to-live rule). The count is
//! what the cap weighs; what a window deleted is its exact count just before its delete. Operators who must have every id set `JANITOR_QDRANT_AUDIT_IDS=true`.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qdrant_client::qdrant::{Condition, Filter};
use serde::{Deserialize, Serialize};

use super::Qdrant;
use super::timestamp::{self, Encoding};
use crate::backend::BackendError;
use crate::plan::PlannedItem;

/// Most pieces one range is cut into per counting round.
const MAX_FANOUT: u64 = 64;

/// A window of a collection's timestamp field: `[from, until)`, no lower bound when `from`
/// is `None`. Serialized into its plan item's `detail`, so recovery can ask about it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// The timestamp payload field.
    pub field: String,
    /// How the field encodes time.
    pub encoding: Encoding,
    /// Inclusive lower bound (RFC 3339); `None`: everything older than `until`.
    #[serde(with = "instant_opt")]
    pub from: Option<SystemTime>,
    /// Exclusive upper bound (RFC 3339), at most the TTL cutoff.
    #[serde(with = "instant")]
    pub until: SystemTime,
}

impl Window {
    /// The window's points, as a server-side filter.
    pub fn filter(&self) -> Filter {
        Filter::must([self.condition()])
    }

    fn condition(&self) -> Condition {
        timestamp::between(&self.field, self.encoding, self.from, self.until)
    }

    /// The plan item deleting the window's `count` points of `collection`.
    pub fn item(&self, collection: &str, count: u64) -> PlannedItem {
        let from = self.from.map_or_else(|| "-inf".to_string(), text);
        let id = format!("{collection}:{}:[{from},{})", self.field, text(self.until));
        let detail = serde_json::to_value(self).unwrap_or_default();
        PlannedItem::delete_range(id, count, detail)
    }

    /// The window a plan item stands for: `None` if it is not a window item, an error if it
    /// is one that cannot be read back (never taken for an id).
    pub fn of(item: &PlannedItem) -> Option<Result<Self, serde_json::Error>> {
        let detail = item.detail.as_ref()?.json()?;
        detail.get("until")?;
        Some(serde_json::from_value(detail.clone()))
    }
}

fn text(t: SystemTime) -> String {
    jiff::Timestamp::try_from(t).map_or_else(|_| format!("{t:?}"), |t| t.to_string())
}

fn parse(s: &str) -> Option<SystemTime> {
    s.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

mod instant {
    use super::*;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(*t))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}")))
    }
}

mod instant_opt {
    use super::*;

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&text(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s}"))),
        }
    }
}

/// The smallest step between two window bounds: a second for values in seconds, a
/// millisecond otherwise.
fn unit(encoding: Encoding) -> Duration {
    match encoding {
        Encoding::Seconds => Duration::from_secs(1),
        Encoding::Millis | Encoding::Datetime => Duration::from_millis(1),
    }
}

/// `t` rounded down to a whole `unit` since the epoch.
fn floor(t: SystemTime, unit: Duration) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let units = since.as_nanos() / unit.as_nanos();
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(units * unit.as_nanos()).unwrap_or(u64::MAX))
}

/// What [`split`] cuts: the field, the oldest value's instant (if the index gave one), the
/// cutoff, how many points are older than it, and the points wanted per window.
#[derive(Debug, Clone)]
pub struct Span {
    /// The timestamp field.
    pub field: String,
    /// Its encoding.
    pub encoding: Encoding,
    /// The oldest point's instant.
    pub oldest: Option<SystemTime>,
    /// The TTL cutoff: the last window ends here.
    pub until: SystemTime,
    /// Points older than `until` (exact).
    pub total: u64,
    /// Points wanted per window.
    pub per_window: u64,
}

/// A piece of the span being cut: bounds and its point count.
struct Piece {
    from: Option<SystemTime>,
    lo: SystemTime,
    until: SystemTime,
    count: u64,
}

/// Cuts `span` into contiguous windows of about `per_window` points each, oldest first,
/// with their counts. A piece holding more than 1.5 windows' worth is cut into equal time
/// slices, each counted with `count(from, until)` but the last (the remainder); a slice of
/// one time unit is never cut further (its points share a timestamp). Adjacent windows
/// whose counts fit in one window are merged, and empty ones join a neighbour, so the
/// windows cover everything older than the cutoff without a gap.
pub async fn split<F, Fut, E>(span: &Span, mut count: F) -> Result<Vec<(Window, u64)>, E>
where
    F: FnMut(Option<SystemTime>, SystemTime) -> Fut,
    Fut: Future<Output = Result<u64, E>>,
{
    let unit = unit(span.encoding);
    let per = span.per_window.max(1);
    // without the oldest instant the range starts at the epoch: counting still cuts it
    let lo = floor(span.oldest.unwrap_or(UNIX_EPOCH), unit).min(span.until);
    let mut stack = vec![Piece {
        from: None,
        lo,
        until: span.until,
        count: span.total,
    }];
    let mut out: Vec<(Option<SystemTime>, SystemTime, u64)> = Vec::new();
    if span.total == 0 {
        return Ok(Vec::new());
    }
    while let Some(p) = stack.pop() {
        let width = p.until.duration_since(p.lo).unwrap_or_default();
        if p.count <= per + per / 2 || width <= unit {
            out.push((p.from, p.until, p.count));
            continue;
        }
        let slices = p.count.div_ceil(per).clamp(2, MAX_FANOUT);
        let step = (width / slices as u32).max(unit);
        let mut pieces = Vec::new();
        let (mut from, mut counted) = (p.from, 0u64);
        for i in 1..slices {
            let bound = floor(p.lo + step * i as u32, unit);
            if bound >= p.until || Some(bound) <= from {
                break;
            }
            let n = count(from, bound).await?.min(p.count - counted);
            counted += n;
            pieces.push(Piece {
                from,
                lo: from.unwrap_or(p.lo),
                until: bound,
                count: n,
            });
            from = Some(bound);
        }
        pieces.push(Piece {
            from,
            lo: from.unwrap_or(p.lo),
            until: p.until,
            count: p.count - counted,
        });
        stack.extend(pieces.into_iter().rev());
    }
    let mut merged: Vec<(Option<SystemTime>, SystemTime, u64)> = Vec::new();
    for (from, until, n) in out {
        match merged.last_mut() {
            // an empty piece joins its neighbour: the windows cover the span without gaps
            Some(last) if last.2 == 0 || n == 0 || last.2 + n <= per => {
                last.1 = until;
                last.2 += n;
            }
            _ => merged.push((from, until, n)),
        }
    }
    Ok(merged
        .into_iter()
        .map(|(from, until, n)| {
            let window = Window {
                field: span.field.clone(),
                encoding: span.encoding,
                from,
                until,
            };
            (window, n)
        })
        .collect())
}

/// The windows of `span` in `collection`, counted on the server's index.
pub async fn plan(
    qdrant: &Qdrant,
    collection: &str,
    span: &Span,
) -> Result<Vec<(Window, u64)>, BackendError> {
    split(span, |from, until| {
        let window = Window {
            field: span.field.clone(),
            encoding: span.encoding,
            from,
            until,
        };
        async move { qdrant.count(collection, Some(window.filter())).await }
    })
    .await
}

/// What became of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted: the points it held when counted exactly just before (the same filter, so
    /// every point counted is deleted unless it left the window in between, and the run's
    /// exact count after says what really went).
    Points(u64),
    /// Left alone: it holds more points than were planned (written with old timestamps
    /// since planning: a restore, a backfill), and the cap weighed the planned count.
    Grown(u64),
}

/// Deletes `window` of `collection` by its range filter (`wait=true`), unless it holds more
/// than the `planned` points the cap allowed.
pub async fn delete(
    qdrant: &Qdrant,
    collection: &str,
    window: &Window,
    planned: u64,
) -> Result<Deleted, BackendError> {
    let before = qdrant.count(collection, Some(window.filter())).await?;
    if before > planned {
        return Ok(Deleted::Grown(before));
    }
    if before > 0 {
        qdrant.delete(collection, window.filter()).await?;
    }
    Ok(Deleted::Points(before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// Splits a span over `points` (their timestamps, seconds), counting them like the index.
    async fn cut(points: &[u64], until: u64, per: u64) -> (Vec<(Window, u64)>, usize) {
        let mut counts = 0;
        let total = points.iter().filter(|p| **p < until).count() as u64;
        let span = Span {
            field: "created_at".into(),
            encoding: Encoding::Seconds,
            oldest: points.iter().min().map(|p| at(*p)),
            until: at(until),
            total,
            per_window: per,
        };
        let windows = split(&span, |from, to| {
            counts += 1;
            let n = points
                .iter()
                .filter(|p| from.is_none_or(|f| at(**p) >= f) && at(**p) < to)
                .count() as u64;
            async move { Ok::<_, Infallible>(n) }
        })
        .await
        .unwrap();
        (windows, counts)
    }

    fn check_cover(windows: &[(Window, u64)], points: &[u64], until: u64) {
        assert_eq!(
            windows[0].0.from, None,
            "the first window has no lower bound"
        );
        assert_eq!(windows.last().unwrap().0.until, at(until));
        for pair in windows.windows(2) {
            assert_eq!(pair[0].0.until, pair[1].0.from.unwrap(), "contiguous");
        }
        for (w, n) in windows {
            let inside = points
                .iter()
                .filter(|p| w.from.is_none_or(|f| at(**p) >= f) && at(**p) < w.until)
                .count() as u64;
            assert_eq!(inside, *n, "{w:?}");
        }
    }

    #[tokio::test]
    async fn uniform_points_make_windows_of_about_one_batch() {
        let points: Vec<u64> = (0..100_000).map(|i| 1_000_000 + i).collect();
        let (windows, counts) = cut(&points, 1_050_000, 10_000).await;
        check_cover(&windows, &points, 1_050_000);
        assert_eq!(windows.iter().map(|w| w.1).sum::<u64>(), 50_000);
        assert_eq!(windows.len(), 5);
        assert!(windows.iter().all(|w| w.1 <= 15_000));
        assert_eq!(
            counts, 4,
            "one counting round, the last slice by difference"
        );
    }

    #[tokio::test]
    async fn skewed_points_are_cut_again_and_one_timestamp_is_never_cut() {
        // one ancient point, then 30,000 points in one hour, 5,000 of them on one second
        let mut points = vec![1_000];
        points.extend((0..25_000).map(|i| 2_000_000 + i % 3_600));
        points.extend(std::iter::repeat_n(2_001_000, 5_000));
        let (windows, _) = cut(&points, 3_000_000, 2_000).await;
        check_cover(&windows, &points, 3_000_000);
        assert_eq!(windows.iter().map(|w| w.1).sum::<u64>(), 30_001);
        let big: Vec<_> = windows.iter().filter(|w| w.1 > 3_000).collect();
        assert!(
            big.iter()
                .all(|w| w.0.until.duration_since(w.0.from.unwrap()).unwrap()
                    <= Duration::from_secs(1)),
            "only a single second may hold more than 1.5 windows: {big:?}"
        );
    }

    #[tokio::test]
    async fn nothing_expired_is_no_window_and_few_points_one_window() {
        let (windows, counts) = cut(&[5_000, 6_000], 4_000, 100).await;
        assert!(windows.is_empty());
        assert_eq!(counts, 0);
        let (windows, _) = cut(&[5_000, 6_000, 7_000], 6_500, 100).await;
        assert_eq!(windows.len(), 1);
        assert_eq!((windows[0].0.from, windows[0].1), (None, 2));
    }

    #[test]
    fn a_window_round_trips_through_its_plan_item() {
        let until = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        let w = Window {
            field: "created_at".into(),
            encoding: Encoding::Millis,
            from: Some(at(1_763_900_000)),
            until,
        };
        let item = w.item("sessions", 42);
        assert_eq!(item.count(), 42);
        assert_eq!(
            item.id,
            "sessions:created_at:[2025-11-23T12:13:20Z,2025-11-24T16:00:00.123456789Z)"
        );
        assert_eq!(Window::of(&item).unwrap().unwrap(), w);
        assert!(Window::of(&PlannedItem::delete("17")).is_none());
        let broken = PlannedItem::delete_range("x", 1, serde_json::json!({ "until": "soon" }));
        assert!(
            Window::of(&broken).unwrap().is_err(),
            "an unreadable window is an error"
        );
    }
}
