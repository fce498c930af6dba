//! Durations as written in a definition: an integer or decimal number followed by a unit
//! (`ms`, `s`, `m`, `h`), e.g. `250ms`, `2s`, `1.5s`. A bare number is rejected: a unit is
//! never guessed. One parser for the file and every duration flag of the CLI.

use std::time::Duration;

/// Why a duration as written is not one. The message names the rule and shows how to
/// write it; it does not name the field or flag (the caller does).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` has no unit: write e.g. `250ms`, `2s` or `1m`")]
    NoUnit(String),
    #[error("`{0}` does not start with a number: write e.g. `250ms`, `2s`")]
    NoNumber(String),
    #[error("`{number}` in `{text}` is not a number")]
    NotANumber { number: String, text: String },
    #[error("unit `{unit}` in `{text}` is not one of ms, s, m, h")]
    Unit { unit: String, text: String },
    #[error("`{0}` is longer than a year")]
    TooLong(String),
}

/// Parses `250ms`, `2s`, `1.5s`, `1m`, `1h`. Also the `value_parser` of every duration
/// flag of the CLI (clap shows the error's message after the flag and value).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError::NoUnit(text.to_string()))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(DurationError::NoNumber(text.to_string()));
    }
    let value: f64 = num.parse().map_err(|_| DurationError::NotANumber {
        number: num.to_string(),
        text: text.to_string(),
    })?;
    let unit_secs = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(DurationError::Unit {
                unit: other.to_string(),
                text: text.to_string(),
            })
        }
    };
    let secs = value * unit_secs;
    if !secs.is_finite() || secs > 365.0 * 24.0 * 3600.0 {
        return Err(DurationError::TooLong(text.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration the way a definition writes it (`250ms`, `2s`, `1.5s`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 && ms.is_multiple_of(100) {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("1m").unwrap(), Duration::from_secs(60));
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(parse("250").unwrap_err().to_string().contains("no unit"));
        assert!(parse("2 parsecs")
            .unwrap_err()
            .to_string()
            .contains("not one of"));
        assert!(parse("ms")
            .unwrap_err()
            .to_string()
            .contains("does not start with a number"));
        assert!(parse("9999999h")
            .unwrap_err()
            .to_string()
            .contains("longer than a year"));
    }

    #[test]
    fn formats_round_trip() {
        for t in ["250ms", "2s", "1.5s", "60s"] {
            assert_eq!(format(parse(t).unwrap()), t);
        }
    }
}
