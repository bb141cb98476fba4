use chrono::{DateTime, Duration, SecondsFormat, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("a valid test instant").with_timezone(&Utc)
}

fn zone(name: &str) -> Tz {
    name.parse().expect("a known zone")
}

/// The first `n` fire times after `after`, as `pipecron next` prints them.
fn fires(expr: &str, tz: &str, after: &str, n: usize) -> Vec<String> {
    let cron = CronExpr::parse(expr, "test").expect("a valid expression");
    cron.iter_after(zone(tz), at(after)).take(n).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false)).collect()
}

fn days(expr: &str, after: &str, n: usize) -> Vec<String> {
    fires(expr, "UTC", after, n).into_iter().map(|t| t[..10].to_string()).collect()
}

#[test]
fn either_day_field_matches_when_both_are_restricted() {
    assert_eq!(
        days("0 0 1,15 * 1", "2026-05-31T12:00:00Z", 8),
        [
            "2026-06-01",
            "2026-06-08",
            "2026-06-15",
            "2026-06-22",
            "2026-06-29",
            "2026-07-01",
            "2026-07-06",
            "2026-07-13"
        ]
    );
}

#[test]
fn both_day_fields_must_match_when_one_starts_with_a_star() {
    assert_eq!(
        days("0 0 */2 * 1", "2026-05-31T12:00:00Z", 5),
        ["2026-06-01", "2026-06-15", "2026-06-29", "2026-07-13", "2026-07-27"]
    );
    // `*` in day-of-month: only the weekday counts.
    assert_eq!(days("0 0 * * 1", "2026-05-31T12:00:00Z", 2), ["2026-06-01", "2026-06-08"]);
    // `*` in day-of-week: only the day of the month counts.
    assert_eq!(days("0 0 1,15 * *", "2026-05-31T12:00:00Z", 2), ["2026-06-01", "2026-06-15"]);
}

#[test]
fn sunday_is_0_and_7_and_names_work() {
    let sundays = days("0 12 * * 0", "2026-11-24T00:00:00Z", 3);
    assert_eq!(sundays, ["2026-11-29", "2026-12-06", "2026-12-13"]);
    assert_eq!(days("0 12 * * 7", "2026-11-24T00:00:00Z", 3), sundays);
    assert_eq!(days("0 12 * * sun", "2026-11-24T00:00:00Z", 3), sundays);
    assert_eq!(days("0 0 1 jan,JUL *", "2026-11-24T00:00:00Z", 2), ["2027-01-01", "2027-07-01"]);
    assert_eq!(days("0 0 * * MON-FRI", "2026-11-27T12:00:00Z", 3), ["2026-11-30", "2026-12-01", "2026-12-02"]);
}

#[test]
fn ranges_with_steps() {
    assert_eq!(
        fires("10-40/15 9 * * *", "UTC", "2026-11-24T00:00:00Z", 4),
        [
            "2026-11-24T09:10:00+00:00",
            "2026-11-24T09:25:00+00:00",
            "2026-11-24T09:40:00+00:00",
            "2026-11-25T09:10:00+00:00"
        ]
    );
    assert_eq!(
        fires("0 */8 * * *", "UTC", "2026-11-24T01:00:00Z", 3),
        ["2026-11-24T08:00:00+00:00", "2026-11-24T16:00:00+00:00", "2026-11-25T00:00:00+00:00"]
    );
}

#[test]
fn nicknames_and_the_seconds_field() {
    let after = "2026-11-24T10:20:30Z";
    assert_eq!(fires("@yearly", "UTC", after, 1), ["2027-01-01T00:00:00+00:00"]);
    assert_eq!(fires("@annually", "UTC", after, 1), ["2027-01-01T00:00:00+00:00"]);
    assert_eq!(fires("@monthly", "UTC", after, 1), ["2026-12-01T00:00:00+00:00"]);
    assert_eq!(fires("@weekly", "UTC", after, 1), ["2026-11-29T00:00:00+00:00"]);
    assert_eq!(fires("@daily", "UTC", after, 1), ["2026-11-25T00:00:00+00:00"]);
    assert_eq!(fires("@midnight", "UTC", after, 1), ["2026-11-25T00:00:00+00:00"]);
    assert_eq!(fires("@HOURLY", "UTC", after, 1), ["2026-11-24T11:00:00+00:00"]);
    assert_eq!(
        fires("*/20 * * * * *", "UTC", after, 3),
        ["2026-11-24T10:20:40+00:00", "2026-11-24T10:21:00+00:00", "2026-11-24T10:21:20+00:00"]
    );
    assert!(CronExpr::parse("*/20 * * * * *", "x").expect("valid").is_sub_minute());
    assert!(!CronExpr::parse("5 * * * * *", "x").expect("valid").is_sub_minute());
    assert!(!CronExpr::parse("@daily", "x").expect("valid").is_sub_minute());
}

#[test]
fn after_is_exclusive_and_subsecond_instants_work() {
    assert_eq!(fires("30 0 * * *", "UTC", "2026-11-25T00:30:00Z", 1), ["2026-11-26T00:30:00+00:00"]);
    assert_eq!(fires("30 0 * * *", "UTC", "2026-11-25T00:29:59.999Z", 1), ["2026-11-25T00:30:00+00:00"]);
}

#[test]
fn hash_is_stable_per_name_and_spreads_names() {
    let minute = |name: &str| {
        let cron = CronExpr::parse("H 2 * * *", name).expect("valid");
        let next = cron.next_after(zone("UTC"), at("2026-11-24T00:00:00Z")).expect("fires");
        next.format("%M").to_string()
    };
    // The documentation promises that `H` picks the same time in every version: these were computed once and are
    // kept, so that a change of the hash or of how a field uses it fails here rather than moving every schedule.
    let first_two = |expr: &str, name: &str| -> Vec<String> {
        let cron = CronExpr::parse(expr, name).expect("valid");
        let after = at("2026-11-24T00:00:00Z");
        cron.iter_after(zone("UTC"), after).take(2).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)).collect()
    };
    assert_eq!(first_two("H H * * *", "nightly"), ["2026-11-24T00:23:00Z", "2026-11-25T00:23:00Z"]);
    assert_eq!(first_two("H H * * *", "backup"), ["2026-11-24T07:06:00Z", "2026-11-25T07:06:00Z"]);
    assert_eq!(first_two("H(0-29) H(1-3) * * *", "job-7"), ["2026-11-24T03:10:00Z", "2026-11-25T03:10:00Z"]);
    assert_eq!(first_two("H/15 * * * *", "reports"), ["2026-11-24T00:14:00Z", "2026-11-24T00:29:00Z"]);
    assert_eq!(first_two("H H H * *", "monthly"), ["2026-12-04T12:36:00Z", "2027-01-04T12:36:00Z"]);
    assert_eq!(first_two("H H * * H", "weekly"), ["2026-11-29T05:08:00Z", "2026-12-06T05:08:00Z"]);
    assert_eq!(minute("nightly"), "23", "the hash comes from the name, not from the expression around it");
    let spread: std::collections::HashSet<String> = (0..50).map(|i| minute(&format!("job-{i}"))).collect();
    assert!(spread.len() > 20, "50 names share only {} minutes", spread.len());
    for i in 0..50 {
        let cron = CronExpr::parse("H(0-29) H(1-3) * * *", &format!("job-{i}")).expect("valid");
        let next = cron.next_after(zone("UTC"), at("2026-11-24T00:00:00Z")).expect("fires");
        let (m, h): (u32, u32) =
            (next.format("%M").to_string().parse().unwrap_or(99), next.format("%H").to_string().parse().unwrap_or(99));
        assert!(m <= 29 && (1..=3).contains(&h), "{next}");
    }
}

#[test]
fn expressions_that_never_fire_have_no_next_time() {
    let cron = CronExpr::parse("0 0 30 2 *", "x").expect("parses");
    assert_eq!(cron.next_after(zone("UTC"), at("2026-11-24T00:00:00Z")), None);
    // 29 February on a Monday is rare but real.
    assert_eq!(days("0 0 29 2 1", "2026-11-24T00:00:00Z", 1), ["2027-02-01"]);
    assert_eq!(days("0 0 29 2 */7", "2026-11-24T00:00:00Z", 1), ["2032-02-29"]);
}

/// `ever_fires` looks at the days alone (fuzzing `config_loader` showed the 29-year search it used to make too slow
/// for a file of many schedules that never fire); it must still agree with that search.
#[test]
fn whether_an_expression_ever_fires_agrees_with_the_search() {
    let exprs = [
        "0 0 30 2 *",
        "0 0 30,31 2 *",
        "0 0 31 4,6,9,11 *",
        "0 0 29 2 *",
        "0 0 29 2 1",
        "0 0 29 2 */7",
        "0 0 */31 2 *",
        "0 0 L 2 *",
        "0 0 LW * *",
        "0 0 31W 2 *",
        "0 0 * 2 5L",
        "0 0 * * 1#5",
        "0 0 1-7 * */7",
        "H H H(30-31) 2 *",
        "@yearly",
    ];
    for expr in exprs {
        let cron = CronExpr::parse(expr, "x").expect("parses");
        assert_eq!(cron.ever_fires(), cron.next_after(zone("UTC"), Utc::now()).is_some(), "{expr}");
    }
}

/// Found fuzzing: 150 schedules of `0 0 30 2 *` in a 4 KB file took seconds to check, each a 29-year search.
#[test]
fn thousands_of_expressions_that_never_fire_are_checked_quickly() {
    let started = std::time::Instant::now();
    for i in 0..2_000 {
        let cron = CronExpr::parse(&format!("{} {} 30 2 *", i % 60, i / 60 % 24), "x").expect("parses");
        assert!(!cron.ever_fires());
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn bad_expressions_say_what_is_wrong() {
    let error = |e: &str| CronExpr::parse(e, "x").expect_err("invalid").to_string();
    assert!(error("* * * *").contains("has 4 fields"), "{}", error("* * * *"));
    assert!(error("61 * * * *").contains("the minute field '61'"));
    assert!(error("0 24 * * *").contains("use 0-23"));
    assert!(error("@reboot").contains("not supported"));
    assert!(error("@dialy").contains("did you mean @daily?"), "{}", error("@dialy"));
}

#[test]
fn fixed_and_wildcard_jobs_are_told_apart() {
    let fixed = |e: &str| CronExpr::parse(e, "x").expect("valid").is_fixed_time();
    assert!(fixed("30 2,14 * * *"));
    assert!(fixed("15 1-3 * * *"));
    assert!(fixed("@daily"));
    assert!(fixed("H 2 * * *"));
    assert!(!fixed("*/15 2 * * *"));
    assert!(!fixed("30 * * * *"));
    assert!(!fixed("@hourly"));
    assert!(!fixed("H/15 2 * * *"));
}

/// (zone, expression, after, the fire times that follow)
const DST_TABLE: &[(&str, &str, &str, &[&str])] = &[
    // Europe/Berlin, spring forward 2026-03-29 02:00 CET -> 03:00 CEST.
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    ),
    (
        "Europe/Berlin",
        "15 1-3 * * *",
        "2026-03-28T22:00:00Z",
        &[
            "2026-03-29T01:15:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:15:00+02:00",
            "2026-03-30T01:15:00+02:00",
        ],
    ),
    (
        "Europe/Berlin",
        "0,30 2 * * *",
        "2026-03-28T12:00:00Z",
        &["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"],
    ),
    (
        "Europe/Berlin",
        "30 * * * *",
        "2026-03-29T00:00:00+01:00",
        &["2026-03-29T00:30:00+01:00", "2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00"],
    ),
    (
        "Europe/Berlin",
        "*/30 2 * * *",
        "2026-03-28T12:00:00Z",
        &["2026-03-30T02:00:00+02:00", "2026-03-30T02:30:00+02:00"],
    ),
    // Europe/Berlin, fall back 2026-10-25 03:00 CEST -> 02:00 CET.
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2026-10-24T12:00:00Z",
        &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
    ),
    (
        "Europe/Berlin",
        "30 * * * *",
        "2026-10-25T01:00:00+02:00",
        &[
            "2026-10-25T01:30:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:30:00+01:00",
            "2026-10-25T03:30:00+01:00",
        ],
    ),
    (
        "Europe/Berlin",
        "*/30 2 * * *",
        "2026-10-24T12:00:00Z",
        &[
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T02:30:00+01:00",
        ],
    ),
    // From inside the first pass, the next run may read earlier on the clock.
    (
        "Europe/Berlin",
        "15 * * * *",
        "2026-10-25T02:45:00+02:00",
        &["2026-10-25T02:15:00+01:00", "2026-10-25T03:15:00+01:00"],
    ),
    ("Europe/Berlin", "15 2 * * *", "2026-10-25T02:45:00+02:00", &["2026-10-26T02:15:00+01:00"]),
    // Europe/Berlin 2027.
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2027-03-27T12:00:00Z",
        &["2027-03-28T03:00:00+02:00", "2027-03-29T02:30:00+02:00"],
    ),
    (
        "Europe/Berlin",
        "30 2 * * *",
        "2027-10-30T12:00:00Z",
        &["2027-10-31T02:30:00+02:00", "2027-11-01T02:30:00+01:00"],
    ),
    // America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT, 2026-11-01 02:00 EDT -> 01:00 EST.
    (
        "America/New_York",
        "30 2 * * *",
        "2026-03-07T12:00:00Z",
        &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
    ),
    (
        "America/New_York",
        "30 1 * * *",
        "2026-10-31T12:00:00Z",
        &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
    ),
    (
        "America/New_York",
        "*/30 * * * *",
        "2026-11-01T00:45:00-04:00",
        &[
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
    ),
    ("America/New_York", "30 2 * * *", "2027-03-13T12:00:00Z", &["2027-03-14T03:00:00-04:00"]),
    (
        "America/New_York",
        "30 1 * * *",
        "2027-11-06T12:00:00Z",
        &["2027-11-07T01:30:00-04:00", "2027-11-08T01:30:00-05:00"],
    ),
    // Australia/Lord_Howe moves by 30 minutes: 2026-10-04 02:00 -> 02:30, 2026-04-05 02:00 -> 01:30.
    (
        "Australia/Lord_Howe",
        "15 2 * * *",
        "2026-10-03T12:00:00Z",
        &["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
    ),
    (
        "Australia/Lord_Howe",
        "0,15,45 2 * * *",
        "2026-10-03T12:00:00Z",
        &["2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"],
    ),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2026-04-04T12:00:00Z",
        &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
    ),
    (
        "Australia/Lord_Howe",
        "45 * * * *",
        "2026-04-05T00:30:00+11:00",
        &[
            "2026-04-05T00:45:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:45:00+10:30",
            "2026-04-05T02:45:00+10:30",
        ],
    ),
    ("Australia/Lord_Howe", "15 2 * * *", "2027-10-02T12:00:00Z", &["2027-10-03T02:30:00+11:00"]),
    (
        "Australia/Lord_Howe",
        "45 1 * * *",
        "2027-04-03T12:00:00Z",
        &["2027-04-04T01:45:00+11:00", "2027-04-05T01:45:00+10:30"],
    ),
    // America/Santiago's gap and repeat fall at midnight: 2026-09-06 00:00 -> 01:00, 2026-04-05 00:00 -> 04-04 23:00.
    (
        "America/Santiago",
        "0 0 * * *",
        "2026-09-05T12:00:00Z",
        &["2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"],
    ),
    (
        "America/Santiago",
        "0 * * * *",
        "2026-09-05T23:30:00-04:00",
        &["2026-09-06T01:00:00-03:00", "2026-09-06T02:00:00-03:00"],
    ),
    (
        "America/Santiago",
        "30 23 * * *",
        "2026-04-04T12:00:00Z",
        &["2026-04-04T23:30:00-03:00", "2026-04-05T23:30:00-04:00"],
    ),
    (
        "America/Santiago",
        "30 * * * *",
        "2026-04-04T22:45:00-03:00",
        &["2026-04-04T23:30:00-03:00", "2026-04-04T23:30:00-04:00", "2026-04-05T00:30:00-04:00"],
    ),
    ("America/Santiago", "@daily", "2027-09-04T12:00:00Z", &["2027-09-05T01:00:00-03:00", "2027-09-06T00:00:00-03:00"]),
];

#[test]
fn daylight_saving_follows_cronie() {
    for (tz, expr, after, expected) in DST_TABLE {
        assert_eq!(fires(expr, tz, after, expected.len()), *expected, "{expr} in {tz} after {after}");
    }
}

/// An independent statement of the rules, for the property test: walk the instants minute by minute and decide
/// for each whether the job fires then.
fn brute_force(cron: &CronExpr, tz: Tz, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let matches = |t: DateTime<Utc>| {
        let local = t.with_timezone(&tz).naive_local().and_utc();
        cron.compiled.cron.is_time_matching(&local).unwrap_or(false)
    };
    let offset = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local() - t.naive_utc();
    let mut out = Vec::new();
    let mut t = after.with_second(0).unwrap_or(after) + Duration::minutes(1);
    while t < until {
        let (before, now) = (offset(t - Duration::minutes(1)), offset(t));
        // Fixed-time jobs skip the second pass of a repeated hour...
        let repeated = offset(t - Duration::hours(3)) != now
            && (1..=180).any(|m| {
                let earlier = t - Duration::minutes(m);
                earlier.with_timezone(&tz).naive_local() == t.with_timezone(&tz).naive_local()
            });
        // ...and run once at the end of a gap for any time the gap skipped.
        let gap_hit = now > before && {
            let start = (t - Duration::minutes(1)).with_timezone(&tz).naive_local() + Duration::minutes(1);
            let mut local = start;
            let mut hit = false;
            while local < t.with_timezone(&tz).naive_local() {
                hit |= cron.compiled.cron.is_time_matching(&local.and_utc()).unwrap_or(false);
                local += Duration::minutes(1);
            }
            hit
        };
        let fires = if cron.fixed_time { (matches(t) && !repeated) || gap_hit } else { matches(t) };
        if fires {
            out.push(t);
        }
        t += Duration::minutes(1);
    }
    out
}

fn field_strategy(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    proptest::sample::select(options)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn next_times_are_later_match_and_skip_nothing(
        minute in field_strategy(&["*", "*/15", "0", "30", "0,30", "5-50/15", "H", "45"]),
        hour in field_strategy(&["*", "*/2", "1", "2", "1-3", "0", "23", "2,14", "0-2"]),
        dom in field_strategy(&["*", "1,15", "*/2", "4-6", "L"]),
        dow in field_strategy(&["*", "0", "7", "MON-FRI", "6", "1,3"]),
        tz in field_strategy(&["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "UTC"]),
        transition in field_strategy(&[
            "2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2026-03-08T07:00:00Z", "2026-11-01T06:00:00Z",
            "2026-10-03T15:30:00Z", "2026-04-04T15:00:00Z", "2026-09-06T04:00:00Z", "2026-04-05T03:00:00Z",
            "2027-03-28T01:00:00Z", "2027-11-07T06:00:00Z",
        ]),
        shift_minutes in -1500i64..300,
    ) {
        let expr = format!("{minute} {hour} {dom} * {dow}");
        let cron = CronExpr::parse(&expr, "prop").expect("generated expressions are valid");
        let tz = zone(tz);
        let after = at(transition) + Duration::minutes(shift_minutes) + Duration::seconds(17);
        let until = after + Duration::hours(40);
        let ours: Vec<DateTime<Utc>> = cron
            .iter_after(tz, after)
            .map(|t| t.with_timezone(&Utc))
            .take_while(|t| *t < until)
            .collect();
        let mut previous = after;
        for t in &ours {
            prop_assert!(*t > previous, "{expr} in {tz}: {t} does not follow {previous}");
            previous = *t;
        }
        prop_assert_eq!(ours, brute_force(&cron, tz, after, until), "{} in {}", expr, tz);
    }
}

#[test]
fn errors_quote_at_most_80_characters_of_the_expression() {
    let list = "1,".repeat(50_000) + "99";
    for source in [format!("{list} * * * *"), "1 ".repeat(50_000), format!("@{}", "x".repeat(100_000))] {
        let error = CronExpr::parse(&source, "test").expect_err("invalid").to_string();
        assert!(error.len() < 400, "{} bytes: {}", error.len(), &error[..400]);
        assert!(error.contains('…'), "{error}");
    }
    let error = CronExpr::parse(&format!("{list} * * * *"), "test").expect_err("invalid").to_string();
    assert!(error.ends_with("99 is out of range; use 0-59"), "{error}");
}

#[test]
fn a_long_name_in_a_field_is_refused_quickly() {
    let started = std::time::Instant::now();
    let error = CronExpr::parse(&format!("0 0 * {} *", "JANUARY".repeat(20_000)), "test").expect_err("invalid");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(error.to_string().contains("is not a valid value; use 1-12 or JAN-DEC"), "{error}");
}

#[test]
fn control_characters_in_an_expression_are_escaped_in_its_error() {
    let error = CronExpr::parse("@daily\n* * * * *", "test").expect_err("not a nickname").to_string();
    assert!(!error.contains('\n') && error.starts_with("'@daily\\n* * * * *'"), "{error}");
}

#[test]
fn h_may_stand_in_every_field() {
    for source in ["H H H H H", "H H H H H H", "H(0-29)/10 H/2 H(1-28) H/3 H(1-5)"] {
        let a = CronExpr::parse(source, "a").expect("valid");
        let again = CronExpr::parse(source, "a").expect("valid");
        let after = at("2026-11-24T00:00:00Z");
        let next = a.next_after(Tz::UTC, after).expect("fires");
        assert_eq!(Some(next), again.next_after(Tz::UTC, after), "{source}: the same name gives the same times");
    }
}
