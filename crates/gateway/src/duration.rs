//! The Gateway API's Duration (GEP-2257): one to four `<number><unit>` parts, units `h`, `m`, `s` and `ms`
//! (`1h`, `10s`, `1m30s`, `500ms`), a subset of Go's syntax without fractions or signs.

use std::time::Duration;

/// The duration of `text`; none when it is not a GEP-2257 Duration.
pub fn parse(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 || digits > 5 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(number), 2)
        } else {
            match rest.chars().next()? {
                'h' => (Duration::from_secs(number * 3600), 1),
                'm' => (Duration::from_secs(number * 60), 1),
                's' => (Duration::from_secs(number), 1),
                _ => return None,
            }
        };
        total += unit;
        rest = &rest[len..];
        parts += 1;
    }
    (1..=4).contains(&parts).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gep_2257_durations() {
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1h0m0s1ms"), Some(Duration::from_millis(3_600_001)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
        for bad in ["", "1", "1.5s", "-1s", "1d", "123456s", "1h1m1s1ms1s"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
