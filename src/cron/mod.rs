//! Cron expressions with the semantics of Vixie cron / cronie, evaluated in a schedule's time zone.
//!
//! croner does the calendar search, on a clock without time zones, so it never meets a daylight-saving change.
//! This module decides everything croner alone gets wrong for a crontab user:
//! - it checks each field and resolves names and Jenkins' `H` (see `field`);
//! - it picks, per expression, how day-of-month and day-of-week combine: if either field starts with `*`, a day
//!   must match both, otherwise either;
//! - it turns each wall-clock match into instants following cronie's DST rules (cron(8)): a *fixed-time* job, whose
//!   minute and hour both start with something other than `*`, runs once for a time skipped by a spring-forward gap
//!   (at the end of the gap) and once for a time repeated at fall-back (the first time); a *wildcard* job follows
//!   the wall clock, skipping the gap and running in both passes of a repeated hour.

mod field;

use chrono::offset::LocalResult;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::{GapInfo, Tz};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::quote::clip;

pub use field::Field;

/// Why an expression was rejected, written for the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

/// Nicknames, as cronie documents them.
const NICKNAMES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// How far ahead a search looks before it decides an expression never fires. 28 years is a full cycle of
/// weekdays and leap years, so anything that fires at all fires within it.
const HORIZON_YEARS: i32 = 29;

/// A parsed cron expression. It is evaluated in a time zone given to `next_after`.
#[derive(Debug, Clone)]
pub struct CronExpr {
    source: Box<str>,
    /// Evaluated on local wall-clock time written as if it were UTC. Shared by every expression with the same
    /// numeric form: a croner pattern holds kilobytes of bit fields, and 100,000 schedules of `H H * * *` have at
    /// most 1,440 distinct forms.
    compiled: Arc<Compiled>,
    fixed_time: bool,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.compiled.text == other.compiled.text && self.fixed_time == other.fixed_time
    }
}

#[derive(Debug)]
struct Compiled {
    /// The numeric form croner parsed, with the day rule: the key of the cache.
    text: String,
    cron: croner::Cron,
    ever_fires: OnceLock<bool>,
    sub_minute: OnceLock<bool>,
}

/// Compiled patterns by numeric form. Entries die with their last expression, and dead ones are swept as it grows.
static COMPILED: Mutex<Option<HashMap<String, Weak<Compiled>>>> = Mutex::new(None);

fn compile(text: String, dom_and_dow: bool, source: &str) -> Result<Arc<Compiled>, CronError> {
    let key = format!("{text} {dom_and_dow}");
    let mut cache = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(compiled) = cache.get(&key).and_then(Weak::upgrade) {
        return Ok(compiled);
    }
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .year(croner::parser::Year::Disallowed)
        .dom_and_dow(dom_and_dow)
        .build()
        .parse(&text)
        .map_err(|e| {
            CronError(format!("'{}' is not a valid cron expression: {}", clip(source), clip(&e.to_string())))
        })?;
    let compiled =
        Arc::new(Compiled { text: key.clone(), cron, ever_fires: OnceLock::new(), sub_minute: OnceLock::new() });
    if cache.len() >= 1024 && cache.len().is_power_of_two() {
        cache.retain(|_, weak| weak.strong_count() > 0);
    }
    cache.insert(key, Arc::downgrade(&compiled));
    Ok(compiled)
}

impl CronExpr {
    /// Parses `source`. `H` fields take values hashed from `hash_name`, normally the schedule's name.
    pub fn parse(source: &str, hash_name: &str) -> Result<CronExpr, CronError> {
        let trimmed = source.trim();
        let expanded = expand_nickname(trimmed)?;
        let mut fields: Vec<&str> = expanded.split_whitespace().collect();
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 => {}
            n => {
                return Err(CronError(format!(
                    "'{}' has {n} field{}; write 5 fields (minute hour day-of-month month day-of-week), \
                     6 with a leading seconds field, or a nickname such as @daily",
                    clip(trimmed),
                    if n == 1 { "" } else { "s" }
                )));
            }
        }
        let seed = hash(hash_name);
        let parsed = Field::ALL
            .iter()
            .zip(&fields)
            .enumerate()
            .map(|(i, (field, src))| field::parse(*field, src, mix(seed, i as u64)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(CronError)?;
        let (dom, dow) = (&parsed[3], &parsed[5]);
        let text = parsed.iter().map(|f| f.text.as_str()).collect::<Vec<_>>().join(" ");
        let compiled = compile(text, dom.starts_with_star || dow.starts_with_star, trimmed)?;
        Ok(CronExpr {
            source: trimmed.into(),
            compiled,
            fixed_time: !parsed[1].starts_with_star && !parsed[2].starts_with_star,
        })
    }

    /// The expression as the user wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True for a fixed-time job in cronie's sense (see the module documentation).
    pub fn is_fixed_time(&self) -> bool {
        self.fixed_time
    }

    /// False for an expression no date matches, such as `0 0 30 2 *`. Worked out once per distinct pattern: the
    /// time zone cannot change it.
    pub fn ever_fires(&self) -> bool {
        *self.compiled.ever_fires.get_or_init(|| some_day_matches(&self.compiled.cron.pattern, Utc::now().date_naive()))
    }

    /// True when the seconds field fires more than once a minute.
    pub fn is_sub_minute(&self) -> bool {
        let cron = &self.compiled.cron;
        *self
            .compiled
            .sub_minute
            .get_or_init(|| (0..60).filter(|s| cron.pattern.second_match(*s).unwrap_or(false)).count() > 1)
    }

    /// The first instant strictly after `after` at which the expression fires in `tz`, or `None` if it never does
    /// within the search horizon (for example `0 0 30 2 *`).
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let horizon = after.year() + HORIZON_YEARS;
        let mut cursor = earliest_local_time(tz, after).and_utc();
        let mut inclusive = true;
        let mut best: Option<DateTime<Tz>> = None;
        loop {
            let local = self.compiled.cron.find_next_occurrence(&cursor, inclusive).ok()?;
            if local.year() > horizon {
                return best;
            }
            let instants = self.instants(tz, local.naive_utc());
            // The earliest instant of a wall-clock time never decreases as the wall-clock time increases, so once
            // one is no earlier than the best found, nothing later can beat it.
            if let (Some(first), Some(found)) = (instants.first(), best)
                && *first >= found
            {
                return best;
            }
            for instant in instants.iter().filter(|i| i.with_timezone(&Utc) > after) {
                if best.is_none_or(|b| *instant < b) {
                    best = Some(*instant);
                }
            }
            if best.is_some() && best == instants.first().copied() {
                return best;
            }
            cursor = local;
            inclusive = false;
        }
    }

    /// The instants a wall-clock time stands for in `tz`, earliest first, under cronie's DST rules.
    fn instants(&self, tz: Tz, local: NaiveDateTime) -> Vec<DateTime<Tz>> {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(instant) => vec![instant],
            LocalResult::Ambiguous(first, _) if self.fixed_time => vec![first],
            LocalResult::Ambiguous(first, second) => vec![first, second],
            LocalResult::None if self.fixed_time => {
                GapInfo::new(&local, &tz).and_then(|gap| gap.end).into_iter().collect()
            }
            LocalResult::None => vec![],
        }
    }

    /// Fire times after `after`, in order.
    pub fn iter_after(&self, tz: Tz, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Tz>> + '_ {
        std::iter::successors(self.next_after(tz, after), move |prev| self.next_after(tz, prev.with_timezone(&Utc)))
    }
}

/// Whether a day from `from` to the end of the search horizon matches the day-of-month, month and day-of-week
/// fields; the other fields match some time of every day. Day by day, not with `next_after`, whose search takes
/// hundreds of times longer: a file of thousands of schedules that never fire checks each one.
fn some_day_matches(pattern: &croner::CronPattern, from: NaiveDate) -> bool {
    (from.year()..=from.year() + HORIZON_YEARS)
        .flat_map(|year| (1..=12).map(move |month| (year, month)))
        .filter(|(_, month)| pattern.month_match(*month).unwrap_or(false))
        .flat_map(|(year, month)| (1..=31).filter_map(move |day| NaiveDate::from_ymd_opt(year, month, day)))
        .filter(|day| *day >= from)
        .any(|day| {
            let weekday = croner::Weekday::from_days_from_sunday(day.weekday().num_days_from_sunday());
            pattern.day_match(day.year(), day.month(), day.day(), weekday).unwrap_or(false)
        })
}

/// The smallest wall-clock time that can belong to an instant after `after`. Just before a fall-back change, the
/// coming repeated hour reads earlier than the clock does now, so look at the offset a little ahead too. Offsets
/// lie within ±14 h, so two days ahead covers every change that could matter.
fn earliest_local_time(tz: Tz, after: DateTime<Utc>) -> NaiveDateTime {
    let offset = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local() - t.naive_utc();
    let smallest = offset(after).min(offset(after + Duration::days(2)));
    (after.naive_utc() + smallest).with_nanosecond(0).unwrap_or(after.naive_utc())
}

fn expand_nickname(expr: &str) -> Result<String, CronError> {
    if !expr.starts_with('@') {
        return Ok(expr.to_string());
    }
    let lower = expr.to_ascii_lowercase();
    if let Some((_, fields)) = NICKNAMES.iter().find(|(name, _)| *name == lower) {
        return Ok(fields.to_string());
    }
    let known: Vec<&str> = NICKNAMES.iter().map(|(name, _)| *name).collect();
    let why = if lower == "@reboot" {
        "@reboot is not supported: pipecron fires on a clock, not at boot".to_string()
    } else {
        // A long text is no typo, and comparing it costs time in proportion to its length.
        let hint = (lower.len() <= 16)
            .then(|| crate::suggest::closest(&lower, known.iter().copied()))
            .flatten()
            .map(|k| format!(" (did you mean {k}?)"))
            .unwrap_or_default();
        format!("'{}' is not a known nickname{hint}", clip(expr))
    };
    Err(CronError(format!("{why}; use one of {}", known.join(" "))))
}

/// FNV-1a: stable across Rust versions and machines, which `std`'s hasher is not promised to be.
fn hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Gives each field its own well-spread value from the name's hash (splitmix64's finaliser).
fn mix(seed: u64, field: u64) -> u64 {
    let mut z = seed ^ field.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
