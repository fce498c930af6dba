//! Durations as written in a definition: an integer or decimal number followed by a unit
//! (`ms`, `s`, `m`, `h`), e.g. `250ms`, `2s`, `1.5s`. A bare number is rejected: a unit is
//! never guessed.

use std::time::Duration;

/// Parses `250ms`, `2s`, `1.5s`, `1m`, `1h`. Returns a message naming the rule on failure.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` has no unit: write e.g. `250ms`, `2s` or `1m`"))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "`{text}` does not start with a number: write e.g. `250ms`, `2s`"
        ));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{num}` in `{text}` is not a number"))?;
    let unit_secs = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unit `{other}` in `{text}` is not one of ms, s, m, h"
            ))
        }
    };
    let secs = value * unit_secs;
    if !secs.is_finite() || secs > 365.0 * 24.0 * 3600.0 {
        return Err(format!("`{text}` is longer than a year"));
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
        assert!(parse("250").unwrap_err().contains("no unit"));
        assert!(parse("2 parsecs").unwrap_err().contains("not one of"));
        assert!(parse("ms")
            .unwrap_err()
            .contains("does not start with a number"));
        assert!(parse("9999999h")
            .unwrap_err()
            .contains("longer than a year"));
    }

    #[test]
    fn formats_round_trip() {
        for t in ["250ms", "2s", "1.5s", "60s"] {
            assert_eq!(format(parse(t).unwrap()), t);
        }
    }
}
