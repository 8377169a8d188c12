//! `monitor`: the runbook's "Post-Deployment Monitoring" as a window of
//! polls with thresholds.
//!
//! For `[monitor] window_seconds`, every `interval_seconds`, it reads:
//!
//! - the target's API gateway requests and their 5xx answers since the last
//!   poll, from the Management API's logs endpoint (`/analytics/endpoints/logs`,
//!   or the spec's `logs.all` when that answers 404: probed once, then kept);
//! - each watched Edge Function's 5xx answers, from
//!   `functions.combined-stats` (one call per function);
//! - the latency and status of each `[[frontend.routes]]` below
//!   `[frontend] url`.
//!
//! One poll before the window opens is the baseline; when `monitor` runs in
//! the same run after `cutover`, the baseline is the one `cutover` took
//! before its switch ([`take_baseline`]). A poll costs `1 + functions` API
//! calls; the interval is stretched so the window stays within
//! [`API_BUDGET_PER_MINUTE`] of the API's 60 requests a minute, and the
//! report says so. The window stops at the first poll that passes a
//! threshold; with `rollback_on_failure`, `rollback` runs then and its rows
//! join this report.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use crate::cells;
use crate::context::Context;
use crate::http_checks::{self, HttpCheck};
use crate::manifest::MonitorSection;
use crate::pg::Side;
use crate::report::Cell;
use crate::report::{CheckItem, LineChart, Outcome, PhaseReport, ReportTable, Status, count};
use crate::supabase::analytics::{
    EDGE_STATUS_SQL, FunctionBucket, LogsEndpoint, StatusCounts, status_counts,
};
use crate::supabase::{ApiError, ApiErrorKind, Function, ManagementClient};

use super::{Phase, PhaseError, smoke};

/// Environment variable that replaces the wait between two polls, in
/// milliseconds (tests and drills use 0; the number of polls stays
/// `window_seconds / interval_seconds`).
pub const INTERVAL_ENV: &str = "CUTOVER_MONITOR_INTERVAL_MS";

/// Management API calls a minute the window plans for, of the 60 the API
/// allows per user: the rest is room for retries and for other jobs of the
/// same user.
pub const API_BUDGET_PER_MINUTE: u64 = 50;

/// Per-request timeout of a route check.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// When the polls run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Polls in the window (the baseline not counted).
    pub polls: u64,
    /// Seconds between two polls.
    pub interval_seconds: u64,
    /// The interval the manifest asked for.
    pub asked_interval_seconds: u64,
    /// Management API calls one poll makes.
    pub calls_per_poll: u64,
}

impl Schedule {
    /// Whether the interval was stretched to stay within the API's limit.
    pub fn stretched(&self) -> bool {
        self.interval_seconds > self.asked_interval_seconds
    }
}

/// The polls of a window of `window_seconds`, every `interval_seconds` or
/// more: at least as long as `calls_per_poll` calls take at `budget` calls a
/// minute.
pub fn schedule(
    window_seconds: u64,
    interval_seconds: u64,
    calls_per_poll: u64,
    budget: u64,
) -> Schedule {
    let shortest = (calls_per_poll * 60).div_ceil(budget.max(1));
    let interval = interval_seconds.max(shortest).max(1);
    Schedule {
        polls: (window_seconds / interval).max(1),
        interval_seconds: interval,
        asked_interval_seconds: interval_seconds,
        calls_per_poll,
    }
}

/// One route's answer in a poll.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSample {
    /// The route's path, e.g. `/dashboard`.
    pub path: String,
    /// Its status, when it answered.
    pub status: Option<u16>,
    /// Time to the full answer.
    pub latency_ms: u64,
    /// Its budget.
    pub budget_ms: u64,
    /// Why it failed (status or latency), if it did.
    pub problem: Option<String>,
}

/// What one poll saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// Taken by `cutover` before its switch.
    pub before_switch: bool,
    /// The API gateway's requests and 5xx since the previous poll; `None`
    /// when the logs could not be read.
    pub api: Option<StatusCounts>,
    /// Why the logs could not be read.
    pub api_problem: Option<String>,
    /// Edge Function 5xx: new since the window opened (for the baseline: in
    /// the last 15 minutes); `None` when no function's figures could be read.
    pub function_5xx: Option<u64>,
    /// Functions whose figures could not be read, and why.
    pub function_problems: Vec<String>,
    /// The routes' answers.
    pub routes: Vec<RouteSample>,
}

impl Poll {
    /// The slowest route.
    pub fn slowest(&self) -> Option<&RouteSample> {
        self.routes.iter().max_by_key(|r| r.latency_ms)
    }
}

/// The thresholds a window is judged by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Highest API error rate, percent.
    pub max_error_rate_percent: f64,
    /// Most Edge Function 5xx in the window.
    pub max_function_5xx: u64,
    /// Requests needed before the rate is judged.
    pub min_requests: u64,
}

impl From<&MonitorSection> for Thresholds {
    fn from(m: &MonitorSection) -> Self {
        Thresholds {
            max_error_rate_percent: m.max_api_error_rate_percent,
            max_function_5xx: m.max_function_5xx,
            min_requests: m.min_requests,
        }
    }
}

/// Everything seen since the window opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// API requests.
    pub requests: u64,
    /// Of those, 5xx answers.
    pub server_errors: u64,
    /// Edge Function 5xx.
    pub function_5xx: u64,
}

impl Totals {
    /// The API error rate in percent, when any request was seen.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.server_errors as f64 * 100.0 / self.requests as f64)
    }

    /// Adds a poll.
    pub fn add(&mut self, poll: &Poll) {
        if let Some(api) = poll.api {
            self.requests += api.requests;
            self.server_errors += api.server_errors;
        }
        self.function_5xx += poll.function_5xx.unwrap_or(0);
    }
}

/// A threshold passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    /// The checklist row it fails.
    pub id: &'static str,
    /// What was measured against what limit.
    pub text: String,
}

/// `12.50 %`.
pub fn percent(rate: f64) -> String {
    format!("{rate:.2} %")
}

/// The thresholds `totals` and the last poll's routes pass.
pub fn judge(totals: &Totals, last: &Poll, limits: &Thresholds) -> Vec<Breach> {
    let mut breaches = Vec::new();
    if let Some(rate) = totals.error_rate() {
        if totals.requests >= limits.min_requests && rate > limits.max_error_rate_percent {
            breaches.push(Breach {
                id: "monitor-api-error-rate",
                text: format!(
                    "API error rate {} ({} of {} requests answered 5xx since the window opened) is over the {} limit",
                    percent(rate),
                    totals.server_errors,
                    totals.requests,
                    percent(limits.max_error_rate_percent)
                ),
            });
        }
    }
    if totals.function_5xx > limits.max_function_5xx {
        breaches.push(Breach {
            id: "monitor-function-5xx",
            text: format!(
                "{} Edge Function 5xx since the window opened, over the limit of {}",
                totals.function_5xx, limits.max_function_5xx
            ),
        });
    }
    for route in &last.routes {
        if let Some(problem) = &route.problem {
            breaches.push(Breach {
                id: "monitor-routes",
                text: format!("route {}: {problem}", route.path),
            });
        }
    }
    breaches
}

/// Edge Function 5xx counted once per time bucket, whichever poll saw the
/// bucket first or last (a bucket still filling grows between polls).
#[derive(Debug, Default)]
struct FunctionTally {
    seen: BTreeMap<(String, Option<i64>), u64>,
}

impl FunctionTally {
    /// Remembers buckets as seen (a baseline's): only growth past them counts.
    fn seed(&mut self, function: &str, buckets: &[FunctionBucket]) {
        for b in buckets {
            let key = (function.to_string(), b.at.map(|t| t.timestamp_micros()));
            self.seen.insert(key, b.server_errors);
        }
    }

    /// New 5xx of `function` in buckets from `since` (its minute) on.
    fn add(&mut self, function: &str, buckets: &[FunctionBucket], since: DateTime<Utc>) -> u64 {
        let floor = since
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(since);
        let mut new = 0;
        for b in buckets {
            if b.at.is_some_and(|at| at < floor) {
                continue;
            }
            let key = (function.to_string(), b.at.map(|t| t.timestamp_micros()));
            let before = self.seen.insert(key, b.server_errors).unwrap_or(0);
            new += b.server_errors.saturating_sub(before);
        }
        new
    }
}

/// What a poll needs: the client, the endpoint that answers, the functions
/// and the routes.
struct Watcher {
    client: ManagementClient,
    project: String,
    endpoint: LogsEndpoint,
    probed: Option<String>,
    functions: Vec<Function>,
    routes: Vec<HttpCheck>,
    http: reqwest::Client,
    tally: FunctionTally,
}

/// A poll's API failure that makes watching pointless (the token may not
/// read the figures): the phase stops.
fn fatal(e: &ApiError) -> bool {
    matches!(
        e.kind,
        ApiErrorKind::Unauthorized | ApiErrorKind::Forbidden | ApiErrorKind::NotFound
    )
}

impl Watcher {
    /// One poll: the logs from `from` to now, the functions' buckets (new
    /// since `since`, or all of the last 15 minutes for a baseline), the
    /// routes.
    async fn poll(
        &mut self,
        from: DateTime<Utc>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Poll, ApiError> {
        let now = Utc::now();
        let (api, api_problem) = match self.logs(from, now).await {
            Ok(counts) => (Some(counts), None),
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => (None, Some(e.to_string())),
        };
        let mut function_5xx = None;
        let mut function_problems = Vec::new();
        for f in &self.functions {
            match self.client.function_stats(&self.project, &f.id).await {
                Ok(buckets) => {
                    let new = match since {
                        Some(since) => self.tally.add(&f.slug, &buckets, since),
                        None => {
                            // What the baseline saw is not new in the window.
                            self.tally.seed(&f.slug, &buckets);
                            buckets.iter().map(|b| b.server_errors).sum()
                        }
                    };
                    function_5xx = Some(function_5xx.unwrap_or(0) + new);
                }
                Err(e) if fatal(&e) => return Err(e),
                Err(e) => function_problems.push(format!("{}: {e}", f.slug)),
            }
        }
        let mut routes = Vec::new();
        for check in &self.routes {
            let result = http_checks::run(&self.http, check).await;
            routes.push(RouteSample {
                path: check.name.trim_start_matches("route ").to_string(),
                status: result.status,
                latency_ms: result.latency_ms,
                budget_ms: check.max_latency_ms.unwrap_or_default(),
                problem: result.problem,
            });
        }
        Ok(Poll {
            at: Utc::now(),
            before_switch: false,
            api,
            api_problem,
            function_5xx,
            function_problems,
            routes,
        })
    }

    /// The logs query, probing `/logs` first and falling back to `logs.all`
    /// on 404, once.
    async fn logs(
        &mut self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<StatusCounts, ApiError> {
        let ask = |endpoint| {
            self.client
                .query_logs(&self.project, endpoint, EDGE_STATUS_SQL, from, to)
        };
        let rows = match ask(self.endpoint).await {
            Err(e) if e.kind == ApiErrorKind::NotFound && self.probed.is_none() => {
                let rows = ask(LogsEndpoint::LogsAll).await?;
                self.endpoint = LogsEndpoint::LogsAll;
                self.probed = Some(format!(
                    "`/analytics/endpoints/logs` answered 404; read from `/analytics/endpoints/{}`",
                    LogsEndpoint::LogsAll.name()
                ));
                rows
            }
            other => {
                let rows = other?;
                if self.probed.is_none() {
                    self.probed = Some(format!(
                        "read from `/analytics/endpoints/{}`",
                        self.endpoint.name()
                    ));
                }
                rows
            }
        };
        Ok(status_counts(&rows))
    }
}

/// A fix for an analytics call the API refused.
fn analytics_stop(ctx: &Context, e: ApiError) -> PhaseError {
    let hint = match e.kind {
        ApiErrorKind::Forbidden => format!(
            "the owner of {} needs read access to the target's logs and usage (the analytics:read scope, or a project role that can read logs)",
            ctx.settings.label("supabase-access-token")
        ),
        _ => super::functions::api_hint(ctx, &e, "target-project-ref"),
    };
    PhaseError::new(format!(
        "{}; the monitoring window stopped, nothing was judged and nothing rolled back",
        ctx.redactor.redact(&e.to_string())
    ))
    .hint(hint)
}

/// The route checks of `[[frontend.routes]]`, each with its budget (its own
/// `max_latency_ms`, else `[monitor] max_route_latency_ms`).
fn route_checks(ctx: &Context) -> Result<Vec<HttpCheck>, PhaseError> {
    let (checks, problems) = smoke::plan(ctx);
    if let Some(p) = problems.iter().find(|p| p.id.starts_with("route")) {
        return Err(PhaseError::new(format!(
            "the monitored routes cannot be built: {}",
            p.evidence
        ))
        .hint(p.hint.clone().unwrap_or_default()));
    }
    let default = ctx.manifest.monitor.max_route_latency_ms;
    Ok(checks
        .into_iter()
        .filter(|(id, _)| id.starts_with("route:"))
        .map(|(_, mut check)| {
            check.max_latency_ms = Some(check.max_latency_ms.unwrap_or(default));
            check
        })
        .collect())
}

/// The client, the functions to watch and the routes.
async fn watcher(ctx: &Context) -> Result<Watcher, PhaseError> {
    let (client, project, _) = super::functions::management_client(ctx, "monitor", false)?;
    let routes = route_checks(ctx)?;
    let listed = client
        .list_functions(&project)
        .await
        .map_err(|e| analytics_stop(ctx, e))?;
    let wanted = &ctx.manifest.monitor.functions;
    let functions: Vec<Function> = if wanted.is_empty() {
        listed
            .into_iter()
            .filter(|f| f.status == "ACTIVE")
            .collect()
    } else {
        let unknown: Vec<&String> = wanted
            .iter()
            .filter(|w| !listed.iter().any(|f| &f.slug == *w))
            .collect();
        if !unknown.is_empty() {
            return Err(PhaseError::new(format!(
                "[monitor] functions names {} that the target project does not have",
                unknown
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .hint(format!(
                "list slugs the target has ({}), or leave functions out to watch every function",
                if listed.is_empty() {
                    "it lists none".to_string()
                } else {
                    listed
                        .iter()
                        .map(|f| f.slug.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        listed
            .into_iter()
            .filter(|f| wanted.contains(&f.slug))
            .collect()
    };
    Ok(Watcher {
        client,
        project,
        endpoint: LogsEndpoint::Logs,
        probed: None,
        functions,
        routes,
        http: http_checks::client(ROUTE_TIMEOUT),
        tally: FunctionTally::default(),
    })
}

/// The baseline `cutover` takes before its switch when `monitor` follows it
/// in the run (listed, or `[monitor] after_cutover`). `None` when it cannot
/// be taken: `monitor` then takes its own, after the switch, and says so.
pub async fn take_baseline(ctx: &Context) -> Option<Poll> {
    let phases = &ctx.settings.phases;
    let at = |p: Phase| phases.iter().position(|q| *q == p);
    let follows = matches!((at(Phase::Cutover), at(Phase::Monitor)), (Some(c), Some(m)) if c < m);
    if !follows || ctx.settings.dry_run {
        return None;
    }
    let mut watcher = watcher(ctx).await.ok()?;
    let interval = ctx.manifest.monitor.interval_seconds.max(60) as i64;
    let mut poll = watcher
        .poll(Utc::now() - chrono::Duration::seconds(interval), None)
        .await
        .ok()?;
    poll.before_switch = true;
    Some(poll)
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

fn slowest_text(poll: &Poll) -> String {
    match poll.slowest() {
        None => "—".into(),
        Some(r) => format!(
            "{} {} ms{}",
            r.path,
            r.latency_ms,
            match r.status {
                Some(s) if r.problem.is_some() => format!(" ({s})"),
                None => " (no answer)".into(),
                _ => String::new(),
            }
        ),
    }
}

/// Runs `monitor`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("monitor");
    let m = ctx.manifest.monitor.clone();
    let limits = Thresholds::from(&m);
    // Everything the window needs is checked before it opens: an hour of
    // watching must not end in "cannot roll back".
    let (_, project, _) = super::functions::management_client(ctx, "monitor", false)?;
    if m.rollback_on_failure {
        rollback_inputs(ctx)?;
    }
    let routes = route_checks(ctx)?;
    if ctx.settings.dry_run {
        report.check(dry_run_row(&m, &project, routes.len()));
        report.summary = "Dry run: the monitoring window is planned; nothing was polled.".into();
        return Ok(report);
    }

    let mut watcher = watcher(ctx).await?;
    let plan = schedule(
        m.window_seconds,
        m.interval_seconds,
        1 + watcher.functions.len() as u64,
        API_BUDGET_PER_MINUTE,
    );
    let pause = ctx
        .env_var(INTERVAL_ENV)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(plan.interval_seconds));

    // The baseline: cutover's, from before the switch, or one now.
    let baseline = match ctx.monitor_baseline.take() {
        Some(b) => b,
        None => watcher
            .poll(
                Utc::now() - chrono::Duration::seconds(plan.interval_seconds as i64),
                None,
            )
            .await
            .map_err(|e| analytics_stop(ctx, e))?,
    };
    let watched: Vec<String> = watcher.functions.iter().map(|f| f.slug.clone()).collect();
    let probed = watcher.probed.clone();
    let window = watch(ctx, &mut watcher, &plan, pause, &limits).await?;
    // The logs endpoint is probed on the first poll when it was not before.
    let probed = probed.or_else(|| watcher.probed.clone());
    report.check(plan_row(&plan, &baseline, &watched, probed.as_deref()));
    rows(&mut report, &baseline, &window, &m, &watched);
    report
        .tables
        .push(figures_table(&baseline, &window.polls, &limits));
    charts(&mut report, &window.polls, &m);
    report.summary = summary(&window, plan.polls);
    if !window.breaches.is_empty() && m.rollback_on_failure {
        roll_back(ctx, &mut report).await;
    }
    report.conclude_from_checks();
    Ok(report)
}

/// `rollback_on_failure` needs both databases, checked before the window.
fn rollback_inputs(ctx: &Context) -> Result<(), PhaseError> {
    let missing: Vec<String> = [
        (Side::Target, "target-db-url"),
        (Side::Source, "source-db-url"),
    ]
    .into_iter()
    .filter(|(side, _)| !ctx.has_url(*side))
    .map(|(_, input)| ctx.settings.label(input))
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PhaseError::new(format!(
        "[monitor] rollback_on_failure = true needs the databases `rollback` restores, but {} {} not set; nothing was watched",
        missing.join(" and "),
        if missing.len() == 1 { "is" } else { "are" }
    ))
    .hint("pass target-db-url and source-db-url as for `rollback`, or set rollback_on_failure = false"))
}

/// The dry run's row: the window as it would be watched.
fn dry_run_row(m: &MonitorSection, project: &str, routes: usize) -> CheckItem {
    let planned = schedule(
        m.window_seconds,
        m.interval_seconds,
        1,
        API_BUDGET_PER_MINUTE,
    );
    let limits_text = format!(
        "API error rate ≤ {} (judged from {}), Edge Function 5xx ≤ {}, routes within {} ms unless their own budget says otherwise",
        percent(m.max_api_error_rate_percent),
        count(m.min_requests, "request", "requests"),
        m.max_function_5xx,
        m.max_route_latency_ms
    );
    CheckItem::new(
        "monitor-plan",
        "Monitoring window planned",
        Status::Skip,
        format!(
            "dry run: would watch project {project} for {} ({} polls every {} s or more, plus a baseline), {routes} route(s); {limits_text}{}; no API call made",
            crate::report::human_duration(m.window_seconds * 1000),
            planned.polls,
            planned.interval_seconds,
            if m.rollback_on_failure {
                "; would roll back when a threshold is passed"
            } else {
                ""
            }
        ),
    )
}

/// The `monitor-plan` row: the polls, their API calls, and whether the
/// interval had to be stretched.
fn plan_row(
    plan: &Schedule,
    baseline: &Poll,
    watched: &[String],
    probed: Option<&str>,
) -> CheckItem {
    let mut evidence = format!(
        "{} polls every {} s over {}, after a baseline {}; {} per poll (logs{}); {}",
        plan.polls,
        plan.interval_seconds,
        crate::report::human_duration(plan.polls * plan.interval_seconds * 1000),
        if baseline.before_switch {
            "taken by cutover before the switch"
        } else {
            "taken when the window opened"
        },
        count(plan.calls_per_poll, "API call", "API calls"),
        if watched.is_empty() {
            ", no Edge Function deployed".to_string()
        } else {
            format!(" + combined stats of {}", watched.join(", "))
        },
        probed.unwrap_or("logs endpoint not probed yet"),
    );
    if !plan.stretched() {
        return CheckItem::new(
            "monitor-plan",
            "Monitoring window within the API's rate limit",
            Status::Pass,
            evidence,
        );
    }
    evidence.push_str(&format!(
        "; the interval was stretched from the manifest's {} s to {} s so {} calls a poll stay within {} of the Management API's 60 requests a minute",
        plan.asked_interval_seconds, plan.interval_seconds, plan.calls_per_poll, API_BUDGET_PER_MINUTE
    ));
    CheckItem::new(
        "monitor-plan",
        "Monitoring window within the API's rate limit",
        Status::Warn,
        evidence,
    )
    .with_hint(
        "raise [monitor] interval_seconds, or list fewer [monitor] functions, to poll as often as asked",
    )
}

/// What the window saw.
struct Window {
    /// When it opened.
    opened: DateTime<Utc>,
    /// The polls, in order (the last one passed a threshold when there are
    /// breaches).
    polls: Vec<Poll>,
    /// Sums over the polls.
    totals: Totals,
    /// The thresholds the last poll passed.
    breaches: Vec<Breach>,
}

/// Polls every `pause` until the window ends or a threshold is passed.
async fn watch(
    ctx: &Context,
    watcher: &mut Watcher,
    plan: &Schedule,
    pause: Duration,
    limits: &Thresholds,
) -> Result<Window, PhaseError> {
    let opened = Utc::now();
    let mut window = Window {
        opened,
        polls: Vec::new(),
        totals: Totals::default(),
        breaches: Vec::new(),
    };
    let mut from = opened;
    for _ in 0..plan.polls {
        tokio::time::sleep(pause).await;
        let poll = watcher
            .poll(from, Some(opened))
            .await
            .map_err(|e| analytics_stop(ctx, e))?;
        from = poll.at;
        window.totals.add(&poll);
        window.breaches = judge(&window.totals, &poll, limits);
        window.polls.push(poll);
        if !window.breaches.is_empty() {
            break;
        }
    }
    Ok(window)
}

/// The slowest route answer over the polls.
fn slowest_route(polls: &[Poll]) -> Option<&RouteSample> {
    polls
        .iter()
        .filter_map(|p| p.slowest())
        .max_by_key(|r| r.latency_ms)
}

/// The phase's summary: where it failed, or what the window measured.
fn summary(window: &Window, planned: u64) -> String {
    let polls = &window.polls;
    if !window.breaches.is_empty() {
        let measured: Vec<&str> = window.breaches.iter().map(|b| b.text.as_str()).collect();
        return format!(
            "Monitoring failed at poll {} of {planned}: {}.",
            polls.len(),
            measured.join("; ")
        );
    }
    format!(
        "Watched the target for {} polls over {}: API error rate {}, {} Edge Function 5xx, slowest route {}.",
        polls.len(),
        crate::report::human_duration((Utc::now() - window.opened).num_milliseconds().max(0) as u64),
        window
            .totals
            .error_rate()
            .map(percent)
            .unwrap_or_else(|| "not measured (no request)".into()),
        window.totals.function_5xx,
        slowest_route(polls)
            .map(|r| format!("{} {} ms", r.path, r.latency_ms))
            .unwrap_or_else(|| "— (no [[frontend.routes]])".into())
    )
}

/// `rollback`, after a failed window; its rows and tables join the report.
async fn roll_back(ctx: &mut Context, report: &mut PhaseReport) {
    let result = match super::refuse_one_environment(Phase::Rollback, ctx).await {
        Ok(()) => super::rollback::run(ctx).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(rolled) => {
            let ok = rolled.outcome == Outcome::Success && !rolled.has_failures();
            report.check(CheckItem::new(
                "monitor-rollback",
                "Rolled back after the failed window ([monitor] rollback_on_failure)",
                if ok { Status::Pass } else { Status::Fail },
                rolled.summary.clone(),
            ));
            report.summary.push_str(&format!(
                " Rolled back{}: {}",
                if ok { "" } else { " with problems" },
                rolled.summary
            ));
            report.checks.extend(rolled.checks);
            report.tables.extend(rolled.tables);
            report.diffs.extend(rolled.diffs);
            report.errors.extend(rolled.errors);
        }
        Err(e) => {
            let mut item = CheckItem::new(
                "monitor-rollback",
                "Rolled back after the failed window ([monitor] rollback_on_failure)",
                Status::Fail,
                format!("rollback stopped: {}", e.message),
            );
            if let Some(h) = &e.hint {
                item = item.with_hint(h.clone());
            }
            report.check(item);
            report
                .summary
                .push_str(&format!(" The rollback stopped: {}", e.message));
        }
    }
}

/// The three checklist rows: API error rate, function 5xx, routes.
fn rows(
    report: &mut PhaseReport,
    baseline: &Poll,
    window: &Window,
    m: &MonitorSection,
    watched: &[String],
) {
    let hint = if m.rollback_on_failure {
        "the figures over time are in the table; rollback ran (see its rows); read the target's API gateway and Edge Function logs in the dashboard before the next attempt"
    } else {
        "the figures over time are in the table; read the target's API gateway and Edge Function logs in the dashboard, and run `rollback` if the release is at fault (or set [monitor] rollback_on_failure = true)"
    };
    report.check(api_row(baseline, window, m, hint));
    report.check(function_row(baseline, window, m, watched, hint));
    report.check(route_row(baseline, window, m, hint));
}

/// The breach that fails row `id`, if any.
fn breach<'a>(window: &'a Window, id: &str) -> Option<&'a Breach> {
    window.breaches.iter().find(|b| b.id == id)
}

/// The `monitor-api-error-rate` row.
fn api_row(baseline: &Poll, window: &Window, m: &MonitorSection, hint: &str) -> CheckItem {
    const ID: &str = "monitor-api-error-rate";
    let title = format!("API error rate ≤ {}", percent(m.max_api_error_rate_percent));
    let base_api = match baseline.api {
        Some(c) if c.requests > 0 => format!(
            "baseline {} ({} of {})",
            percent(c.server_errors as f64 * 100.0 / c.requests as f64),
            c.server_errors,
            c.requests
        ),
        Some(_) => "baseline: no request".into(),
        None => "baseline: logs not readable".into(),
    };
    let (polls, totals) = (&window.polls, &window.totals);
    let blind_api = polls.iter().filter(|p| p.api.is_none()).count();
    if let Some(b) = breach(window, ID) {
        return CheckItem::new(ID, &title, Status::Fail, format!("{}; {base_api}", b.text))
            .with_hint(hint);
    }
    if !polls.is_empty() && blind_api == polls.len() {
        let problem = polls
            .iter()
            .find_map(|p| p.api_problem.clone())
            .unwrap_or_default();
        return CheckItem::new(
            ID,
            &title,
            Status::Fail,
            format!("no poll could read the logs: {problem}"),
        )
        .with_hint("a window that sees nothing proves nothing: check the Management API's status and re-run `monitor`");
    }
    let judged = totals.requests >= m.min_requests;
    let not_judged = if judged {
        String::new()
    } else {
        format!(
            "; fewer than [monitor] min_requests = {}, so the rate was not judged",
            m.min_requests
        )
    };
    let blind = if blind_api > 0 {
        format!("; {blind_api} poll(s) could not read the logs")
    } else {
        String::new()
    };
    CheckItem::new(
        ID,
        &title,
        if blind_api > 0 || !judged {
            Status::Warn
        } else {
            Status::Pass
        },
        format!(
            "{} ({} of {} requests answered 5xx) over {}{not_judged}{blind}; {base_api}",
            totals
                .error_rate()
                .map(percent)
                .unwrap_or_else(|| "no request".into()),
            totals.server_errors,
            totals.requests,
            count(polls.len(), "poll", "polls"),
        ),
    )
}

/// The `monitor-function-5xx` row.
fn function_row(
    baseline: &Poll,
    window: &Window,
    m: &MonitorSection,
    watched: &[String],
    hint: &str,
) -> CheckItem {
    const ID: &str = "monitor-function-5xx";
    let title = format!("Edge Function 5xx ≤ {}", m.max_function_5xx);
    let base_fn = baseline
        .function_5xx
        .map(|n| format!("baseline: {n} in the 15 minutes before"))
        .unwrap_or_else(|| "baseline: not readable".into());
    if watched.is_empty() {
        return CheckItem::new(
            ID,
            &title,
            Status::Skip,
            "the target lists no active Edge Function",
        );
    }
    if let Some(b) = breach(window, ID) {
        return CheckItem::new(ID, &title, Status::Fail, format!("{}; {base_fn}", b.text))
            .with_hint(hint);
    }
    let blind = window
        .polls
        .iter()
        .flat_map(|p| &p.function_problems)
        .next();
    CheckItem::new(
        ID,
        &title,
        if blind.is_none() {
            Status::Pass
        } else {
            Status::Warn
        },
        format!(
            "{} across {} ({}); {base_fn}{}",
            window.totals.function_5xx,
            count(watched.len(), "function", "functions"),
            watched.join(", "),
            blind
                .map(|p| format!("; not readable in some polls: {p}"))
                .unwrap_or_default()
        ),
    )
}

/// The `monitor-routes` row.
fn route_row(baseline: &Poll, window: &Window, m: &MonitorSection, hint: &str) -> CheckItem {
    const ID: &str = "monitor-routes";
    let title = format!("Frontend routes within {} ms", m.max_route_latency_ms);
    if baseline.routes.is_empty() {
        return CheckItem::new(
            ID,
            &title,
            Status::Skip,
            "no [[frontend.routes]] in the manifest",
        );
    }
    if let Some(b) = breach(window, ID) {
        return CheckItem::new(
            ID,
            &title,
            Status::Fail,
            format!("{}; baseline slowest {}", b.text, slowest_text(baseline)),
        )
        .with_hint(hint);
    }
    CheckItem::new(
        ID,
        &title,
        Status::Pass,
        format!(
            "{} route(s), slowest answer {}; baseline slowest {}",
            baseline.routes.len(),
            slowest_route(&window.polls)
                .map(|r| format!("{} {} ms", r.path, r.latency_ms))
                .unwrap_or_else(|| "—".into()),
            slowest_text(baseline)
        ),
    )
}

/// The figures over time, baseline first.
fn figures_table(baseline: &Poll, polls: &[Poll], limits: &Thresholds) -> ReportTable {
    let mut table = ReportTable::new(
        "Monitoring window",
        &[
            "Poll",
            "Time (UTC)",
            "Requests",
            "5xx",
            "Error rate (window)",
            "Function 5xx (window)",
            "Slowest route",
            "Result",
        ],
    )
    .with_note("Requests and 5xx: the API gateway's, since the previous poll (logs are read by the minute). The error rate and the function 5xx are counted from the window's opening; the baseline's function 5xx are those of the 15 minutes before it.");
    let api_cells = |p: &Poll| match p.api {
        Some(c) => (c.requests.to_string(), c.server_errors.to_string()),
        None => ("—".into(), "—".into()),
    };
    let (requests, errors) = api_cells(baseline);
    let base_rate = baseline
        .api
        .filter(|c| c.requests > 0)
        .map(|c| percent(c.server_errors as f64 * 100.0 / c.requests as f64))
        .unwrap_or_else(|| "—".into());
    table.push([
        if baseline.before_switch {
            "baseline (before the switch)".to_string()
        } else {
            "baseline".to_string()
        },
        clock(baseline.at),
        requests,
        errors,
        base_rate,
        baseline
            .function_5xx
            .map(|n| n.to_string())
            .unwrap_or_else(|| "—".into()),
        slowest_text(baseline),
        "—".into(),
    ]);
    let mut totals = Totals::default();
    for (i, poll) in polls.iter().enumerate() {
        totals.add(poll);
        let breaches = judge(&totals, poll, limits);
        let (requests, errors) = api_cells(poll);
        let result = if !breaches.is_empty() {
            Cell::verdict_because(
                Status::Fail,
                breaches
                    .iter()
                    .map(|b| b.id.trim_start_matches("monitor-").to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        } else if poll.api.is_none() || !poll.function_problems.is_empty() {
            Cell::verdict_because(Status::Warn, "partly blind")
        } else {
            Cell::verdict(Status::Pass)
        };
        table.push(cells![
            i + 1,
            clock(poll.at),
            requests,
            errors,
            totals
                .error_rate()
                .map(percent)
                .unwrap_or_else(|| "—".into()),
            totals.function_5xx,
            slowest_text(poll),
            result,
        ]);
    }
    table
}

/// The error rate and the slowest route over time, with their thresholds.
fn charts(report: &mut PhaseReport, polls: &[Poll], m: &MonitorSection) {
    if polls.len() < 2 {
        return;
    }
    let labels: Vec<String> = polls.iter().map(|p| clock(p.at)).collect();
    let mut totals = Totals::default();
    let rates: Vec<f64> = polls
        .iter()
        .map(|p| {
            totals.add(p);
            totals.error_rate().unwrap_or(0.0)
        })
        .collect();
    report.charts.push(LineChart {
        title: "API error rate since the window opened".into(),
        x_labels: labels.clone(),
        y_label: "%".into(),
        series: vec![("error rate".into(), rates)],
        limit: Some(m.max_api_error_rate_percent),
    });
    if polls.iter().any(|p| !p.routes.is_empty()) {
        report.charts.push(LineChart {
            title: "Slowest frontend route".into(),
            x_labels: labels,
            y_label: "ms".into(),
            series: vec![(
                "latency".into(),
                polls
                    .iter()
                    .map(|p| p.slowest().map_or(0.0, |r| r.latency_ms as f64))
                    .collect(),
            )],
            limit: Some(m.max_route_latency_ms as f64),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn poll(requests: u64, errors: u64, fn_5xx: u64) -> Poll {
        Poll {
            at: Utc::now(),
            before_switch: false,
            api: Some(StatusCounts {
                requests,
                server_errors: errors,
            }),
            api_problem: None,
            function_5xx: Some(fn_5xx),
            function_problems: Vec::new(),
            routes: Vec::new(),
        }
    }

    const LIMITS: Thresholds = Thresholds {
        max_error_rate_percent: 1.0,
        max_function_5xx: 0,
        min_requests: 20,
    };

    #[test]
    fn the_interval_is_stretched_to_stay_within_the_api_limit() {
        let s = schedule(3600, 60, 1, API_BUDGET_PER_MINUTE);
        assert_eq!(
            (s.polls, s.interval_seconds, s.stretched()),
            (60, 60, false)
        );
        // 1 logs call + 9 functions = 10 calls a poll: 12 s at 50 a minute.
        let s = schedule(60, 10, 10, API_BUDGET_PER_MINUTE);
        assert_eq!((s.interval_seconds, s.polls, s.stretched()), (12, 5, true));
        // 100 functions: 101 calls need more than two minutes.
        let s = schedule(600, 60, 101, API_BUDGET_PER_MINUTE);
        assert_eq!(s.interval_seconds, 122);
        assert!(s.interval_seconds * 50 >= 101 * 60);
        // A window shorter than one stretched interval still polls once.
        assert_eq!(schedule(5, 1, 100, 50).polls, 1);
    }

    #[test]
    fn thresholds_name_the_measured_rate() {
        let mut totals = Totals::default();
        totals.add(&poll(100, 1, 0));
        assert!(
            judge(&totals, &poll(100, 1, 0), &LIMITS).is_empty(),
            "1 % is not over 1 %"
        );
        totals.add(&poll(100, 5, 0));
        let b = judge(&totals, &poll(100, 5, 0), &LIMITS);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].id, "monitor-api-error-rate");
        assert!(
            b[0].text.contains("3.00 % (6 of 200 requests"),
            "{}",
            b[0].text
        );
        assert!(b[0].text.contains("1.00 % limit"), "{}", b[0].text);
    }

    #[test]
    fn few_requests_are_no_rate_but_function_errors_always_count() {
        let mut totals = Totals::default();
        totals.add(&poll(3, 1, 0));
        assert!(judge(&totals, &poll(3, 1, 0), &LIMITS).is_empty());
        totals.add(&poll(0, 0, 2));
        let b = judge(&totals, &poll(0, 0, 2), &LIMITS);
        assert_eq!(b[0].id, "monitor-function-5xx");
        assert!(
            b[0].text.starts_with("2 Edge Function 5xx"),
            "{}",
            b[0].text
        );
    }

    #[test]
    fn a_slow_or_failing_route_breaches() {
        let mut p = poll(100, 0, 0);
        p.routes.push(RouteSample {
            path: "/dashboard".into(),
            status: Some(200),
            latency_ms: 4200,
            budget_ms: 3000,
            problem: Some("took 4200 ms, over the 3000 ms budget".into()),
        });
        let b = judge(&Totals::default(), &p, &LIMITS);
        assert_eq!(b[0].id, "monitor-routes");
        assert!(b[0].text.contains("/dashboard") && b[0].text.contains("4200 ms"));
    }

    #[test]
    fn function_buckets_count_once_and_grow() {
        let since = Utc.with_ymd_and_hms(2026, 1, 7, 12, 0, 30).unwrap();
        let at = |m: u32| Some(Utc.with_ymd_and_hms(2026, 1, 7, 12, m, 0).unwrap());
        let bucket = |at, n| FunctionBucket {
            at,
            requests: 10,
            server_errors: n,
        };
        let mut tally = FunctionTally::default();
        // 11:59 is before the window; 12:00 is its first (partial) minute.
        let before = Some(Utc.with_ymd_and_hms(2026, 1, 7, 11, 59, 0).unwrap());
        assert_eq!(
            tally.add("f", &[bucket(before, 7), bucket(at(0), 1)], since),
            1
        );
        // The same bucket seen again with more errors, and a new one.
        assert_eq!(
            tally.add("f", &[bucket(at(0), 2), bucket(at(1), 3)], since),
            4
        );
        assert_eq!(
            tally.add("f", &[bucket(at(0), 2), bucket(at(1), 3)], since),
            0
        );
        assert_eq!(
            tally.add("g", &[bucket(at(1), 3)], since),
            3,
            "per function"
        );
        // A baseline's buckets are not new; their growth is.
        let mut tally = FunctionTally::default();
        tally.seed("f", &[bucket(at(0), 2)]);
        assert_eq!(tally.add("f", &[bucket(at(0), 2)], since), 0);
        assert_eq!(tally.add("f", &[bucket(at(0), 5)], since), 3);
    }
}
