//! How a point's timestamp payload encodes time, and the filters built on it.
//!
//! Applications store a point's creation time as unix seconds, unix milliseconds or an
//! RFC 3339 string. The encoding is configured or detected per collection: a datetime
//! payload index means RFC 3339; on a numeric field the magnitude of a value tells seconds
//! from milliseconds (10^11 seconds is the year 5138, 10^11 milliseconds is 1973). Every
//! age comparison is then done by the server on the (indexed) field, so a point written or
//! refreshed since planning is judged on its current value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{Condition, DatetimeRange, FieldType, PayloadSchemaType, Range, Value};

use crate::config::TimestampFormat;

/// Values at or above this are milliseconds.
const MILLIS_FROM: f64 = 1e11;

/// The encoding of a collection's timestamp field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Unix seconds.
    Seconds,
    /// Unix milliseconds.
    Millis,
    /// RFC 3339 strings.
    Datetime,
}

/// What a payload index on the timestamp field allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// Integer or float: numeric ranges and `order_by`.
    Numeric,
    /// Datetime: datetime ranges and `order_by`.
    Datetime,
    /// Any other type: no range filter can use it.
    Unsuitable(&'static str),
}

impl IndexKind {
    /// The kind of a `PayloadSchemaType` reported in the collection info.
    pub fn of(data_type: i32) -> Self {
        match PayloadSchemaType::try_from(data_type) {
            Ok(PayloadSchemaType::Integer | PayloadSchemaType::Float) => IndexKind::Numeric,
            Ok(PayloadSchemaType::Datetime) => IndexKind::Datetime,
            Ok(t) => IndexKind::Unsuitable(t.as_str_name()),
            Err(_) => IndexKind::Unsuitable("unknown"),
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v.kind.as_ref()? {
        Kind::IntegerValue(n) => Some(*n as f64),
        Kind::DoubleValue(f) => Some(*f),
        _ => None,
    }
}

/// The encoding to use, from the configured format, the index (if any) and one sample
/// value. `Err` says why the field cannot be swept as configured.
pub fn resolve(
    format: TimestampFormat,
    index: Option<IndexKind>,
    sample: &Value,
) -> Result<Encoding, String> {
    let is_string = matches!(sample.kind, Some(Kind::StringValue(_)));
    let detected = match (index, number(sample)) {
        (Some(IndexKind::Unsuitable(t)), _) => {
            return Err(format!(
                "its index is of type {t}, not integer, float or datetime"
            ));
        }
        (Some(IndexKind::Datetime), _) => Encoding::Datetime,
        (_, Some(n)) if n >= MILLIS_FROM => Encoding::Millis,
        (_, Some(_)) => Encoding::Seconds,
        (Some(IndexKind::Numeric), None) => {
            return Err("it has a numeric index but holds non-numbers".into());
        }
        (None, None) if is_string => Encoding::Datetime,
        (None, None) => return Err("its values are neither numbers nor strings".into()),
    };
    let configured = match format {
        TimestampFormat::Auto => return Ok(detected),
        TimestampFormat::UnixSeconds => Encoding::Seconds,
        TimestampFormat::UnixMillis => Encoding::Millis,
        TimestampFormat::Rfc3339 => Encoding::Datetime,
    };
    let numeric = |e: Encoding| e != Encoding::Datetime;
    if numeric(configured) != numeric(detected) {
        return Err(format!(
            "JANITOR_QDRANT_TIMESTAMP_FORMAT says {configured:?} but the field holds {detected:?} values"
        ));
    }
    Ok(configured)
}

/// The payload index to create for a field holding `sample` under `encoding`.
pub fn index_type(encoding: Encoding, sample: &Value) -> FieldType {
    match (encoding, &sample.kind) {
        (Encoding::Datetime, _) => FieldType::Datetime,
        (_, Some(Kind::DoubleValue(f))) if f.fract() != 0.0 => FieldType::Float,
        _ => FieldType::Integer,
    }
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// `field` in `[from, until)`, as a server-side condition in the field's encoding.
pub fn between(
    field: &str,
    encoding: Encoding,
    from: Option<SystemTime>,
    until: SystemTime,
) -> Condition {
    match encoding {
        Encoding::Datetime => Condition::datetime_range(
            field,
            DatetimeRange {
                gte: from.map(Into::into),
                lt: Some(until.into()),
                ..Default::default()
            },
        ),
        Encoding::Seconds | Encoding::Millis => {
            let n = |t: SystemTime| match encoding {
                Encoding::Millis => unix(t).as_millis() as f64,
                _ => unix(t).as_secs_f64(),
            };
            // a collection detected as milliseconds may still hold some values in seconds:
            // those are far below any millisecond cutoff and would read as ancient, so the
            // range never reaches below 10^11 (fail closed: they are left alone)
            let floor = (encoding == Encoding::Millis).then_some(MILLIS_FROM);
            Condition::range(
                field,
                Range {
                    gte: match (from.map(n), floor) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    },
                    lt: Some(n(until)),
                    ..Default::default()
                },
            )
        }
    }
}

/// The instant a payload value stands for.
pub fn instant(v: &Value, encoding: Encoding) -> Option<SystemTime> {
    let secs = match (encoding, v.kind.as_ref()?) {
        (Encoding::Datetime, Kind::StringValue(s)) => {
            let t = mongodb::bson::DateTime::parse_rfc3339_str(s).ok()?;
            t.timestamp_millis() as f64 / 1000.0
        }
        (Encoding::Seconds, _) => number(v)?,
        (Encoding::Millis, _) => number(v)? / 1000.0,
        _ => return None,
    };
    Some(UNIX_EPOCH + Duration::try_from_secs_f64(secs).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: i64) -> Value {
        Value::from(n)
    }

    fn text(s: &str) -> Value {
        Value::from(s.to_string())
    }

    #[test]
    fn encodings_follow_the_index_and_the_magnitude() {
        use TimestampFormat::*;
        let numeric = Some(IndexKind::Numeric);
        assert_eq!(
            resolve(Auto, numeric, &int(1_700_000_000)),
            Ok(Encoding::Seconds)
        );
        assert_eq!(
            resolve(Auto, numeric, &int(1_700_000_000_000)),
            Ok(Encoding::Millis)
        );
        assert_eq!(
            resolve(Auto, None, &Value::from(1.7e9)),
            Ok(Encoding::Seconds)
        );
        let dt = Some(IndexKind::Datetime);
        assert_eq!(
            resolve(Auto, dt, &text("2026-01-01T00:00:00Z")),
            Ok(Encoding::Datetime)
        );
        assert_eq!(
            resolve(Auto, None, &text("2026-01-01T00:00:00Z")),
            Ok(Encoding::Datetime)
        );
        assert_eq!(resolve(UnixMillis, numeric, &int(5)), Ok(Encoding::Millis));
        assert!(resolve(Rfc3339, numeric, &int(1_700_000_000)).is_err());
        assert!(resolve(Auto, Some(IndexKind::Unsuitable("Keyword")), &text("x")).is_err());
        assert!(resolve(Auto, None, &Value::from(true)).is_err());
    }

    #[test]
    fn millisecond_ranges_never_take_values_in_seconds_for_ancient() {
        use qdrant_client::qdrant::condition::ConditionOneOf;
        let until = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let range = |e: Encoding| match between("t", e, None, until).condition_one_of {
            Some(ConditionOneOf::Field(f)) => f.range.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(range(Encoding::Millis).gte, Some(MILLIS_FROM));
        assert_eq!(range(Encoding::Millis).lt, Some(1_700_000_000_000.0));
        assert_eq!(range(Encoding::Seconds).gte, None);
    }

    #[test]
    fn instants_and_index_types() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(instant(&int(1_700_000_000), Encoding::Seconds), Some(t));
        assert_eq!(instant(&int(1_700_000_000_000), Encoding::Millis), Some(t));
        let s = text("2023-11-14T22:13:20Z");
        assert_eq!(instant(&s, Encoding::Datetime), Some(t));
        let offset = text("2023-11-15T00:13:20+02:00");
        assert_eq!(instant(&offset, Encoding::Datetime), Some(t));
        assert_eq!(instant(&text("yesterday"), Encoding::Datetime), None);
        assert_eq!(
            index_type(Encoding::Seconds, &Value::from(1.5e9 + 0.25)),
            FieldType::Float
        );
        assert_eq!(index_type(Encoding::Millis, &int(1)), FieldType::Integer);
        assert_eq!(index_type(Encoding::Datetime, &s), FieldType::Datetime);
    }
}
