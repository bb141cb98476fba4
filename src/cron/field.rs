//! One field of a cron expression: checked, with names and `H` resolved, and written back as the plain numeric
//! form croner reads.
//!
//! croner's own errors do not say which field is wrong, and it replaces names by plain text substitution (so `MON`
//! in the month field would be read as January). Doing this step ourselves gives every mistake a message that
//! names the field and the valid range, and leaves croner only expressions it is known to read correctly.

use std::fmt;

use crate::quote::clip;

/// The fields of a cron line, in the order of a 6-field line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Field {
    pub const ALL: [Field; 6] =
        [Field::Second, Field::Minute, Field::Hour, Field::DayOfMonth, Field::Month, Field::DayOfWeek];

    /// The values the field accepts. Day-of-week 7 is Sunday, as is 0.
    pub fn range(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// The values a bare `H` chooses from. Like Jenkins, days stop at 28 so that every month has the day, and
    /// Sunday is counted once.
    fn hash_range(self) -> (u32, u32) {
        match self {
            Field::DayOfMonth => (1, 28),
            Field::DayOfWeek => (0, 6),
            other => other.range(),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &MONTHS,
            Field::DayOfWeek => &WEEKDAYS,
            _ => &[],
        }
    }

    /// The first value a name stands for: `JAN` is 1, `SUN` is 0.
    fn name_base(self) -> u32 {
        if self == Field::Month { 1 } else { 0 }
    }

    fn allowed(self) -> String {
        let (lo, hi) = self.range();
        match self.names() {
            [] => format!("{lo}-{hi}"),
            names => format!("{lo}-{hi} or {}-{}", names[0], names[names.len() - 1]),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Second => "seconds",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        })
    }
}

/// A field as croner should read it, and what Vixie cron's rules need to know about how it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedField {
    pub text: String,
    /// Written as `*`, `*/n`, `?` or `H/n`: Vixie cron treats such a field as unrestricted when it combines
    /// day-of-month with day-of-week, and when it tells fixed-time jobs from wildcard jobs.
    pub starts_with_star: bool,
}

/// Checks one field and resolves its names and `H`. `hash` is this field's share of the schedule name's hash.
pub fn parse(field: Field, src: &str, hash: u64) -> Result<ParsedField, String> {
    let items = src
        .split(',')
        .map(|item| parse_item(field, item, hash).map_err(|why| format!("the {field} field '{}': {why}", clip(src))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParsedField {
        text: items.join(","),
        starts_with_star: src.starts_with('*') || src.starts_with('?') || src.to_ascii_uppercase().starts_with("H/"),
    })
}

fn parse_item(field: Field, item: &str, hash: u64) -> Result<String, String> {
    if item.is_empty() {
        return Err("an empty list item; write values separated by single commas".into());
    }
    let upper = item.to_ascii_uppercase();
    if let Some(extension) = parse_extension(field, &upper)? {
        return Ok(extension);
    }
    let (base, step) = match upper.split_once('/') {
        Some((base, step)) => (base, Some(parse_step(field, step)?)),
        None => (upper.as_str(), None),
    };
    let (lo, hi) = field.range();
    let step_text = step.map(|s| format!("/{s}")).unwrap_or_default();
    match base {
        "*" => Ok(format!("*{step_text}")),
        "?" if matches!(field, Field::DayOfMonth | Field::DayOfWeek) => Ok(format!("*{step_text}")),
        "?" => Err("'?' is only allowed in the day-of-month and day-of-week fields; write '*'".into()),
        h if h.starts_with('H') => hashed(field, h, step, hash),
        range if range.contains('-') => {
            let (from, to) = range.split_once('-').unwrap_or((range, ""));
            let (from, to) = (value(field, from)?, value(field, to)?);
            if from > to && !(field == Field::DayOfWeek && to == 0) {
                return Err(format!("{from}-{to} runs backwards; write it as two ranges, {from}-{hi},{lo}-{to}"));
            }
            let to = if field == Field::DayOfWeek && to == 0 { 7 } else { to };
            Ok(format!("{from}-{to}{step_text}"))
        }
        single => {
            let v = value(field, single)?;
            match step {
                Some(s) => Err(format!("a step needs a range: write {v}-{hi}/{s} or */{s}")),
                None => Ok(v.to_string()),
            }
        }
    }
}

fn parse_step(field: Field, step: &str) -> Result<u32, String> {
    let (lo, hi) = field.range();
    match step.parse::<u32>() {
        Ok(0) => Err("a step must be 1 or more".into()),
        Ok(s) if s > hi - lo + 1 => Err(format!("step {s} is larger than the field's range {lo}-{hi}")),
        Ok(s) => Ok(s),
        Err(_) => Err(format!("'/{}' is not a step; write a whole number such as /5", clip(step))),
    }
}

/// A number or a name, checked against the field's range.
fn value(field: Field, text: &str) -> Result<u32, String> {
    if let Some(index) = field.names().iter().position(|n| *n == text) {
        return Ok(index as u32 + field.name_base());
    }
    let (lo, hi) = field.range();
    match text.parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is out of range; use {}", field.allowed())),
        Err(_) if text.is_empty() => {
            Err(format!("a range needs a value on both sides of '-'; use {}", field.allowed()))
        }
        Err(_) => {
            // A long text is no typo, and comparing it costs time in proportion to its length.
            let hint = (text.len() <= 16)
                .then(|| crate::suggest::closest(text, field.names().iter().copied()))
                .flatten()
                .map(|name| format!(" (did you mean {name}?)"))
                .unwrap_or_default();
            Err(format!("'{}' is not a valid value{hint}; use {}", clip(text), field.allowed()))
        }
    }
}

/// Jenkins' hash syntax: `H`, `H(a-b)`, `H/n` and `H(a-b)/n`. The value comes from the schedule name, so it is
/// the same on every run and every replica, and different schedules spread over the range.
fn hashed(field: Field, text: &str, step: Option<u32>, hash: u64) -> Result<String, String> {
    let (lo, hi) = match text.strip_prefix('H').unwrap_or(text) {
        "" => field.hash_range(),
        bounds => {
            let inner = bounds
                .strip_prefix('(')
                .and_then(|b| b.strip_suffix(')'))
                .ok_or_else(|| format!("'{}' is not a hash; write H, H(a-b), H/n or H(a-b)/n", clip(text)))?;
            let (from, to) = inner
                .split_once('-')
                .ok_or_else(|| format!("'{}' needs a range inside the parentheses, such as H(0-29)", clip(text)))?;
            let (from, to) = (value(field, from)?, value(field, to)?);
            if from > to {
                return Err(format!("the hash range {from}-{to} runs backwards"));
            }
            (from, to)
        }
    };
    let span = u64::from(hi - lo + 1);
    Ok(match step {
        None => (lo + (hash % span) as u32).to_string(),
        Some(step) => {
            let start = lo + (hash % u64::from(step).min(span)) as u32;
            format!("{start}-{hi}/{step}")
        }
    })
}

/// The documented extensions croner evaluates: `L`, `LW` and `nW` for days of the month, `nL` (last such weekday
/// of the month) and `n#k` (k-th such weekday) for days of the week.
fn parse_extension(field: Field, item: &str) -> Result<Option<String>, String> {
    match field {
        Field::DayOfMonth => {
            if item == "L" || item == "LW" {
                return Ok(Some(item.to_string()));
            }
            match item.strip_suffix('W') {
                Some(day) => Ok(Some(format!("{}W", value(field, day)?))),
                None => Ok(None),
            }
        }
        Field::DayOfWeek => {
            if let Some((day, nth)) = item.split_once('#') {
                let day = value(field, day)?;
                return match nth.parse::<u32>() {
                    Ok(n @ 1..=5) => Ok(Some(format!("{day}#{n}"))),
                    _ => Err(format!("'#{}' must be #1 to #5, the week of the month", clip(nth))),
                };
            }
            match item.strip_suffix('L') {
                Some(day) if !day.is_empty() => Ok(Some(format!("{}L", value(field, day)?))),
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(field: Field, src: &str) -> String {
        parse(field, src, 0).expect("valid field").text
    }

    fn error(field: Field, src: &str) -> String {
        parse(field, src, 0).expect_err("invalid field")
    }

    #[test]
    fn names_become_numbers_only_in_their_own_field() {
        assert_eq!(text(Field::DayOfWeek, "mon-FRI"), "1-5");
        assert_eq!(text(Field::Month, "JAN,jul"), "1,7");
        assert!(error(Field::Month, "MON").ends_with("use 1-12 or JAN-DEC"));
        assert!(error(Field::DayOfWeek, "MOM").contains("did you mean MON?"));
    }

    #[test]
    fn sunday_is_0_and_7_and_a_range_may_end_on_sunday() {
        assert_eq!(text(Field::DayOfWeek, "0"), "0");
        assert_eq!(text(Field::DayOfWeek, "7"), "7");
        assert_eq!(text(Field::DayOfWeek, "FRI-SUN"), "5-7");
    }

    #[test]
    fn ranges_steps_and_bounds_are_checked() {
        assert_eq!(text(Field::Minute, "*/15"), "*/15");
        assert_eq!(text(Field::Minute, "10-40/10"), "10-40/10");
        assert_eq!(error(Field::Minute, "61"), "the minute field '61': 61 is out of range; use 0-59");
        assert!(error(Field::Hour, "22-2").contains("22-23,0-2"));
        assert!(error(Field::Minute, "*/0").contains("1 or more"));
        assert!(error(Field::Minute, "5/10").contains("5-59/10"));
        assert!(error(Field::Minute, "1,,2").contains("empty list item"));
        assert!(error(Field::Hour, "?").contains("only allowed"));
    }

    #[test]
    fn star_forms_are_recognised() {
        assert!(parse(Field::DayOfMonth, "*/2", 0).expect("valid").starts_with_star);
        assert!(parse(Field::DayOfMonth, "?", 0).expect("valid").starts_with_star);
        assert!(parse(Field::Minute, "H/15", 0).expect("valid").starts_with_star);
        assert!(!parse(Field::DayOfMonth, "1,15", 0).expect("valid").starts_with_star);
        assert!(!parse(Field::Minute, "H", 0).expect("valid").starts_with_star);
    }

    #[test]
    fn hash_stays_within_its_range() {
        for hash in 0..500u64 {
            let v: u32 = parse(Field::Minute, "H(0-29)", hash).expect("valid").text.parse().expect("a number");
            assert!(v <= 29);
            let d: u32 = parse(Field::DayOfMonth, "H", hash).expect("valid").text.parse().expect("a number");
            assert!((1..=28).contains(&d));
            let stepped = parse(Field::Minute, "H/15", hash).expect("valid").text;
            let start: u32 = stepped.split('-').next().and_then(|s| s.parse().ok()).expect("a start");
            assert!(start < 15, "{stepped}");
            assert!(stepped.ends_with("-59/15"), "{stepped}");
        }
    }

    #[test]
    fn extensions_are_passed_on() {
        assert_eq!(text(Field::DayOfMonth, "L"), "L");
        assert_eq!(text(Field::DayOfMonth, "15W"), "15W");
        assert_eq!(text(Field::DayOfWeek, "FRI#2"), "5#2");
        assert_eq!(text(Field::DayOfWeek, "5L"), "5L");
        assert!(error(Field::DayOfWeek, "1#6").contains("#1 to #5"));
    }
}
