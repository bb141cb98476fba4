//! Durations as schedule files write them: `90s`, `15m`, `1h`, `2h30m`, `1d`, `500ms`, or `0`.

use std::time::Duration;

const UNITS: [(&str, u64); 5] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)];

/// Parses a duration; the error says what would be right.
pub fn parse(text: &str) -> Result<Duration, String> {
    let hint = "write a number with a unit, such as 90s, 15m, 1h or 2h30m (units: ms, s, m, h, d)";
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(format!("an empty duration; {hint}"));
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("'{text}' is not a duration; {hint}"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| format!("'{text}' is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(match unit {
                "" => format!("'{text}' has no unit; {hint}"),
                _ => format!("'{unit}' in '{text}' is not a unit; {hint}"),
            });
        };
        millis = number
            .checked_mul(*scale)
            .and_then(|m| millis.checked_add(m))
            .ok_or_else(|| format!("'{text}' is too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(millis))
}

/// Writes a duration the way `parse` reads it: `2h30m`, `90s` becomes `1m30s`.
pub fn format(duration: Duration) -> String {
    let mut millis = duration.as_millis() as u64;
    if millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, scale) in UNITS.iter().rev() {
        if millis >= *scale {
            out.push_str(&format!("{}{unit}", millis / scale));
            millis %= scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_forms() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2h30m"), Ok(Duration::from_secs(9000)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_with_a_hint() {
        for bad in ["", "90", "1x", "h", "1.5h", "-1s", "1h 30m", "99999999999999999999s"] {
            let error = parse(bad).expect_err(bad);
            assert!(error.contains("90s") || error.contains("too large"), "{bad}: {error}");
        }
    }

    #[test]
    fn formats_back() {
        assert_eq!(format(Duration::from_secs(9000)), "2h30m");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
