//! Ages as kubectl prints them (apimachinery's `duration.HumanDuration`), counted from API timestamps.

use std::time::SystemTime;
use weft_model::k8s_openapi::jiff::Timestamp;

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// `nanos` as about 2-3 significant figures: `45s`, `3m12s`, `7h`, `2d3h`, `45d`, `2y3d`, `9y`; `0s` for up to a
/// second in the future (clock skew), `<invalid>` beyond that.
pub fn human_duration(nanos: i64) -> String {
    let seconds = nanos / SECOND;
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = nanos / MINUTE;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = nanos / HOUR;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        };
    }
    format!("{}y", days / 365)
}

/// An RFC 3339 API timestamp (`Time` or `MicroTime`).
pub fn parse(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// The time from `then` to `now` in nanoseconds, saturated to Go's `time.Duration`.
pub fn between(then: Timestamp, now: SystemTime) -> i64 {
    let now: i128 = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    let nanos = now - then.as_nanosecond();
    nanos.clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

/// How long ago `timestamp` was, or `<unknown>` when it is missing or unreadable (kubectl's
/// `translateTimestampSince`).
pub fn since(timestamp: Option<&str>, now: SystemTime) -> String {
    match timestamp.and_then(parse) {
        Some(t) => human_duration(between(t, now)),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn human_durations_as_kubectl_prints_them() {
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (7 * 3600 + 59 * 60, "7h59m"),
            (7 * 3600 + 90, "7h1m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (7 * 86400 + 23 * 3600, "7d23h"),
            (8 * 86400, "8d"),
            (45 * 86400, "45d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (733 * 86400, "2y3d"),
            (8 * 365 * 86400, "8y"),
            (30 * 365 * 86400, "30y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs * SECOND), *want, "{secs}s");
        }
        // Sub-second precision is cut, not rounded: 1.9 s in the future is still "now".
        assert_eq!(human_duration(-1_900_000_000), "0s");
    }

    #[test]
    fn ages_count_from_api_timestamps() {
        let created = "2026-01-01T00:00:00Z";
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(parse(created).unwrap().as_second() as u64 + 192);
        assert_eq!(since(Some(created), now), "3m12s");
        assert_eq!(since(Some("2026-01-01T00:03:11.500000Z"), now), "0s");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some("yesterday"), now), "<unknown>");
    }
}
