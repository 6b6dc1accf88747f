//! Durations as people write them: `90s`, `15m`, `2h`, `1d`.
//!
//! One number and one unit, nothing else, so that a typo can never be read as something
//! the writer did not mean (no `1h30m`, no `1.5h`, no sign, no spaces).

use std::time::Duration;

/// At most this many digits: enough for any sensible duration, and no overflow to reason about.
const MAX_DIGITS: usize = 9;

/// Why a duration text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty duration; write a number and a unit, like 90s, 15m, 2h or 1d")]
    Empty,
    /// A leading `-` or `+`.
    #[error("a duration has no sign; write a number and a unit, like 90s, 15m, 2h or 1d")]
    Sign,
    /// The text does not start with a digit.
    #[error("a duration starts with a number, like 90s, 15m, 2h or 1d")]
    NoNumber,
    /// More than 9 digits.
    #[error("too many digits in a duration (at most 9)")]
    TooManyDigits,
    /// A number without a unit.
    #[error("a duration needs a unit after the number: s, m, h or d (like 90s, 15m, 2h, 1d)")]
    MissingUnit,
    /// A `.` or `,` after the digits.
    #[error(
        "a duration is a whole number; use a smaller unit instead of a fraction (90m, not 1.5h)"
    )]
    Fraction,
    /// The unit is not one of s, m, h, d (or something follows it).
    #[error("unknown duration unit {0}; use s, m, h or d (like 90s, 15m, 2h, 1d)")]
    BadUnit(String),
    /// The value does not fit a duration.
    #[error("duration too large")]
    Overflow,
}

/// Parses `<digits><unit>` with unit `s`, `m`, `h` or `d` (`90s`, `15m`, `2h`, `1d`).
///
/// Zero parses: callers reject it with their own message.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.starts_with(['-', '+']) {
        return Err(DurationError::Sign);
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits_end == 0 {
        return Err(DurationError::NoNumber);
    }
    if digits_end > MAX_DIGITS {
        return Err(DurationError::TooManyDigits);
    }
    let (digits, unit) = s.split_at(digits_end);
    let seconds_per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        "" => return Err(DurationError::MissingUnit),
        u if u.starts_with(['.', ',']) => return Err(DurationError::Fraction),
        u => return Err(DurationError::BadUnit(crate::show::show(u))),
    };
    let number: u64 = digits.parse().map_err(|_| DurationError::Overflow)?;
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or(DurationError::Overflow)
}

/// The shortest exact form of `d` that [`parse_duration`] reads back:
/// 3600s gives `1h`, 90s gives `90s`, 5400s gives `90m`.
///
/// Durations with a fraction of a second (never produced by this crate) are shown in
/// Rust's debug form, like `1.5s`, since no unit here can express them exactly.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{d:?}");
    }
    let secs = d.as_secs();
    for (size, unit) in [(86_400, 'd'), (3_600, 'h'), (60, 'm')] {
        if secs != 0 && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// Serde support for `Duration` fields written as text (`2h`), for
/// `#[serde(with = "jitca_policy::duration::text")]`.
///
/// Serialises with [`format_duration`], deserialises with [`parse_duration`].
pub mod text {
    use super::{format_duration, parse_duration};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes `d` in its shortest exact form (`2h`).
    pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*d))
    }

    /// Reads a duration written like `90s`, `15m`, `2h` or `1d`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("90s"), Ok(secs(90)));
        assert_eq!(parse_duration("15m"), Ok(secs(900)));
        assert_eq!(parse_duration("2h"), Ok(secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(secs(86_400)));
        assert_eq!(parse_duration("007m"), Ok(secs(420)));
    }

    #[test]
    fn zero_parses_for_callers_to_judge() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0d"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_anything_but_digits_and_one_unit() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-1h"), Err(DurationError::Sign));
        assert_eq!(parse_duration("+1h"), Err(DurationError::Sign));
        assert_eq!(parse_duration("h"), Err(DurationError::NoNumber));
        assert_eq!(parse_duration(" 1h"), Err(DurationError::NoNumber));
        assert_eq!(parse_duration("12"), Err(DurationError::MissingUnit));
        assert_eq!(parse_duration("1.5h"), Err(DurationError::Fraction));
        assert_eq!(parse_duration("1,5h"), Err(DurationError::Fraction));
        assert_eq!(
            parse_duration("1h "),
            Err(DurationError::BadUnit("\"h \"".into()))
        );
        assert_eq!(
            parse_duration("1h30m"),
            Err(DurationError::BadUnit("\"h30m\"".into()))
        );
        assert_eq!(
            parse_duration("1w"),
            Err(DurationError::BadUnit("\"w\"".into()))
        );
        assert_eq!(
            parse_duration("1H"),
            Err(DurationError::BadUnit("\"H\"".into()))
        );
        assert_eq!(
            parse_duration("1 h"),
            Err(DurationError::BadUnit("\" h\"".into()))
        );
        // Non-ASCII digits are not digits here.
        assert_eq!(parse_duration("١h"), Err(DurationError::NoNumber));
    }

    #[test]
    fn digit_limit_and_largest_value() {
        assert_eq!(parse_duration("999999999d"), Ok(secs(999_999_999 * 86_400)));
        assert_eq!(
            parse_duration("1000000000s"),
            Err(DurationError::TooManyDigits)
        );
        assert_eq!(
            parse_duration("0000000001s"),
            Err(DurationError::TooManyDigits)
        );
    }

    #[test]
    fn bad_unit_never_echoes_control_characters() {
        let err = parse_duration("1h\x1b[31m").unwrap_err().to_string();
        assert!(!err.contains('\x1b'), "{err}");
        assert!(err.contains("\\u{1b}"), "{err}");
    }

    #[test]
    fn formats_shortest_exact_form() {
        assert_eq!(format_duration(secs(3600)), "1h");
        assert_eq!(format_duration(secs(90)), "90s");
        assert_eq!(format_duration(secs(5400)), "90m");
        assert_eq!(format_duration(secs(86_400)), "1d");
        assert_eq!(format_duration(secs(90_000)), "25h");
        assert_eq!(format_duration(secs(60)), "1m");
        assert_eq!(format_duration(secs(1)), "1s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn format_round_trips() {
        for n in [
            0, 1, 59, 60, 61, 3599, 3600, 5400, 86_399, 86_400, 604_800, 1_000_000,
        ] {
            let text = format_duration(secs(n));
            assert_eq!(parse_duration(&text), Ok(secs(n)), "{text}");
        }
    }

    #[test]
    fn serde_text_helper() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct T {
            #[serde(with = "text")]
            d: Duration,
        }
        let t: T = serde_yaml::from_str("d: 2h").unwrap();
        assert_eq!(t, T { d: secs(7200) });
        assert_eq!(serde_yaml::to_string(&t).unwrap(), "d: 2h\n");
        let err = serde_yaml::from_str::<T>("d: 2x").unwrap_err().to_string();
        assert!(err.contains("unknown duration unit"), "{err}");
    }
}
