//! Durations as written in the config: `"250ms"`, `"10s"`, `"5m"`, `"1h"`,
//! `"30d"`, at most [`MAX`] for timeouts and intervals, so that no operator
//! value can overflow the `Instant + Duration` of a deadline (`idle_timeout
//! = "18446744073709551615s"` once passed `check` and then panicked on every
//! connection), and at most [`LONG_MAX`] for ages compared with dates
//! (`[geoip] max_age`), which are never added to an `Instant`.

use std::time::Duration;

/// The longest duration any key accepts: 24 hours.
pub const MAX: Duration = Duration::from_secs(24 * 3600);

/// The longest age a key accepts (`parse_age`): 3650 days.
pub const LONG_MAX: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`, at most
/// [`MAX`].
///
/// # Errors
/// A message saying what was expected, for the config error list.
pub fn parse(text: &str) -> Result<Duration, String> {
    let d = parse_unbounded(text)?;
    if d > MAX {
        return Err(format!(
            "duration \"{text}\" is too long (at most \"24h\", \"1440m\", \"86400s\")"
        ));
    }
    Ok(d)
}

/// Parses an age (`[geoip] max_age`) as [`parse`] does, at most
/// [`LONG_MAX`].
///
/// # Errors
/// A message saying what was expected, for the config error list.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let d = parse_unbounded(text)?;
    if d > LONG_MAX {
        return Err(format!(
            "duration \"{text}\" is too long (at most \"3650d\")"
        ));
    }
    Ok(d)
}

fn parse_unbounded(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let expected = || {
        format!(
            "invalid duration \"{text}\" (expected an integer and a unit: \"250ms\", \"10s\", \"5m\", \"1h\", \"30d\")"
        )
    };
    if digits.is_empty() {
        return Err(expected());
    }
    let n: u64 = digits.parse().map_err(|_| expected())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(expected)?,
        "h" => n
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(expected)?,
        "d" => n
            .checked_mul(86_400)
            .map(Duration::from_secs)
            .ok_or_else(expected)?,
        _ => return Err(expected()),
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "10 s",
            "-1s",
            "10sec",
            "99999999999999999999s",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn durations_longer_than_a_day_are_refused() {
        assert_eq!(parse("24h"), Ok(MAX));
        assert_eq!(parse("1440m"), Ok(MAX));
        assert_eq!(parse("86400000ms"), Ok(MAX));
        for long in [
            "25h",
            "86401s",
            "86400001ms",
            "18446744073709551615s",
            "18446744073709551615ms",
            "307445734561825860m",
        ] {
            let err = parse(long).unwrap_err();
            assert!(err.contains("is too long"), "{long}: {err}");
        }
    }
}
