//! A cron expression, a time zone and an instant. The input is one byte choosing the zone, 8 bytes (little-endian)
//! choosing the instant, then the expression as text, optionally followed by a NUL and the name `H` hashes.
//!
//! Parsing must never panic; for an expression that parses, up to 20 fire times after the instant must each be
//! strictly later than the one before (and than the instant), and each must be what `next_after` finds from a
//! second before it and from half-way since the one before: the fire times are one set, whatever the search
//! starts from.

#![no_main]

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use libfuzzer_sys::fuzz_target;
use pipecron::cron::CronExpr;

/// Zones with odd rules: half-hour and 45-minute offsets and DST shifts, DST at midnight, negative DST, a skipped
/// day, two-hour DST, DST that ends twice a year, ±14 h, and some plain ones.
const ZONES: [Tz; 32] = [
    Tz::UTC,
    Tz::Europe__Berlin,
    Tz::Europe__London,
    Tz::Europe__Dublin,
    Tz::Europe__Moscow,
    Tz::America__New_York,
    Tz::America__Los_Angeles,
    Tz::America__St_Johns,
    Tz::America__Sao_Paulo,
    Tz::America__Havana,
    Tz::America__Santiago,
    Tz::America__Godthab,
    Tz::America__Asuncion,
    Tz::Australia__Lord_Howe,
    Tz::Australia__Adelaide,
    Tz::Pacific__Chatham,
    Tz::Pacific__Apia,
    Tz::Pacific__Kiritimati,
    Tz::Pacific__Pago_Pago,
    Tz::Pacific__Tongatapu,
    Tz::Asia__Kolkata,
    Tz::Asia__Kathmandu,
    Tz::Asia__Tehran,
    Tz::Asia__Gaza,
    Tz::Asia__Pyongyang,
    Tz::Africa__Casablanca,
    Tz::Africa__Cairo,
    Tz::Antarctica__Troll,
    Tz::Antarctica__Macquarie,
    Tz::Etc__GMTPlus12,
    Tz::Etc__GMTMinus14,
    Tz::Europe__Kyiv,
];

/// Instants from 1900 to 2200, in milliseconds since the epoch.
const FIRST_MS: i64 = -2_208_988_800_000;
const LAST_MS: i64 = 7_258_118_400_000;

fuzz_target!(|data: &[u8]| {
    let Some((&zone, rest)) = data.split_first() else { return };
    let Some((millis, rest)) = rest.split_first_chunk::<8>() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (source, name) = text.split_once('\0').unwrap_or((text, "nightly"));
    let tz = ZONES[usize::from(zone) % ZONES.len()];
    let millis = FIRST_MS + i64::from_le_bytes(*millis).rem_euclid(LAST_MS - FIRST_MS);
    let after = DateTime::<Utc>::from_timestamp_millis(millis).expect("in chrono's range");

    let Ok(expr) = CronExpr::parse(source, name) else { return };
    // What the config loader asks of every expression.
    let _ = expr.is_sub_minute();
    let _ = expr.is_fixed_time();
    let _ = expr.ever_fires();

    let mut previous = after;
    for next in expr.iter_after(tz, after).take(20) {
        let next = next.with_timezone(&Utc);
        assert!(next > previous, "'{source}' in {tz}: {next} follows {previous}");
        let from_just_before = expr.next_after(tz, next - Duration::seconds(1));
        assert_eq!(
            from_just_before.map(|t| t.with_timezone(&Utc)),
            Some(next),
            "'{source}' in {tz}: from a second before {next}"
        );
        // Nothing fires between two fire times, so from half-way between them the search finds the later one.
        let between = previous + (next - previous) / 2;
        if between > previous {
            let found = expr.next_after(tz, between).map(|t| t.with_timezone(&Utc));
            assert_eq!(found, Some(next), "'{source}' in {tz}: from {between}, half-way from {previous}");
        }
        previous = next;
    }
});
