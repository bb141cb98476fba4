//! The daemon's status page: the triggers overview and one page per schedule, as HTML for people.
//!
//! GitLab users who fire pipelines through pipecron want to see at a glance which schedules ran, which failed and
//! when each fires next, without a shell on the host or a JSON reader: the same facts `pipecron status` and
//! `history` print and the JSON API serves, read from the same live state. The pages are rendered on the server
//! with maud's compile-time checked templates, need no JavaScript and load nothing else (the CSS is inline), so
//! they work behind any proxy and on a phone, and reload themselves. Everything that comes from schedule files or
//! from GitLab is untrusted and escaped, a token is only ever shown masked, and a pipeline is only linked when
//! GitLab gave an http(s) URL for it.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::quote::thousands;
use crate::run::{Pipeline, RunState};
use crate::schedule::{Api, Project, Schedule};
use crate::status::{self, masked_token};
use crate::store::{Run, owner_name};

/// Schedules on one page of the overview.
pub const PER_PAGE: usize = 100;

/// How often a page reloads itself, in seconds.
const REFRESH_SECS: u32 = 30;

/// A time in a schedule's zone, as the pages show it.
const LOCAL: &str = "%Y-%m-%d %H:%M:%S %Z";

/// Values longer than this are folded away behind their first characters.
const LONG_VALUE: usize = 120;

/// What every page says about the daemon itself, at the top.
#[derive(Debug, Clone)]
pub struct Header {
    pub version: &'static str,
    /// Err(reason) when the store does not answer.
    pub store: Result<(), String>,
    /// The last reload's error, when the running configuration is an older one.
    pub reload_error: Option<String>,
    /// The store's kind and masked location, e.g. "SQLite /var/lib/pipecron/state.db" (already masked).
    pub state: String,
    pub now: DateTime<Utc>,
}

/// One schedule with its last run and its next slot.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub schedule: &'a Schedule,
    pub last: Option<&'a Run>,
    /// Its next slot (None: paused or never fires).
    pub next: Option<DateTime<Tz>>,
    /// What the daemon's daily look found of its trigger token (schedules with an `api_token`).
    pub token: Option<&'a crate::store::TokenNote>,
}

/// The overview's filter and page: `?q=` matches name, description, project or ref (case-insensitive substring),
/// `page` from 1.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub q: String,
    pub page: usize,
    pub pages: usize,
    pub matched: usize,
    pub total: usize,
}

/// The schedules whose name, description, project or ref contains `q`, ignoring case; all of them for an empty `q`.
pub fn filter<'a>(schedules: &'a [Arc<Schedule>], q: &str) -> Vec<&'a Arc<Schedule>> {
    let q = q.trim().to_lowercase();
    if q.is_empty() {
        return schedules.iter().collect();
    }
    schedules
        .iter()
        .filter(|s| {
            contains(&s.name, &q)
                || s.description.as_deref().is_some_and(|d| contains(d, &q))
                || contains(&s.project.to_string(), &q)
                || contains(&s.git_ref, &q)
        })
        .collect()
}

/// Whether `text` contains `lower` (already lower case), ignoring case; without allocating for ASCII text.
fn contains(text: &str, lower: &str) -> bool {
    if text.is_ascii() && lower.is_ascii() {
        let (text, lower) = (text.as_bytes(), lower.as_bytes());
        return text.windows(lower.len()).any(|w| w.eq_ignore_ascii_case(lower));
    }
    text.to_lowercase().contains(lower)
}

/// The overview: one row per schedule of this page, with its last and next run.
pub fn overview(header: &Header, rows: &[Row<'_>], listing: &Listing) -> Markup {
    let body = html! {
        h1 { "Schedules" }
        form.filter method="get" action="/" role="search" {
            label for="q" { "Filter" }
            input id="q" type="search" name="q" value=(listing.q) placeholder="Name, description, project or ref";
            button type="submit" { "Apply" }
            @if !listing.q.is_empty() {
                a href="/" { "Clear" }
            }
        }
        (summary(listing, rows.len()))
        @if rows.is_empty() {
            p.empty {
                @if listing.total == 0 {
                    "No schedules are loaded. Add a schedule file to the schedules directory; pipecron reads it as \
                     soon as it is saved."
                } @else if listing.matched == 0 {
                    "No schedule matches “" (listing.q) "”. " a href="/" { "Show all schedules" }
                } @else {
                    "There is no page " (listing.page) ". " a href=(page_href(&listing.q, 1)) { "Go to the first page" }
                }
            }
        } @else {
            div.scroll role="region" aria-label="Schedules" tabindex="0" {
                table.cards {
                    caption.sr-only { "Schedules, with their last and next runs" }
                    thead {
                        tr {
                            th scope="col" { "Schedule" }
                            th scope="col" { "Last run" }
                            th scope="col" { "Next run" }
                            th scope="col" { "Project and ref" }
                            th scope="col" { "Cron and zone" }
                            th scope="col" { "Token" }
                        }
                    }
                    tbody {
                        @for row in rows {
                            (overview_row(row, header.now))
                        }
                    }
                }
            }
        }
        (pager(listing))
    };
    layout(header, "Schedules", Some("/api/v1/schedules"), body)
}

/// "Showing 100 of 1,234 schedules matching “db” (5,000 in all)".
fn summary(listing: &Listing, shown: usize) -> Markup {
    let noun = if listing.matched == 1 { "schedule" } else { "schedules" };
    html! {
        @if listing.total > 0 {
            p.summary {
                "Showing " (thousands(shown)) " of " (thousands(listing.matched)) " " (noun)
                @if !listing.q.is_empty() {
                    " matching “" (listing.q) "”"
                    @if listing.matched != listing.total {
                        " (" (thousands(listing.total)) " in all)"
                    }
                }
                @if listing.pages > 1 {
                    ", page " (listing.page) " of " (listing.pages)
                }
                "."
            }
        }
    }
}

/// Previous and next links, when there is more than one page.
fn pager(listing: &Listing) -> Markup {
    html! {
        @if listing.pages > 1 {
            nav.pager aria-label="Pages" {
                @if listing.page > 1 {
                    a rel="prev" href=(page_href(&listing.q, (listing.page - 1).min(listing.pages))) { "← Previous" }
                }
                span { "Page " (listing.page) " of " (listing.pages) }
                @if listing.page < listing.pages {
                    a rel="next" href=(page_href(&listing.q, listing.page + 1)) { "Next →" }
                }
            }
        }
    }
}

/// The overview's URL for a filter and a page.
fn page_href(q: &str, page: usize) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if !q.is_empty() {
        query.append_pair("q", q);
    }
    if page > 1 {
        query.append_pair("page", &page.to_string());
    }
    match query.finish() {
        query if query.is_empty() => "/".into(),
        query => format!("/?{query}"),
    }
}

/// A schedule's row: the most telling columns first. Every cell carries its column's name in `data-label`, which a
/// phone shows beside the value when the rows become cards.
fn overview_row(row: &Row<'_>, now: DateTime<Utc>) -> Markup {
    let schedule = row.schedule;
    html! {
        tr class=[row.last.and_then(|run| attention(run.state))] {
            th scope="row" {
                a href=(schedule_href(&schedule.name)) { (&*schedule.name) }
                @if let Some(description) = &schedule.description {
                    div.desc { (description) }
                }
            }
            td data-label="Last run" { (last_run(row.last, schedule.timezone, now, true)) }
            td data-label="Next run" { (next_run(schedule, row.next, now)) }
            td data-label="Project and ref" {
                (project(schedule))
                // A no-break space: "ref" stays with the ref on a desktop.
                div.muted { "ref\u{a0}" code.nowrap { (&*schedule.git_ref) } }
            }
            td data-label="Cron and zone" {
                code.nowrap { (schedule.cron.source()) }
                div.muted { (schedule.timezone.name()) }
            }
            td data-label="Token" { (token(row)) }
        }
    }
}

/// A run's state, when, and its pipeline; with `detail`, the error of a run that needs attention (never of one that
/// is claimed or being sent: its error, if any, is an earlier attempt's).
fn last_run(last: Option<&Run>, tz: Tz, now: DateTime<Utc>, detail: bool) -> Markup {
    html! {
        @match last {
            None => span.muted { "never" },
            Some(run) => {
                span.run {
                    (state_badge(run.state)) " "
                    (relative(run.slot, tz, &ago(run.slot, now)))
                    @if let Some(pipeline) = &run.pipeline {
                        " " (pipeline_link(pipeline))
                    }
                }
                @if let (true, Some(tone), Some(error)) = (detail, attention(run.state), &run.error) {
                    div class=(format!("detail {tone}")) title=(error) { (shorten(error, LONG_VALUE)) }
                }
            }
        }
    }
}

/// The next slot and how far off it is, "paused", or "never".
fn next_run(schedule: &Schedule, next: Option<DateTime<Tz>>, now: DateTime<Utc>) -> Markup {
    html! {
        @if !schedule.enabled {
            (badge("neutral", "paused"))
        } @else {
            @match next {
                None => span.muted title="The cron expression has no slot in the future" { "never" },
                Some(next) => {
                    (zoned(next.to_utc(), next.timezone()))
                    div.muted { (until(next.to_utc(), now)) }
                }
            }
        }
    }
}

/// One schedule: its settings, its next fire times, and a page of its history, newest first. `before` is this
/// page's cursor (None on the first page); `older` the cursor of the next page (None on the last).
pub fn schedule(
    header: &Header,
    row: &Row<'_>,
    next: &[DateTime<Tz>],
    runs: &[Run],
    before: Option<DateTime<Utc>>,
    older: Option<DateTime<Utc>>,
) -> Markup {
    let schedule = row.schedule;
    let tz = schedule.timezone;
    let href = schedule_href(&schedule.name);
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/" { "Schedules" } " / " span aria-current="page" { (&*schedule.name) }
        }
        h1 {
            (&*schedule.name)
            @if !schedule.enabled {
                " " (badge("neutral", "paused"))
            }
        }
        @if let Some(description) = &schedule.description {
            p.lead { (description) }
        }
        dl.facts {
            div {
                dt { "Last run" }
                dd { (last_run(row.last, tz, header.now, false)) }
            }
            div {
                dt { "Next run" }
                dd { (next_run(schedule, row.next, header.now)) }
            }
        }

        h2 { "Settings" }
        (settings(row))

        h2 { "Next runs" }
        (next_runs(schedule, next, header.now))

        h2 id="history" { "History" }
        p.muted {
            "Newest first"
            @if let Some(before) = before {
                ", from before " (zoned(before, tz))
            }
            "."
        }
        @if runs.is_empty() {
            p.empty {
                @if before.is_some() {
                    "No older runs."
                } @else {
                    "No runs recorded yet."
                }
            }
        } @else {
            (history(runs, tz))
        }
        @if before.is_some() || older.is_some() {
            nav.pager aria-label="History pages" {
                @if before.is_some() {
                    a href=(format!("{href}#history")) { "↑ Newest runs" }
                }
                @if let Some(older) = older {
                    a rel="next" href=(older_href(&href, older)) { "Older runs →" }
                }
            }
        }
    };
    layout(header, &schedule.name, Some(&format!("/api/v1/schedules/{}", path_segment(&schedule.name))), body)
}

/// The trigger token, masked, with its expiry and what needs doing about it, when the daemon has looked.
fn token(row: &Row<'_>) -> Markup {
    html! {
        code.nowrap { (masked_token(row.schedule)) }
        @if let Some(note) = row.token {
            @if let Some(expires) = note.expires_at {
                div.muted { "expires " (expires.format("%Y-%m-%d")) }
            }
            @if let Some(warning) = &note.warning {
                div.detail.warn title=(note.summary) { (warning) }
            }
        }
    }
}

/// The schedule's settings, as pipecron runs them.
fn settings(row: &Row<'_>) -> Markup {
    let schedule = row.schedule;
    let duration = crate::duration::format;
    html! {
        dl.settings {
            dt { "Cron" } dd { code { (schedule.cron.source()) } }
            dt { "Time zone" } dd { (schedule.timezone.name()) }
            dt { "Project" } dd { (project(schedule)) }
            dt { "Ref" } dd { code { (&*schedule.git_ref) } }
            dt { "GitLab" } dd { (gitlab(schedule)) }
            dt { "API" } dd {
                @match schedule.api {
                    Api::V4 => "v4",
                    Api::V3 => "v3 (GitLab before 11)",
                }
            }
            dt { "Token" } dd { (token(row)) }
            dt { "Variables" } dd {
                @if schedule.variables.is_empty() {
                    span.muted { "none" }
                } @else {
                    (pairs("Variables", schedule.variables.iter().map(|(k, v)| (k, v.to_string()))))
                }
            }
            @if !schedule.inputs.is_empty() {
                dt { "Inputs" } dd {
                    (pairs("Inputs", schedule.inputs.iter().map(|(k, v)| (k.as_str(), v.to_string()))))
                }
            }
            dt { "Catch-up" } dd { (duration(schedule.catch_up)) }
            dt { "Jitter" } dd { (duration(schedule.jitter)) }
            dt { "Timeout" } dd { (duration(schedule.timeout)) }
            dt { "Retries" } dd { (schedule.retries) }
            dt { "History kept" } dd {
                (duration(schedule.history.keep_for)) ", at most " (thousands(schedule.history.max_runs as usize)) " runs"
            }
            dt { "Enabled" } dd { @if schedule.enabled { "yes" } @else { "no (paused)" } }
            @if let Some(ca_file) = &schedule.ca_file {
                dt { "CA file" } dd { code { (ca_file.display()) } }
            }
            @if schedule.allow_http {
                dt { "Plain HTTP" } dd { "allowed" }
            }
            dt { "Defined in" } dd { code { (schedule.file.display()) ":" (schedule.pos.line) } }
        }
    }
}

/// The GitLab URL without any user name or password in it.
fn gitlab(schedule: &Schedule) -> String {
    without_userinfo(&schedule.gitlab).to_string()
}

/// `url` without any user name or password in it.
fn without_userinfo(url: &url::Url) -> url::Url {
    let mut url = url.clone();
    // Both fail only for URLs that cannot hold them, which then hold none.
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url
}

/// The project's page in GitLab: `{gitlab}/{path}` for a path, `{gitlab}/projects/{id}` for an id (GitLab redirects
/// it to the project). None unless the GitLab URL is http(s). Each segment of the path is percent-encoded, and
/// `.` and `..` are dropped, so the link stays under the GitLab URL.
fn project_url(schedule: &Schedule) -> Option<url::Url> {
    let mut url = without_userinfo(&schedule.gitlab);
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut segments = url.path_segments_mut().ok()?;
        segments.pop_if_empty();
        match &schedule.project {
            Project::Id(id) => {
                segments.extend(["projects", &id.to_string()]);
            }
            Project::Path(path) => {
                segments.extend(path.split('/').filter(|segment| !segment.is_empty()));
            }
        }
    }
    Some(url)
}

/// The project, linked to its page in GitLab when there is one.
fn project(schedule: &Schedule) -> Markup {
    html! {
        @match project_url(schedule) {
            Some(url) => a href=(url.as_str()) rel="noreferrer" title={ "Project " (schedule.project) " in GitLab" } {
                (schedule.project)
            },
            None => (schedule.project),
        }
    }
}

/// Keys and values, such as variables: the values escaped, long ones folded.
fn pairs<'a>(label: &str, pairs: impl Iterator<Item = (&'a str, String)>) -> Markup {
    html! {
        div.scroll {
            table.kv {
                caption.sr-only { (label) }
                thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } } }
                tbody {
                    @for (key, value) in pairs {
                        tr {
                            th scope="row" { code { (key) } }
                            td data-label="Value" { (long_value(&value)) }
                        }
                    }
                }
            }
        }
    }
}

/// A value as it is, folded behind its start when it is long or has several lines.
fn long_value(value: &str) -> Markup {
    let chars = value.chars().count();
    html! {
        @if value.is_empty() {
            span.muted { "(empty)" }
        } @else if chars > LONG_VALUE || value.contains('\n') {
            details {
                summary {
                    code { (shorten(value.lines().next().unwrap_or_default(), 60)) }
                    " " span.muted { "(" (thousands(chars)) " characters)" }
                }
                pre.value { (value) }
            }
        } @else {
            code.value { (value) }
        }
    }
}

/// The next fire times in the schedule's zone, with their UTC offsets and UTC; for a schedule in UTC, the time once.
fn next_runs(schedule: &Schedule, next: &[DateTime<Tz>], now: DateTime<Utc>) -> Markup {
    let in_utc = is_utc(schedule.timezone);
    let time = format!("Time ({})", schedule.timezone.name());
    html! {
        @if !schedule.enabled {
            p.empty { "Paused: this schedule does not fire until it is enabled again." }
        } @else if next.is_empty() {
            p.empty { "The cron expression has no slot in the future." }
        } @else {
            div.scroll.fit role="region" aria-label="Next runs" tabindex="0" {
                table.cards {
                    caption.sr-only { "The next " (next.len()) " fire times" }
                    thead {
                        tr {
                            th scope="col" { (time) }
                            @if !in_utc {
                                th scope="col" { "UTC offset" }
                                th scope="col" { "UTC" }
                            }
                            th scope="col" { "In" }
                        }
                    }
                    tbody {
                        @for slot in next {
                            tr {
                                td.nowrap data-label=(time) { (zoned(slot.to_utc(), slot.timezone())) }
                                @if !in_utc {
                                    td.nowrap data-label="UTC offset" { "UTC" (slot.format("%:z")) }
                                    td.nowrap data-label="UTC" { (slot.to_utc().format("%Y-%m-%d %H:%M:%S")) }
                                }
                                td.nowrap data-label="In" { (until(slot.to_utc(), now)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A page of runs, newest first.
fn history(runs: &[Run], tz: Tz) -> Markup {
    html! {
        div.scroll role="region" aria-label="History" tabindex="0" {
            table.cards {
                caption.sr-only { "Runs, newest first" }
                thead {
                    tr {
                        th scope="col" { "Slot" }
                        th scope="col" { "Reason" }
                        th scope="col" { "State" }
                        th scope="col" { "Attempts" }
                        th scope="col" { "HTTP" }
                        th scope="col" { "Pipeline" }
                        th scope="col" { "Error" }
                        th scope="col" { "Owner" }
                    }
                }
                tbody {
                    @for run in runs {
                        tr class=[attention(run.state)] {
                            td.nowrap data-label="Slot" { (zoned(run.slot, tz)) }
                            td.nowrap data-label="Reason" { (run.reason.as_str()) }
                            td data-label="State" { (state_badge(run.state)) }
                            td.num data-label="Attempts" { (run.attempts) }
                            td.num data-label="HTTP" {
                                @match run.http_status {
                                    Some(status) => (status),
                                    None => span.muted { "—" },
                                }
                            }
                            td.nowrap data-label="Pipeline" {
                                @match &run.pipeline {
                                    Some(pipeline) => (pipeline_link(pipeline)),
                                    None => span.muted { "—" },
                                }
                            }
                            td.error data-label="Error" {
                                @match &run.error {
                                    Some(error) => (error),
                                    None => span.muted { "—" },
                                }
                            }
                            td.nowrap data-label="Owner" {
                                @match run.owner.as_deref() {
                                    Some(owner) => (owner_name(owner)),
                                    None => span.muted { "—" },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The page for a name that is not a schedule.
pub fn not_found(header: &Header, name: &str) -> Markup {
    let body = html! {
        h1 { "No schedule named “" (name) "”" }
        p {
            "pipecron runs no schedule by that name. It may have been renamed or removed when the schedule files \
             were last reloaded, or the link may be mistyped: names are case-sensitive."
        }
        p { a href="/" { "← All schedules" } }
    };
    layout(header, &format!("No schedule named “{name}”"), None, body)
}

/// The frame of every page: the head, the daemon's health, the body, and a footer that links the same facts as JSON.
fn layout(header: &Header, title: &str, api: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECS);
                meta name="referrer" content="same-origin";
                title { (title) " · pipecron" }
                // The one text not escaped: this module's own constant.
                style { (PreEscaped(CSS)) }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "pipecron" }
                }
                main id="main" {
                    (health(header))
                    (body)
                }
                footer {
                    "Rendered " (utc(header.now)) ". This page reloads every " (REFRESH_SECS) " seconds."
                    @if let Some(api) = api {
                        " " a href=(api) { "The same as JSON" } "."
                    }
                }
            }
        }
    }
}

/// The store, the last reload, and where the state lives.
fn health(header: &Header) -> Markup {
    html! {
        @if let Err(reason) = &header.store {
            div.alert.danger {
                strong { "The state store does not answer." }
                " Last runs and history may be missing or out of date until it does."
                pre { (reason) }
            }
        }
        @if let Some(error) = &header.reload_error {
            div.alert.warning {
                strong { "The last reload failed." }
                " pipecron keeps running the configuration it loaded before; fix the schedule files to load the new one."
                pre { (error) }
            }
        }
        section.health aria-label="Daemon" {
            dl {
                div {
                    dt { "Store" }
                    dd {
                        @match &header.store {
                            Ok(()) => (badge("ok", "up")),
                            Err(_) => (badge("bad", "down")),
                        }
                    }
                }
                div { dt { "State" } dd { code { (header.state) } } }
                div { dt { "Version" } dd { (header.version) } }
            }
        }
    }
}

/// A badge's colour for a state.
fn tone(state: RunState) -> &'static str {
    match state {
        RunState::Succeeded => "ok",
        RunState::Failed => "bad",
        RunState::Unknown | RunState::Missed => "warn",
        RunState::Claimed | RunState::Sending | RunState::Skipped => "info",
    }
}

/// Failed, unknown and missed runs stand out: the class of their row, with their colour.
fn attention(state: RunState) -> Option<&'static str> {
    match state {
        RunState::Failed => Some("bad"),
        RunState::Unknown | RunState::Missed => Some("warn"),
        RunState::Succeeded | RunState::Claimed | RunState::Sending | RunState::Skipped => None,
    }
}

/// The state as a word on a coloured badge.
fn state_badge(state: RunState) -> Markup {
    badge(tone(state), state.as_str())
}

fn badge(tone: &str, text: &str) -> Markup {
    html! { span class=(format!("badge {tone}")) { (text) } }
}

/// `#123`, linked to GitLab only for an http(s) URL: GitLab's answer is untrusted, and a `javascript:` URL must not
/// become a link.
fn pipeline_link(pipeline: &Pipeline) -> Markup {
    let url = pipeline.web_url.as_deref().and_then(|text| url::Url::parse(text).ok());
    html! {
        @match url.filter(|url| matches!(url.scheme(), "http" | "https")) {
            Some(url) => a href=(url.as_str()) rel="noreferrer" title={ "Pipeline " (pipeline.id) " in GitLab" } {
                "#" (pipeline.id)
            },
            None => span.mono { "#" (pipeline.id) },
        }
        @if pipeline.followed.is_some() {
            " " span.pipeline title=[pipeline.note.as_deref()] { (pipeline_status(pipeline)) }
        }
    }
}

/// A followed pipeline's status as GitLab's badge says it (`passed 12m`), without its id.
fn pipeline_status(pipeline: &Pipeline) -> String {
    let badge = pipeline.badge();
    badge.split_once(' ').map_or(badge.clone(), |(_, status)| status.to_string())
}

/// A schedule's page.
fn schedule_href(name: &str) -> String {
    format!("/schedules/{}", path_segment(name))
}

/// The `?before=` link to the runs older than `older`.
fn older_href(href: &str, older: DateTime<Utc>) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("before", &machine(older)).finish();
    format!("{href}?{query}#history")
}

/// `text` as one path segment: everything but unreserved characters percent-encoded.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A time as the `datetime` attribute takes it: RFC 3339 in UTC.
fn machine(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn utc_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A time in UTC.
fn utc(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(machine(t)) { (utc_text(t)) } }
}

/// A time in `tz`, with UTC on hover unless `tz` is UTC.
fn zoned(t: DateTime<Utc>, tz: Tz) -> Markup {
    let title = (!is_utc(tz)).then(|| utc_text(t));
    html! { time datetime=(machine(t)) title=[title] { (t.with_timezone(&tz).format(LOCAL)) } }
}

/// `text` (such as "3h ago") for a time, with the time in `tz` and in UTC on hover (once, for UTC).
fn relative(t: DateTime<Utc>, tz: Tz, text: &str) -> Markup {
    let title = match is_utc(tz) {
        true => utc_text(t),
        false => format!("{} ({})", t.with_timezone(&tz).format(LOCAL), utc_text(t)),
    };
    html! { time datetime=(machine(t)) title=(title) { (text) } }
}

/// Whether `tz` is UTC under one of its names, or GMT: a zone whose times read as UTC's.
fn is_utc(tz: Tz) -> bool {
    matches!(
        tz.name(),
        "UTC"
            | "Etc/UTC"
            | "Etc/UCT"
            | "UCT"
            | "Etc/Universal"
            | "Universal"
            | "Etc/Zulu"
            | "Zulu"
            | "GMT"
            | "Etc/GMT"
            | "Etc/GMT+0"
            | "Etc/GMT-0"
            | "Etc/GMT0"
            | "GMT+0"
            | "GMT-0"
            | "GMT0"
            | "Etc/Greenwich"
            | "Greenwich"
    )
}

/// "3m ago", and "just now" for a time less than a second before `now`, or after it: the slot of a run that is being
/// sent can be a few milliseconds ahead of its time, and the page's `now` is taken before the store is asked.
fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match (now - then).num_milliseconds() {
        ..1000 => "just now".into(),
        _ => status::ago(then, now),
    }
}

/// "in 2h 15m", and "now" for a time less than a second after `now`, or before it.
fn until(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    match (then - now).num_milliseconds() {
        ..1000 => "now".into(),
        _ => status::until(then, now),
    }
}

/// At most `max` characters of `text`, ending in "…" when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text.chars().count() > max => format!("{}…", &text[..end]),
        _ => text.to_string(),
    }
}

/// GitLab-like: system font, light background, neutral tables, badges with enough contrast to read (4.5:1 and more).
/// A table wider than the screen casts a shadow on the side it scrolls to (backgrounds that scroll with it cover
/// the shadows at its ends). On a phone (45rem and less) the rows of the overview, the next runs and the history are
/// cards instead: one line per cell, named by its `data-label`, with the header row only for screen readers.
const CSS: &str = r#"
:root{color-scheme:light;--text:#28272d;--muted:#626168;--border:#dcdcde;--bg:#fbfafd;--surface:#fff;--link:#1068bf;--focus:#1f75cb}
*{box-sizing:border-box}
body{margin:0;font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Noto Sans",Ubuntu,Cantarell,"Helvetica Neue",sans-serif;font-size:.9375rem;line-height:1.5;color:var(--text);background:var(--bg)}
a{color:var(--link)}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px;border-radius:2px}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:.5rem 1rem;z-index:2}
.skip:focus{left:1rem}
.top{position:sticky;top:0;z-index:1;display:flex;gap:1rem;align-items:baseline;padding:.625rem 1rem;background:#1f1e24;color:#c9c8ce}
.top a.brand{color:#fff;font-weight:600;font-size:1.0625rem;text-decoration:none}
.top a.brand:focus-visible{outline-color:#fff}
main{max-width:92rem;margin:0 auto;padding:1rem 1.25rem}
footer{max-width:92rem;margin:0 auto;padding:1rem 1.25rem 2rem;color:var(--muted);font-size:.8125rem}
h1{font-size:1.5rem;margin:.75rem 0;overflow-wrap:anywhere}
h2{font-size:1.125rem;margin:1.75rem 0 .5rem}
code,pre,.mono{font-family:"Menlo","DejaVu Sans Mono","Liberation Mono",Consolas,"Ubuntu Mono",monospace;font-size:.8125rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:.5rem 0 0}
.muted{color:var(--muted)}
.nowrap{white-space:nowrap}
.sr-only{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}
.alert{padding:.75rem 1rem;margin:0 0 1rem;border:1px solid;border-left-width:4px;border-radius:4px}
.alert.danger{background:#fcf1ef;border-color:#dd2b0e;color:#8d1300}
.alert.warning{background:#fdf1dd;border-color:#c17d10;color:#703800}
.health dl,dl.facts{display:flex;flex-wrap:wrap;gap:.375rem 1.75rem;margin:0 0 1rem;padding:.5rem .875rem;background:var(--surface);border:1px solid var(--border);border-radius:4px;font-size:.875rem}
.health dl div,dl.facts div{display:flex;gap:.5rem;align-items:baseline;min-width:0}
.health dt,dl.facts dt{color:var(--muted)}
.health dd,dl.facts dd{margin:0;overflow-wrap:anywhere}
dl.facts{font-size:.9375rem}
.crumbs{font-size:.875rem;color:var(--muted)}
.lead{margin:0 0 1rem;white-space:pre-line;overflow-wrap:anywhere}
form.filter{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:0 0 .75rem}
form.filter label{font-weight:600}
input[type=search]{flex:1 1 14rem;max-width:32rem;padding:.375rem .625rem;border:1px solid #89888d;border-radius:4px;font:inherit;color:inherit;background:#fff}
button{padding:.375rem .875rem;border:1px solid #89888d;border-radius:4px;background:#fff;font:inherit;color:inherit;cursor:pointer}
button:hover{background:#ececef}
.summary,.empty{margin:.5rem 0}
.scroll{overflow-x:auto;border:1px solid var(--border);border-radius:4px;background:linear-gradient(to right,var(--surface) 40%,rgba(255,255,255,0)) left/2.5rem 100% no-repeat local,linear-gradient(to left,var(--surface) 40%,rgba(255,255,255,0)) right/2.5rem 100% no-repeat local,radial-gradient(farthest-side at 0 50%,rgba(0,0,0,.2),rgba(0,0,0,0)) left/.875rem 100% no-repeat scroll,radial-gradient(farthest-side at 100% 50%,rgba(0,0,0,.2),rgba(0,0,0,0)) right/.875rem 100% no-repeat scroll,var(--surface)}
.scroll.fit{display:inline-block;max-width:100%;vertical-align:top}
table{border-collapse:collapse;width:100%}
th,td{padding:.5rem .75rem;text-align:left;vertical-align:top;border-bottom:1px solid var(--border)}
thead th{background:#f0f0f2;font-size:.8125rem;font-weight:600;white-space:nowrap}
tbody th{font-weight:600}
tbody tr:last-child>*{border-bottom:0}
tbody tr:hover{background:#f6f6f8}
tr.bad>:first-child{box-shadow:inset 4px 0 0 #dd2b0e}
tr.warn>:first-child{box-shadow:inset 4px 0 0 #c17d10}
tbody th{min-width:10rem}
td time{white-space:nowrap}
td.num{text-align:right}
.desc{color:var(--muted);font-weight:400;font-size:.8125rem;max-width:28rem;white-space:pre-line;overflow-wrap:anywhere}
.detail{font-size:.8125rem;min-width:14rem;max-width:28rem;overflow-wrap:anywhere;margin-top:.25rem}
.detail.bad{color:#8d1300}
.detail.warn{color:#6e3900}
td.error{white-space:pre-wrap;overflow-wrap:anywhere;min-width:14rem;max-width:40rem}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.75rem;font-weight:600;line-height:1.375rem;white-space:nowrap}
.badge.ok{background:#c3e6cd;color:#0d532a}
.badge.bad{background:#fdd4cd;color:#8d1300}
.badge.warn{background:#f5d9a8;color:#6e3900}
.badge.info{background:#cbe2f9;color:#0b4b8f}
.badge.neutral{background:#dcdcde;color:#3a383f}
.run{white-space:nowrap}
.pager{display:flex;flex-wrap:wrap;gap:.5rem 1.25rem;align-items:center;margin:.75rem 0}
dl.settings{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.5rem 1.5rem;margin:0;padding:.75rem 1rem;background:var(--surface);border:1px solid var(--border);border-radius:4px}
dl.settings dt{color:var(--muted)}
dl.settings dd{margin:0;min-width:0;overflow-wrap:anywhere}
table.kv th,table.kv td{padding:.25rem .625rem}
table.kv th{min-width:0;white-space:nowrap;overflow-wrap:normal}
table.kv td{width:100%}
.value{white-space:pre-wrap;overflow-wrap:anywhere}
pre.value{max-height:20rem;overflow:auto;padding:.5rem;background:#f6f6f8;border-radius:4px}
summary{cursor:pointer}
@media (max-width:45rem){
table.cards,table.cards tbody,table.cards tr,table.cards th,table.cards td{display:block}
table.cards thead{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);white-space:nowrap;border:0}
.scroll.fit{display:block}
table.cards tbody tr{padding:.375rem 0;border-bottom:1px solid var(--border)}
table.cards tbody tr:last-child{border-bottom:0}
table.cards th,table.cards td{border:0;padding:.1875rem .75rem;min-width:0;overflow-wrap:anywhere}
table.cards td{display:flow-root;padding-left:8.5rem}
table.cards td::before{content:attr(data-label);float:left;width:7.25rem;margin-left:-7.75rem;color:var(--muted);font-size:.8125rem;line-height:1.40625rem}
table.cards td.num{text-align:left}
table.cards .nowrap,table.cards .run{white-space:normal}
table.cards tr>:first-child{box-shadow:none}
table.cards tr.bad{box-shadow:inset 4px 0 0 #dd2b0e}
table.cards tr.warn{box-shadow:inset 4px 0 0 #c17d10}
.detail,td.error{min-width:0;max-width:none}
}
@media (max-width:40rem){
main,footer{padding-left:.75rem;padding-right:.75rem}
dl.settings{grid-template-columns:minmax(0,1fr);gap:0}
dl.settings dd{margin-bottom:.625rem}
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Reason;

    const TOKEN: &str = "glptt-abcdef0123456789";
    const XSS: &str = "<script>alert(1)</script>";

    const FILE: &str = r#"
defaults:
  gitlab: https://gitlab.example.com/
  token: ${TOKEN}
schedules:
  nightly:
    description: "<script>alert(1)</script>"
    cron: "30 0 * * *"
    timezone: Europe/Berlin
    project: group/sub/project
    ref: main
    variables: {DEPLOY: "<b>yes</b>"}
  Weekly-Report:
    description: Sends the weekly report
    cron: "0 6 * * 1"
    project: "42"
    ref: release/1.0
    enabled: false
"#;

    fn schedules() -> Vec<Arc<Schedule>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("schedules.yaml"), FILE).expect("written");
        let env = |name: &str| (name == "TOKEN").then(|| TOKEN.to_string());
        let loaded = crate::config::load(dir.path(), Some(&env));
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        loaded.schedules
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("a valid time").to_utc()
    }

    fn header() -> Header {
        Header {
            version: "0.1.0",
            store: Ok(()),
            reload_error: None,
            state: "SQLite /var/lib/pipecron/state.db".into(),
            now: at("2026-11-24T12:00:00Z"),
        }
    }

    fn run(state: RunState, slot: &str) -> Run {
        Run {
            schedule: "nightly".into(),
            slot: at(slot),
            reason: Reason::Schedule,
            state,
            attempts: 1,
            started_at: None,
            finished_at: None,
            http_status: None,
            pipeline: None,
            error: None,
            owner: Some("host-1:42:0badcafe".into()),
        }
    }

    fn failed(error: &str) -> Run {
        Run { http_status: Some(400), error: Some(error.into()), ..run(RunState::Failed, "2026-11-23T23:30:00Z") }
    }

    fn with_pipeline(web_url: &str) -> Run {
        let pipeline = Pipeline::created(7, Some(3), "created", Some(web_url.into()));
        Run { http_status: Some(201), pipeline: Some(pipeline), ..run(RunState::Succeeded, "2026-11-23T23:30:00Z") }
    }

    fn listing(total: usize) -> Listing {
        Listing { q: String::new(), page: 1, pages: 1, matched: total, total }
    }

    fn row<'a>(schedule: &'a Schedule, last: Option<&'a Run>, now: DateTime<Utc>) -> Row<'a> {
        Row { schedule, last, next: schedule.enabled.then(|| schedule.next_after(now)).flatten(), token: None }
    }

    fn overview_of(last: &Run) -> String {
        let schedules = schedules();
        let now = header().now;
        let rows: Vec<Row<'_>> =
            schedules.iter().map(|s| row(s, (&*s.name == "nightly").then_some(last), now)).collect();
        overview(&header(), &rows, &listing(rows.len())).into_string()
    }

    #[test]
    fn a_followed_pipeline_shows_as_gitlab_shows_it_and_the_token_its_expiry() {
        let mut passed = with_pipeline("https://gitlab.example.com/p/-/pipelines/7");
        if let Some(pipeline) = passed.pipeline.as_mut() {
            (pipeline.status, pipeline.duration) = ("success".into(), Some(725));
            pipeline.followed = Some(crate::run::Followed::Ended);
        }
        let page = overview_of(&passed);
        assert!(page.contains(">#7</a> <span class=\"pipeline\">passed 12m</span>"), "{page}");
        assert!(!overview_of(&with_pipeline("https://x.example/p/7")).contains("class=\"pipeline\""), "unfollowed");

        let schedules = schedules();
        let note = crate::store::TokenNote {
            checked_at: header().now,
            expires_at: DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").ok().map(|t| t.to_utc()),
            summary: "owned by alice".into(),
            warning: Some("the trigger token expires on 2026-12-01 (in 7d 0h)".into()),
        };
        let row = Row { token: Some(&note), ..row(&schedules[0], None, header().now) };
        let page = overview(&header(), &[row], &listing(1)).into_string();
        assert!(page.contains("expires 2026-12-01") && page.contains("the trigger token expires on"), "{page}");
    }

    fn schedule_page(runs: &[Run], before: Option<DateTime<Utc>>, older: Option<DateTime<Utc>>) -> String {
        let schedules = schedules();
        let now = header().now;
        let next: Vec<_> = schedules[0].cron.iter_after(schedules[0].timezone, now).take(10).collect();
        schedule(&header(), &row(&schedules[0], runs.first(), now), &next, runs, before, older).into_string()
    }

    #[test]
    fn long_text_is_shortened() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abcd", 4), "abcd");
    }

    #[test]
    fn untrusted_text_is_escaped() {
        let header = Header {
            store: Err(format!("cannot connect: {XSS}")),
            reload_error: Some(format!("test.yaml:3:5: {XSS}")),
            ..header()
        };
        let schedules = schedules();
        let last = failed(&format!("GitLab said: {XSS}"));
        let rows = [row(&schedules[0], Some(&last), header.now)];
        let pages = [
            overview(&header, &rows, &Listing { q: XSS.into(), ..listing(1) }).into_string(),
            schedule(&header, &rows[0], &[], std::slice::from_ref(&last), None, None).into_string(),
        ];
        for html in pages {
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("<b>yes"), "{html}");
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
            assert!(html.contains("GitLab said: &lt;script&gt;"), "{html}");
            assert!(html.contains("cannot connect: &lt;script&gt;"), "{html}");
            assert!(html.contains("test.yaml:3:5: &lt;script&gt;"), "{html}");
        }
    }

    #[test]
    fn the_token_is_only_shown_masked() {
        let last = run(RunState::Succeeded, "2026-11-23T23:30:00Z");
        for html in [overview_of(&last), schedule_page(std::slice::from_ref(&last), None, None)] {
            assert!(!html.contains("abcdef"), "{html}");
            assert!(html.contains("glptt-abcd…"), "{html}");
        }
    }

    #[test]
    fn only_http_pipeline_urls_become_links() {
        let hostile = with_pipeline("javascript:alert(1)");
        for html in [overview_of(&hostile), schedule_page(std::slice::from_ref(&hostile), None, None)] {
            assert!(!html.contains("javascript:"), "{html}");
            assert!(html.contains(r##"<span class="mono">#7</span>"##), "{html}");
        }
        let fine = with_pipeline("https://gitlab.example.com/group/sub/project/-/pipelines/7");
        for html in [overview_of(&fine), schedule_page(std::slice::from_ref(&fine), None, None)] {
            let link = r#"<a href="https://gitlab.example.com/group/sub/project/-/pipelines/7" rel="noreferrer""#;
            assert!(html.contains(link), "{html}");
        }
    }

    #[test]
    fn runs_that_need_attention_say_so_in_words() {
        let failed = failed("the trigger token is not valid");
        let missed = run(RunState::Missed, "2026-11-22T23:30:00Z");
        let html = overview_of(&failed);
        assert!(html.contains(r#"<tr class="bad">"#), "{html}");
        assert!(html.contains(r#"<span class="badge bad">failed</span>"#), "{html}");
        assert!(html.contains("the trigger token is not valid"), "{html}");
        assert!(html.contains(r#"<span class="badge neutral">paused</span>"#), "{html}");
        let html = overview_of(&missed);
        assert!(html.contains(r#"<tr class="warn">"#), "{html}");
        assert!(html.contains(r#"<span class="badge warn">missed</span>"#), "{html}");
        let html = schedule_page(&[failed.clone(), missed.clone()], None, None);
        assert!(html.contains(r#"<span class="badge bad">failed</span>"#), "{html}");
        assert!(html.contains(r#"<span class="badge warn">missed</span>"#), "{html}");
        assert!(html.contains("host-1:42</td>"), "the owner as HOST:PID: {html}");
    }

    #[test]
    fn times_show_in_the_zone_with_utc_on_hover() {
        let html = schedule_page(&[run(RunState::Succeeded, "2026-11-23T23:30:00Z")], None, None);
        let slot =
            r#"<time datetime="2026-11-23T23:30:00Z" title="2026-11-23 23:30:00 UTC">2026-11-24 00:30:00 CET</time>"#;
        assert!(html.contains(slot), "{html}");
        assert!(html.contains("UTC+01:00"), "{html}");
        assert!(html.contains("in 11h 30m"), "the next slot, 00:30 in Berlin: {html}");
    }

    #[test]
    fn the_404_page_names_the_schedule_escaped() {
        let html = not_found(&header(), "<img src=x onerror=alert(1)>").into_string();
        assert!(html.contains("No schedule named “&lt;img src=x onerror=alert(1)&gt;”"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains(r#"<a href="/">"#), "{html}");
    }

    #[test]
    fn page_links_appear_only_when_needed() {
        let html = overview_of(&run(RunState::Succeeded, "2026-11-23T23:30:00Z"));
        assert!(!html.contains("rel=\"prev\"") && !html.contains("rel=\"next\""), "{html}");
        let schedules = schedules();
        let rows = [row(&schedules[0], None, header().now)];
        let middle = Listing { q: "a b&c".into(), page: 2, pages: 3, matched: 250, total: 1000 };
        let html = overview(&header(), &rows, &middle).into_string();
        assert!(html.contains(r#"<a rel="prev" href="/?q=a+b%26c">"#), "{html}");
        assert!(html.contains(r#"<a rel="next" href="/?q=a+b%26c&amp;page=3">"#), "{html}");
        assert!(html.contains("Page 2 of 3"), "{html}");
        assert!(html.contains("Showing 1 of 250 schedules matching “a b&amp;c” (1,000 in all)"), "{html}");
        let last = Listing { page: 3, ..middle };
        let html = overview(&header(), &rows, &last).into_string();
        assert!(html.contains("rel=\"prev\"") && !html.contains("rel=\"next\""), "{html}");

        let runs = [run(RunState::Succeeded, "2026-11-23T23:30:00Z")];
        let html = schedule_page(&runs, None, None);
        assert!(!html.contains("Older runs") && !html.contains("Newest runs"), "{html}");
        let html = schedule_page(&runs, None, Some(at("2026-11-23T23:30:00Z")));
        assert!(html.contains(r#"href="/schedules/nightly?before=2026-11-23T23%3A30%3A00Z#history""#), "{html}");
        assert!(!html.contains("Newest runs"), "{html}");
        let html = schedule_page(&runs, Some(at("2026-11-24T23:30:00Z")), None);
        assert!(html.contains(r#"<a href="/schedules/nightly#history">"#), "{html}");
        assert!(!html.contains("Older runs"), "{html}");
    }

    #[test]
    fn names_are_encoded_in_links() {
        assert_eq!(schedule_href("a b/c?d"), "/schedules/a%20b%2Fc%3Fd");
        assert_eq!(schedule_href("Weekly-Report_1.0"), "/schedules/Weekly-Report_1.0");
    }

    #[test]
    fn the_filter_ignores_case() {
        let schedules = schedules();
        let names = |q: &str| filter(&schedules, q).iter().map(|s| s.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(""), ["nightly", "Weekly-Report"]);
        assert_eq!(names("WEEKLY"), ["Weekly-Report"]);
        assert_eq!(names("weekly report"), ["Weekly-Report"], "the description");
        assert_eq!(names("GROUP/SUB"), ["nightly"], "the project");
        assert_eq!(names("42"), ["Weekly-Report"], "a project id");
        assert_eq!(names("Release/"), ["Weekly-Report"], "the ref");
        assert_eq!(names("SCRIPT"), ["nightly"]);
        assert_eq!(names("nothing like it"), Vec::<String>::new());
    }

    /// The `data-label` of every `td` in `html`, after checking that each `td` has one.
    fn labels(html: &str) -> Vec<&str> {
        let cells = html.split("<td").skip(1);
        cells
            .map(|cell| {
                let tag = &cell[..cell.find('>').expect("the tag ends")];
                let at = tag.find("data-label=\"").unwrap_or_else(|| panic!("a cell without data-label: {tag}"));
                let label = &tag[at + "data-label=\"".len()..];
                &label[..label.find('"').expect("the value ends")]
            })
            .collect()
    }

    #[test]
    fn every_cell_is_labelled_with_its_column() {
        let last = failed("the trigger token is not valid");
        let pages =
            [overview_of(&last), schedule_page(&[last.clone(), with_pipeline("https://x.example/p/7")], None, None)];
        for html in pages {
            let labels = labels(&html);
            assert!(!labels.is_empty(), "{html}");
            for label in labels {
                let header = format!(r#"<th scope="col">{label}</th>"#);
                assert!(html.contains(&header), "{label} is no column's header: {html}");
            }
        }
        let html = overview_of(&last);
        assert_eq!(html.matches(r#"<th scope="col">"#).count(), 6, "the headers stay in the DOM: {html}");
        for label in ["Last run", "Next run", "Project and ref", "Cron and zone", "Token"] {
            assert_eq!(html.matches(&format!(r#"data-label="{label}""#)).count(), 2, "{label}: {html}");
        }
        let html = schedule_page(std::slice::from_ref(&last), None, None);
        for label in ["Time (Europe/Berlin)", "UTC offset", "UTC", "In", "Slot", "State", "HTTP", "Error", "Owner"] {
            assert!(html.contains(&format!(r#"data-label="{label}""#)), "{label}: {html}");
        }
        assert!(html.contains(r#"<td class="num" data-label="HTTP">400</td>"#), "{html}");
    }

    #[test]
    fn a_schedule_in_utc_shows_its_times_once() {
        let schedules = schedules();
        let weekly = Schedule { enabled: true, ..(*schedules[1]).clone() };
        assert_eq!(weekly.timezone.name(), "UTC");
        let now = header().now;
        let next: Vec<_> = weekly.cron.iter_after(weekly.timezone, now).take(3).collect();
        let last = run(RunState::Succeeded, "2026-11-23T06:00:00Z");
        let html = schedule(&header(), &row(&weekly, Some(&last), now), &next, &[], None, None).into_string();
        let table = &html[html.find("The next 3 fire times").expect("the next runs")..];
        let table = &table[..table.find("</table>").expect("the table ends")];
        let headers: Vec<_> = table.split(r#"<th scope="col">"#).skip(1).map(|h| &h[..h.find('<').unwrap()]).collect();
        assert_eq!(headers, ["Time (UTC)", "In"], "{table}");
        assert!(!table.contains("UTC+00:00"), "{table}");
        assert!(table.contains(r#"<time datetime="2026-11-30T06:00:00Z">2026-11-30 06:00:00 UTC</time>"#), "{table}");
        assert!(html.contains(r#"title="2026-11-23 06:00:00 UTC">1d 6h ago</time>"#), "the UTC time once: {html}");
        assert!(!html.contains("UTC (2026"), "{html}");
        // Elsewhere the zone's time and UTC, both.
        let html = schedule_page(&[last], None, None);
        assert!(html.contains(r#"title="2026-11-23 07:00:00 CET (2026-11-23 06:00:00 UTC)""#), "{html}");
    }

    #[test]
    fn projects_link_to_gitlab() {
        let schedules = schedules();
        let html = overview_of(&run(RunState::Succeeded, "2026-11-23T23:30:00Z"));
        let path = r#"<a href="https://gitlab.example.com/group/sub/project" rel="noreferrer" title="Project group/sub/project in GitLab">group/sub/project</a>"#;
        assert!(html.contains(path), "{html}");
        assert!(html.contains(r#"<a href="https://gitlab.example.com/projects/42" rel="noreferrer""#), "{html}");
        assert!(schedule_page(&[], None, None).contains(path), "in the settings too");

        let with = |gitlab: &str, project: Project| {
            let gitlab = Arc::new(url::Url::parse(gitlab).expect("a URL"));
            project_url(&Schedule { gitlab, project, ..(*schedules[0]).clone() }).map(String::from)
        };
        let path = |text: &str| Project::Path(text.into());
        assert_eq!(
            with("https://bot:secret@git.example.com/gitlab/?private_token=x#y", path("group/project")).as_deref(),
            Some("https://git.example.com/gitlab/group/project"),
            "no user name, password, query or fragment"
        );
        assert_eq!(
            with("http://git.example.com", Project::Id(7)).as_deref(),
            Some("http://git.example.com/projects/7")
        );
        assert_eq!(
            with("https://git.example.com/", path("a/../../x/<b>?#")).as_deref(),
            Some("https://git.example.com/a/x/%3Cb%3E%3F%23"),
            "encoded, and it stays under the GitLab URL"
        );
        assert_eq!(with("ftp://git.example.com/", path("group/project")), None);
        let ftp = Schedule {
            gitlab: Arc::new(url::Url::parse("ftp://git.example.com/").unwrap()),
            ..(*schedules[0]).clone()
        };
        assert_eq!(project(&ftp).into_string(), "group/sub/project", "no link");
    }

    #[test]
    fn under_a_second_is_just_now() {
        let now = header().now;
        let ms = chrono::TimeDelta::milliseconds;
        assert_eq!(ago(now - ms(999), now), "just now");
        assert_eq!(ago(now + ms(10), now), "just now", "a slot claimed ahead of its time");
        assert_eq!(ago(now - ms(1000), now), "1s ago");
        assert_eq!(until(now + ms(999), now), "now");
        assert_eq!(until(now - ms(5), now), "now");
        assert_eq!(until(now + ms(1500), now), "in 1s");

        let sending = Run {
            slot: now + ms(10),
            attempts: 2,
            error: Some("an earlier attempt timed out".into()),
            ..run(RunState::Sending, "2026-11-24T12:00:00Z")
        };
        for html in [overview_of(&sending), schedule_page(std::slice::from_ref(&sending), None, None)] {
            let facts = html.find("<td data-label=\"Last run\">").or_else(|| html.find(r#"<dl class="facts">"#));
            let last = &html[facts.expect("the last run")..];
            let last = &last[..last.find("</td>").or_else(|| last.find("</dl>")).expect("its end")];
            assert!(last.contains(r#"<span class="badge info">sending</span>"#), "{last}");
            assert!(last.contains(">just now</time>"), "{last}");
            assert!(!last.contains("earlier attempt"), "{last}");
        }
        let claimed = Run { slot: now + ms(10), ..run(RunState::Claimed, "2026-11-24T12:00:00Z") };
        let html = overview_of(&claimed);
        assert!(html.contains(r#"<span class="badge info">claimed</span>"#), "{html}");
        assert!(!html.contains(r#"<tr class="#), "a run on its way does not stand out: {html}");
    }
}
