//! Security lints as release checks: the target's findings (see
//! [`crate::pg::lints`]) matched against `[[lints.accept]]` and compared with
//! the source's, turned into checklist rows and a table.
//!
//! `cutover` blocks on an ERROR-level finding nobody accepted; `validate`
//! and `plan` only show them, so they stay checks of data and of intent.

use crate::context::Context;
use crate::manifest::LintAcceptance;
use crate::pg::Side;
use crate::pg::lints::{LintFinding, LintLevel};
use crate::report::{CheckItem, ReportTable, Status, count, emphasis};

use super::PhaseError;

/// A target finding with what the manifest and the source say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct AssessedFinding {
    /// The finding on the target.
    pub finding: LintFinding,
    /// `Some(true)`: the source does not have it (a migration brought it);
    /// `None`: the source was not linted.
    pub new: Option<bool>,
    /// The `[[lints.accept]] reason` that accepts it.
    pub accepted: Option<String>,
}

impl AssessedFinding {
    /// An ERROR-level finding no acceptance covers: it blocks `cutover`.
    pub fn blocks(&self) -> bool {
        self.finding.level == LintLevel::Error && self.accepted.is_none()
    }
}

/// The target's findings, assessed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Assessment {
    /// New findings first, then by level, lint and object.
    pub findings: Vec<AssessedFinding>,
    /// Acceptances that name no finding on the target (fixed, or misspelt).
    pub unmatched: Vec<LintAcceptance>,
}

/// Whether `accepted` (as written in the manifest) names `object`: exactly,
/// or a bare `name` for `public.name`, as `[data]` table names read.
pub fn object_matches(object: &str, accepted: &str) -> bool {
    let accepted = accepted.trim();
    object == accepted || object.strip_prefix("public.") == Some(accepted)
}

/// Matches the target's findings with the acceptances and the source's
/// findings (`None` when the source was not linted).
pub fn assess(
    target: Vec<LintFinding>,
    source: Option<&[LintFinding]>,
    accept: &[LintAcceptance],
) -> Assessment {
    let accepting = |f: &LintFinding| {
        accept
            .iter()
            .find(|a| a.lint == f.lint && object_matches(&f.object, &a.object))
    };
    let unmatched = accept
        .iter()
        .filter(|a| {
            !target
                .iter()
                .any(|f| a.lint == f.lint && object_matches(&f.object, &a.object))
        })
        .cloned()
        .collect();
    let mut findings: Vec<AssessedFinding> = target
        .into_iter()
        .map(|finding| AssessedFinding {
            new: source.map(|s| {
                !s.iter()
                    .any(|o| o.lint == finding.lint && o.object == finding.object)
            }),
            accepted: accepting(&finding).and_then(|a| a.reason.clone()),
            finding,
        })
        .collect();
    findings.sort_by(|a, b| {
        (b.new == Some(true))
            .cmp(&(a.new == Some(true)))
            .then_with(|| a.finding.level.cmp(&b.finding.level))
            .then_with(|| a.finding.lint.cmp(b.finding.lint))
            .then_with(|| a.finding.object.cmp(&b.finding.object))
    });
    Assessment {
        findings,
        unmatched,
    }
}

/// Lints the target (and the source, when its URL is given) and assesses
/// the findings against the manifest.
pub async fn assess_target(ctx: &mut Context, phase: &str) -> Result<Assessment, PhaseError> {
    let schemas = ctx.manifest.lints.exposed_schemas.clone();
    let target = ctx.target(phase, false).await?;
    let target_findings = target.security_lints(&schemas).await?;
    let source_findings = if ctx.display(Side::Source).is_some() {
        let source = ctx.source(phase).await?;
        Some(source.security_lints(&schemas).await?)
    } else {
        None
    };
    Ok(assess(
        target_findings,
        source_findings.as_deref(),
        &ctx.manifest.lints.accept,
    ))
}

fn describe(f: &AssessedFinding) -> String {
    format!(
        "{}{} {}",
        if f.new == Some(true) { "new: " } else { "" },
        f.finding.lint,
        f.finding.object
    )
}

/// The title of the gate's lint row.
pub const GATE_TITLE: &str = "No unaccepted ERROR-level security lints on the target";

/// The gate's rows: one that fails on an unaccepted ERROR finding, and a
/// warning for acceptances that name no finding.
pub fn gate_rows(a: &Assessment, schemas: &[String]) -> Vec<CheckItem> {
    let blocking: Vec<&AssessedFinding> = a.findings.iter().filter(|f| f.blocks()).collect();
    let accepted: Vec<&AssessedFinding> =
        a.findings.iter().filter(|f| f.accepted.is_some()).collect();
    let warnings = a
        .findings
        .iter()
        .filter(|f| f.finding.level == LintLevel::Warn && f.accepted.is_none())
        .count();
    let accepted_text = accepted
        .iter()
        .map(|f| {
            format!(
                "{} {} accepted: {}",
                f.finding.lint,
                f.finding.object,
                f.accepted.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut rows = vec![if blocking.is_empty() {
        CheckItem::new(
            "gate-lints",
            GATE_TITLE,
            Status::Pass,
            format!(
                "no open ERROR finding in {}{}; {}",
                schemas.join(", "),
                if accepted.is_empty() {
                    String::new()
                } else {
                    format!("; {accepted_text}")
                },
                count(warnings, "WARN finding", "WARN findings")
            ),
        )
    } else {
        CheckItem::new(
            "gate-lints",
            GATE_TITLE,
            Status::Fail,
            format!(
                "{} not accepted: {}",
                count(blocking.len(), "ERROR finding", "ERROR findings"),
                blocking
                    .iter()
                    .map(|f| describe(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_hint(format!(
            "{}; or, when it is intended, accept it in the manifest: [[lints.accept]] lint = \"{}\", object = \"{}\", reason = \"why\"",
            blocking[0].finding.fix, blocking[0].finding.lint, blocking[0].finding.object
        ))
    }];
    if !a.unmatched.is_empty() {
        rows.push(unmatched_row(a));
    }
    rows
}

fn unmatched_row(a: &Assessment) -> CheckItem {
    CheckItem::new(
        "lints-accept-unused",
        "Every [[lints.accept]] names a finding",
        Status::Warn,
        format!(
            "no finding on the target for {}",
            a.unmatched
                .iter()
                .map(|u| format!("{} {}", u.lint, u.object))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .with_hint("remove the acceptance if the finding was fixed, or correct its lint or object (as the lints table names it)")
}

/// `validate`'s and `plan`'s row: every open finding is a warning there.
pub fn report_rows(a: &Assessment) -> Vec<CheckItem> {
    let open: Vec<&AssessedFinding> = a.findings.iter().filter(|f| f.accepted.is_none()).collect();
    let errors = open
        .iter()
        .filter(|f| f.finding.level == LintLevel::Error)
        .count();
    let mut rows = vec![if open.is_empty() {
        CheckItem::new(
            "lints",
            "Security lints of the target",
            Status::Pass,
            format!(
                "no open finding ({} accepted)",
                a.findings.len() - open.len()
            ),
        )
    } else {
        CheckItem::new(
            "lints",
            "Security lints of the target",
            Status::Warn,
            format!(
                "{} open ({} ERROR, which block `cutover`): {}",
                count(open.len(), "finding", "findings"),
                errors,
                open.iter()
                    .map(|f| describe(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_hint("see the Security lints table for each fix; accept intended ones in [[lints.accept]] with a reason")
    }];
    if !a.unmatched.is_empty() {
        rows.push(unmatched_row(a));
    }
    rows
}

/// The findings table, new ones first; `None` when there is none.
pub fn table(a: &Assessment) -> Option<ReportTable> {
    if a.findings.is_empty() {
        return None;
    }
    let mut t = ReportTable::new(
        "Security lints",
        &["Level", "Lint", "Object", "Source", "What", "Fix or acceptance"],
    )
    .with_note("Our SQL, modelled on Supabase's database advisor lints, over the exposed schemas ([lints] exposed_schemas). ERROR findings block `cutover` unless accepted in [[lints.accept]].");
    for f in &a.findings {
        t.push([
            f.finding.level.word().to_string(),
            f.finding.lint.to_string(),
            f.finding.object.clone(),
            match f.new {
                Some(true) => emphasis("new"),
                Some(false) => "also on source".into(),
                None => "not compared".into(),
            },
            f.finding.detail.clone(),
            match &f.accepted {
                Some(reason) => format!("accepted: {reason}"),
                None => f.finding.fix.clone(),
            },
        ]);
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(lint: &'static str, level: LintLevel, object: &str) -> LintFinding {
        LintFinding {
            lint,
            level,
            object: object.into(),
            detail: "d".into(),
            fix: "f".into(),
        }
    }

    fn accept(lint: &str, object: &str) -> LintAcceptance {
        LintAcceptance {
            lint: lint.into(),
            object: object.into(),
            reason: Some("lookup table".into()),
        }
    }

    #[test]
    fn acceptance_matches_lint_and_object_exactly_or_bare_public_name() {
        assert!(object_matches(
            "public.country_codes",
            "public.country_codes"
        ));
        assert!(object_matches("public.country_codes", "country_codes"));
        assert!(!object_matches("app.country_codes", "country_codes"));
        assert!(!object_matches("public.country_codes", "public.country"));
        let a = assess(
            vec![
                finding("rls_disabled_in_public", LintLevel::Error, "public.codes"),
                finding("no_primary_key", LintLevel::Warn, "public.codes"),
            ],
            None,
            &[accept("rls_disabled_in_public", "codes")],
        );
        assert_eq!(a.findings[0].accepted.as_deref(), Some("lookup table"));
        assert!(a.findings.iter().all(|f| !f.blocks()));
        assert_eq!(a.findings[1].accepted, None, "another lint is not accepted");
        assert!(a.unmatched.is_empty());
    }

    #[test]
    fn an_acceptance_naming_no_finding_is_a_warning_and_errors_block() {
        let a = assess(
            vec![finding(
                "rls_disabled_in_public",
                LintLevel::Error,
                "public.notes",
            )],
            None,
            &[accept("rls_disabled_in_public", "public.gone")],
        );
        assert_eq!(a.unmatched.len(), 1);
        let rows = gate_rows(&a, &["public".into()]);
        assert_eq!(rows[0].status, Status::Fail);
        assert!(rows[0].evidence.contains("public.notes"), "{rows:?}");
        assert_eq!(rows[1].status, Status::Warn);
        assert!(rows[1].evidence.contains("public.gone"));
        assert_eq!(report_rows(&a)[0].status, Status::Warn);
    }

    #[test]
    fn findings_new_since_the_source_come_first() {
        let a = assess(
            vec![
                finding("extension_in_public", LintLevel::Warn, "pg_trgm"),
                finding("rls_disabled_in_public", LintLevel::Error, "public.a"),
                finding("rls_disabled_in_public", LintLevel::Error, "public.b"),
            ],
            Some(&[finding(
                "rls_disabled_in_public",
                LintLevel::Error,
                "public.a",
            )]),
            &[],
        );
        let order: Vec<(&str, Option<bool>)> = a
            .findings
            .iter()
            .map(|f| (f.finding.object.as_str(), f.new))
            .collect();
        assert_eq!(
            order,
            [
                ("public.b", Some(true)),
                ("pg_trgm", Some(true)),
                ("public.a", Some(false))
            ]
        );
        assert!(
            gate_rows(&a, &[])[0]
                .evidence
                .contains("new: rls_disabled_in_public public.b")
        );
    }
}
