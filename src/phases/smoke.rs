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

use crate::context::Context;
use crate::http_checks::{self, Expectation, HttpCheck};
use crate::manifest::expand;
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
    if let Some(frontend) = &ctx.manifest.frontend {
        if !frontend.routes.is_empty() {
            match frontend.url.as_deref().map(|u| expand(u, |n| ctx.env_var(n))) {
                None => problems.push(
                    CheckItem::new(
                        "route-url",
                        "Frontend routes answer",
                        Status::Fail,
                        "[[frontend.routes]] are listed but [frontend] url is not set",
                    )
                    .with_hint("set [frontend] url to the production site, e.g. url = \"https://app.example.com\""),
                ),
                Some(Err(missing)) => problems.push(missing_vars("route-url", "[frontend] url", &missing)),
                Some(Ok(base)) => {
                    let base = base.trim_end_matches('/').to_string();
                    for route in &frontend.routes {
                        let path = if route.path.starts_with('/') {
                            route.path.clone()
                        } else {
                            format!("/{}", route.path)
                        };
                        checks.push((
                            format!("route:{path}"),
                            HttpCheck {
                                name: format!("route {path}"),
                                method: "GET".into(),
                                url: format!("{base}{path}"),
                                headers: Vec::new(),
                                body: None,
                                expect: Expectation::Status(route.expect_status),
                                max_latency_ms: route.max_latency_ms,
                            },
                        ));
                    }
                }
            }
        }
    }
    let functions = &ctx.manifest.functions;
    if !functions.smoke.is_empty() {
        // The same URL rules as the `functions` phase's own invocations.
        let base = match (&functions.base_url, &ctx.settings.target_project_ref) {
            (Some(_), _) | (None, Some(_)) => invoke::base_url(
                functions.base_url.as_deref(),
                ctx.settings
                    .target_project_ref
                    .as_deref()
                    .unwrap_or_default(),
                |n| ctx.env_var(n),
            )
            .map_err(|missing| missing_vars("function-url", "[functions] base_url", &missing)),
            (None, None) => Err(CheckItem::new(
                "function-url",
                "Function endpoints answer",
                Status::Fail,
                format!(
                    "[[functions.smoke]] are listed but neither [functions] base_url nor {} is set",
                    ctx.settings.label("target-project-ref")
                ),
            )
            .with_hint("pass target-project-ref, or set [functions] base_url")),
        };
        match base {
            Err(item) => problems.push(item),
            Ok(base) => {
                let base = base.trim_end_matches('/').to_string();
                for smoke in &functions.smoke {
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
                        problems.push(missing_vars(
                            &id,
                            &format!("[[functions.smoke]] {:?} headers", smoke.name),
                            &missing,
                        ));
                        continue;
                    }
                    let expect = invoke::check_expectation(smoke);
                    checks.push((
                        id,
                        HttpCheck {
                            name: smoke.name.clone(),
                            method: smoke.method.to_ascii_uppercase(),
                            url: invoke::function_url(
                                &base,
                                &smoke.function,
                                smoke.path.as_deref(),
                            ),
                            headers,
                            body: smoke.body.clone(),
                            expect,
                            max_latency_ms: smoke.max_latency_ms,
                        },
                    ));
                }
            }
        }
    }
    (checks, problems)
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
        let request = format!("{} {}", check.method, check.url);
        let budget = check
            .max_latency_ms
            .map(|b| format!("{b} ms"))
            .unwrap_or_else(|| "—".into());
        if ctx.settings.dry_run {
            report.check(CheckItem::new(
                id,
                &check.name,
                Status::Skip,
                format!("dry run: would send {request}, expecting {}", check.expect),
            ));
            table.push([
                check.name.clone(),
                request,
                "—".into(),
                check.expect.to_string(),
                "—".into(),
                budget,
                "not sent (dry run)".into(),
            ]);
            continue;
        }
        let result = http_checks::run(&client, check).await;
        let status = result
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "—".into());
        let evidence = match &result.problem {
            None => format!("{request} → {status} in {} ms", result.latency_ms),
            Some(p) => format!("{request}: {p}"),
        };
        let mut item = CheckItem::new(
            id,
            &check.name,
            if result.passed {
                Status::Pass
            } else {
                Status::Fail
            },
            evidence,
        );
        if !result.passed {
            item = item.with_hint(
                "open the URL yourself; a 404 on a route usually means the SPA fallback (_redirects / rewrites) is missing",
            );
            passed = false;
        }
        report.check(item);
        table.push([
            check.name.clone(),
            request,
            status,
            check.expect.to_string(),
            format!("{} ms", result.latency_ms),
            budget,
            if result.passed {
                "✅".into()
            } else {
                format!("❌ {}", result.problem.unwrap_or_default())
            },
        ]);
    }
    report.tables.push(table);
    passed
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
