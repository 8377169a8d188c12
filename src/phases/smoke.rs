//! `smoke`: the runbooks' "critical route tests" and function invocations
//! as HTTP checks, each with an expected status and a latency budget.
//!
//! Routes are `[[frontend.routes]]` below `[frontend] url`; function checks are
//! `[[functions.smoke]]` below `[functions] base_url` (default
//! `https://<target-project-ref>.supabase.co/functions/v1`). Header values may
//! be `${VAR}` references to the job's environment; those values are
//! registered as secrets by the context and never shown. `cutover` runs the
//! same checks through [`run_checks`].

use std::time::Duration;

use crate::cells;
use crate::context::Context;
use crate::http_checks::{self, Expectation, HttpCheck, HttpCheckResult};
use crate::manifest::{FrontendSection, FunctionSmoke, expand};
use crate::report::Cell;
use crate::report::{CheckItem, PhaseReport, ReportTable, Status};
use crate::supabase::invoke;

use super::PhaseError;

/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The checks the manifest asks for, and rows for what keeps one from being
/// built (a missing URL or variable).
pub fn plan(ctx: &Context) -> (Vec<(String, HttpCheck)>, Vec<CheckItem>) {
    let mut checks = Vec::new();
    let mut problems = Vec::new();
    if let Some(frontend) = ctx
        .manifest
        .frontend
        .as_ref()
        .filter(|f| !f.routes.is_empty())
    {
        match route_checks(ctx, frontend) {
            Ok(routes) => checks.extend(routes),
            Err(problem) => problems.push(problem),
        }
    }
    if !ctx.manifest.functions.smoke.is_empty() {
        match functions_base(ctx) {
            Err(item) => problems.push(item),
            Ok(base) => {
                for smoke in &ctx.manifest.functions.smoke {
                    match function_check(ctx, &base, smoke) {
                        Ok(check) => checks.push(check),
                        Err(problem) => problems.push(problem),
                    }
                }
            }
        }
    }
    (checks, problems)
}

/// A `GET` per `[[frontend.routes]]` below `[frontend] url`.
fn route_checks(
    ctx: &Context,
    frontend: &FrontendSection,
) -> Result<Vec<(String, HttpCheck)>, CheckItem> {
    let base = match frontend
        .url
        .as_deref()
        .map(|u| expand(u, |n| ctx.env_var(n)))
    {
        None => {
            return Err(CheckItem::new(
                "route-url",
                "Frontend routes answer",
                Status::Fail,
                "[[frontend.routes]] are listed but [frontend] url is not set",
            )
            .with_hint(
                "set [frontend] url to the production site, e.g. url = \"https://app.example.com\"",
            ));
        }
        Some(Err(missing)) => return Err(missing_vars("route-url", "[frontend] url", &missing)),
        Some(Ok(base)) => base,
    };
    let base = base.trim_end_matches('/');
    Ok(frontend
        .routes
        .iter()
        .map(|route| {
            let path = route_path(&route.path);
            let check = HttpCheck {
                name: format!("route {path}"),
                method: "GET".into(),
                url: format!("{base}{path}"),
                headers: Vec::new(),
                body: None,
                expect: Expectation::Status(route.expect_status),
                max_latency_ms: route.max_latency_ms,
            };
            (format!("route:{path}"), check)
        })
        .collect())
}

/// A route's path with its leading `/`.
fn route_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// The functions base URL, by the same rules as the `functions` phase's own
/// invocations, without its trailing `/`.
fn functions_base(ctx: &Context) -> Result<String, CheckItem> {
    let functions = &ctx.manifest.functions;
    let target = ctx.settings.target_project_ref.as_deref();
    if functions.base_url.is_none() && target.is_none() {
        return Err(CheckItem::new(
            "function-url",
            "Function endpoints answer",
            Status::Fail,
            format!(
                "[[functions.smoke]] are listed but neither [functions] base_url nor {} is set",
                ctx.settings.label("target-project-ref")
            ),
        )
        .with_hint("pass target-project-ref, or set [functions] base_url"));
    }
    invoke::base_url(
        functions.base_url.as_deref(),
        target.unwrap_or_default(),
        |n| ctx.env_var(n),
    )
    .map(|base| base.trim_end_matches('/').to_string())
    .map_err(|missing| missing_vars("function-url", "[functions] base_url", &missing))
}

/// One `[[functions.smoke]]` invocation as a check, or a row naming the
/// header variables that are not set.
fn function_check(
    ctx: &Context,
    base: &str,
    smoke: &FunctionSmoke,
) -> Result<(String, HttpCheck), CheckItem> {
    let id = format!("function:{}", smoke.name);
    let mut headers = Vec::new();
    let mut missing = Vec::new();
    for (name, value) in &smoke.headers {
        match expand(value, |n| ctx.env_var(n)) {
            Ok(v) => headers.push((name.clone(), v)),
            Err(m) => missing.extend(m),
        }
    }
    if !missing.is_empty() {
        let what = format!("[[functions.smoke]] {:?} headers", smoke.name);
        return Err(missing_vars(&id, &what, &missing));
    }
    let check = HttpCheck {
        name: smoke.name.clone(),
        method: smoke.method.to_ascii_uppercase(),
        url: invoke::function_url(base, &smoke.function, smoke.path.as_deref()),
        headers,
        body: smoke.body.clone(),
        expect: invoke::check_expectation(smoke),
        max_latency_ms: smoke.max_latency_ms,
    };
    Ok((id, check))
}

fn missing_vars(id: &str, what: &str, missing: &[String]) -> CheckItem {
    CheckItem::new(
        id,
        "Smoke check can be built",
        Status::Fail,
        format!(
            "{what} reference{} {} that {} not set",
            if missing.len() == 1 { "s" } else { "" },
            missing
                .iter()
                .map(|m| format!("${{{m}}}"))
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        ),
    )
    .with_hint(
        "set the variables in the workflow step's `env:` (from the environment's secrets or vars)",
    )
}

/// Runs the smoke checks (or, with dry-run, lists them), adding a row per
/// check and the table. Returns whether every check passed.
pub async fn run_checks(ctx: &Context, report: &mut PhaseReport) -> bool {
    let (checks, problems) = plan(ctx);
    let mut passed = problems.is_empty();
    for p in problems {
        report.check(p);
    }
    if checks.is_empty() {
        if passed {
            report.check(CheckItem::new(
                "smoke",
                "Smoke checks",
                Status::Skip,
                "nothing to check: the manifest lists no [[frontend.routes]] and no [[functions.smoke]]",
            ));
        }
        return passed;
    }
    let mut table = ReportTable::new(
        "Smoke checks",
        &[
            "Check", "Request", "Status", "Expected", "Latency", "Budget", "Result",
        ],
    );
    let client = http_checks::client(REQUEST_TIMEOUT);
    for (id, check) in &checks {
        let (item, line) = if ctx.settings.dry_run {
            not_sent(id, check)
        } else {
            answered(id, check, http_checks::run(&client, check).await)
        };
        passed &= item.status != Status::Fail;
        report.check(item);
        table.push(line);
    }
    report.tables.push(table);
    passed
}

/// `GET https://…`, as the rows and the table show a request.
fn request_text(check: &HttpCheck) -> String {
    format!("{} {}", check.method, check.url)
}

/// The latency budget cell.
fn budget_cell(check: &HttpCheck) -> String {
    check
        .max_latency_ms
        .map(|b| format!("{b} ms"))
        .unwrap_or_else(|| "—".into())
}

/// Dry run: the row and table line of a check that is listed, not sent.
fn not_sent(id: &str, check: &HttpCheck) -> (CheckItem, Vec<Cell>) {
    let request = request_text(check);
    let item = CheckItem::new(
        id,
        &check.name,
        Status::Skip,
        format!("dry run: would send {request}, expecting {}", check.expect),
    );
    let line = cells![
        check.name.clone(),
        request,
        "—",
        check.expect.to_string(),
        "—",
        budget_cell(check),
        "not sent (dry run)",
    ];
    (item, line)
}

/// The row and table line of a check that was sent.
fn answered(id: &str, check: &HttpCheck, result: HttpCheckResult) -> (CheckItem, Vec<Cell>) {
    let request = request_text(check);
    let status = result
        .status
        .map(|s| s.to_string())
        .unwrap_or_else(|| "—".into());
    let evidence = match &result.problem {
        None => format!("{request} → {status} in {} ms", result.latency_ms),
        Some(p) => format!("{request}: {p}"),
    };
    let item = if result.passed {
        CheckItem::new(id, &check.name, Status::Pass, evidence)
    } else {
        CheckItem::new(id, &check.name, Status::Fail, evidence).with_hint(
            "open the URL yourself; a 404 on a route usually means the SPA fallback (_redirects / rewrites) is missing",
        )
    };
    let line = cells![
        check.name.clone(),
        request,
        status,
        check.expect.to_string(),
        format!("{} ms", result.latency_ms),
        budget_cell(check),
        if result.passed {
            Cell::verdict(Status::Pass)
        } else {
            Cell::verdict_because(Status::Fail, result.problem.unwrap_or_default())
        },
    ];
    (item, line)
}

/// Runs `smoke`.
pub async fn run(ctx: &mut Context) -> Result<PhaseReport, PhaseError> {
    let mut report = PhaseReport::new("smoke");
    let passed = run_checks(ctx, &mut report).await;
    let sent = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Skip)
        .count();
    report.summary = if ctx.settings.dry_run {
        format!(
            "Dry run: {} check(s) listed, none sent.",
            report.checks.len()
        )
    } else if passed {
        format!("{sent} check(s) answered as expected.")
    } else {
        "Some checks failed: see the rows and the table.".into()
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(budget: Option<u64>) -> HttpCheck {
        HttpCheck {
            name: "route /".into(),
            method: "GET".into(),
            url: "https://app.example.com/".into(),
            headers: Vec::new(),
            body: None,
            expect: Expectation::Status(200),
            max_latency_ms: budget,
        }
    }

    #[test]
    fn routes_get_a_leading_slash() {
        assert_eq!(route_path("pricing"), "/pricing");
        assert_eq!(route_path("/"), "/");
    }

    #[test]
    fn a_dry_run_lists_the_request_without_sending_it() {
        let (item, line) = not_sent("route:/", &check(Some(800)));
        assert_eq!(item.status, Status::Skip);
        assert!(
            item.evidence
                .starts_with("dry run: would send GET https://app.example.com/")
        );
        assert_eq!(line[5], "800 ms");
        assert_eq!(line[6], "not sent (dry run)");
    }

    #[test]
    fn a_failed_answer_fails_with_the_problem() {
        let result = HttpCheckResult {
            status: Some(404),
            latency_ms: 12,
            passed: false,
            problem: Some("expected 200".into()),
        };
        let (item, line) = answered("route:/", &check(None), result);
        assert_eq!(item.status, Status::Fail);
        assert_eq!(item.evidence, "GET https://app.example.com/: expected 200");
        assert_eq!(line[5], "—");
        assert_eq!(line[6], "❌ expected 200");
        let ok = HttpCheckResult {
            status: Some(200),
            latency_ms: 12,
            passed: true,
            problem: None,
        };
        let (item, _) = answered("route:/", &check(None), ok);
        assert_eq!(item.evidence, "GET https://app.example.com/ → 200 in 12 ms");
    }
}
