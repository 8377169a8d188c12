//! The pg_cron jobs a migration file schedules: calls of `cron.schedule(...)`
//! and `cron.schedule_in_database(...)`, for `plan` to list before `schema`
//! creates them on the target.
//!
//! Like [`super::sql_split`], this reads tokens, not grammar: a call counts
//! when it is outside comments and strings, at the top level of the file or
//! in the body of a `DO` block (which runs while the migration applies). A
//! call inside a function's body does not count: it schedules nothing until
//! someone calls the function. Arguments are read when they are string
//! literals (`'...'`, `E'...'`, dollar-quoted), optionally cast; anything
//! computed (`format(...)`, a variable) reads as unknown.

use super::sql_split::{Kind, Lexer, Token};

/// One scheduling call found in a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledJob {
    /// `cron.schedule` or `cron.schedule_in_database`.
    pub function: &'static str,
    /// The job's name; `None` for the unnamed two-argument form, or when the
    /// name is computed.
    pub name: Option<String>,
    /// The cron expression (`* * * * *`, `30 seconds`), when literal.
    pub schedule: Option<String>,
    /// The database the job runs in, when `schedule_in_database` names one.
    pub database: Option<String>,
    /// `false` when the call passes `active := false`: the job starts paused.
    pub active: bool,
    /// 1-based line of the call in the file.
    pub line: usize,
}

/// Finds the scheduling calls in `sql`, in file order.
pub fn scheduled_jobs(sql: &str) -> Vec<ScheduledJob> {
    let mut found = Vec::new();
    scan(sql, 0, 1, &mut found);
    found
}

/// Scans `sql[from..]`'s tokens; `first_line` is the line `from` is on.
fn scan(sql: &str, from: usize, first_line: usize, found: &mut Vec<ScheduledJob>) {
    let text = &sql[from..];
    let tokens: Vec<Token> = Lexer::new(text)
        .filter(|t| {
            !matches!(
                t.kind,
                Kind::Space | Kind::Comment | Kind::UnterminatedComment
            )
        })
        .collect();
    let word = |t: &Token| &text[t.start..t.end];
    let line_of = |at: usize| first_line + text[..at].bytes().filter(|&b| b == b'\n').count();
    let mut i = 0;
    while i < tokens.len() {
        if let Some((function, open)) = call_at(text, &tokens, i) {
            let (args, close) = arguments(text, &tokens, open);
            if let Some(job) = job_from(function, &args, line_of(tokens[i].start)) {
                found.push(job);
            }
            i = close + 1;
            continue;
        }
        let t = tokens[i];
        if t.kind == Kind::Literal && word(&t).starts_with('$') && follows_do(text, &tokens, i) {
            if let Some((body_start, _)) = dollar_body(word(&t)) {
                scan(
                    sql,
                    from + t.start + body_start,
                    line_of(t.start + body_start),
                    found,
                );
            }
        }
        i += 1;
    }
}

/// Whether the literal at `i` is the code of a `DO` block: `DO $$...$$` or
/// `DO LANGUAGE plpgsql $$...$$`.
fn follows_do(text: &str, tokens: &[Token], i: usize) -> bool {
    let is = |at: Option<usize>, keyword: &str| {
        at.and_then(|at| tokens.get(at)).is_some_and(|t| {
            t.kind == Kind::Word && text[t.start..t.end].eq_ignore_ascii_case(keyword)
        })
    };
    is(i.checked_sub(1), "do") || (is(i.checked_sub(2), "language") && is(i.checked_sub(3), "do"))
}

/// `cron . schedule (` or `cron . schedule_in_database (` at `i` (names
/// unquoted in any case, or double-quoted exactly): the function and the
/// index of the `(`.
fn call_at(text: &str, tokens: &[Token], i: usize) -> Option<(&'static str, usize)> {
    let name = |t: &Token| -> Option<String> {
        let raw = &text[t.start..t.end];
        match t.kind {
            Kind::Word => Some(raw.to_ascii_lowercase()),
            Kind::QuotedIdent if raw.len() >= 2 => {
                Some(raw[1..raw.len() - 1].replace("\"\"", "\""))
            }
            _ => None,
        }
    };
    let [schema, dot, function, open] = [i, i + 1, i + 2, i + 3].map(|k| tokens.get(k));
    if name(schema?)? != "cron" || &text[dot?.start..dot?.end] != "." {
        return None;
    }
    if open?.kind != Kind::OpenParen {
        return None;
    }
    match name(function?)?.as_str() {
        "schedule" => Some(("cron.schedule", i + 3)),
        "schedule_in_database" => Some(("cron.schedule_in_database", i + 3)),
        _ => None,
    }
}

/// One argument: its name when given as `name := value` or `name => value`,
/// and its value's tokens.
struct Argument<'a> {
    name: Option<String>,
    value: Vec<&'a str>,
    first_kind: Option<Kind>,
}

/// The arguments of the call whose `(` is at `open`, and the index of its
/// `)` (the last token when unclosed).
fn arguments<'a>(text: &'a str, tokens: &[Token], open: usize) -> (Vec<Argument<'a>>, usize) {
    let mut args = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut depth = 0usize;
    let mut i = open + 1;
    while i < tokens.len() {
        let t = tokens[i];
        match t.kind {
            Kind::OpenParen => depth += 1,
            Kind::CloseParen if depth == 0 => break,
            Kind::CloseParen => depth -= 1,
            Kind::Other if depth == 0 && &text[t.start..t.end] == "," => {
                args.push(argument(text, &current));
                current.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(t);
        i += 1;
    }
    if !current.is_empty() {
        args.push(argument(text, &current));
    }
    (args, i.min(tokens.len().saturating_sub(1)))
}

fn argument<'a>(text: &'a str, tokens: &[Token]) -> Argument<'a> {
    let raw: Vec<&str> = tokens.iter().map(|t| &text[t.start..t.end]).collect();
    let named = tokens.first().is_some_and(|t| t.kind == Kind::Word)
        && matches!(raw.get(1..3), Some([":", "="] | ["=", ">"]));
    let skip = if named { 3 } else { 0 };
    Argument {
        name: named.then(|| raw[0].to_ascii_lowercase()),
        value: raw[skip.min(raw.len())..].to_vec(),
        first_kind: tokens.get(skip).map(|t| t.kind),
    }
}

impl Argument<'_> {
    /// The value when it is a string literal, possibly followed by casts.
    fn text(&self) -> Option<String> {
        if self.first_kind != Some(Kind::Literal) {
            return None;
        }
        let casts_only = self.value[1..]
            .iter()
            .all(|t| *t == ":" || t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        casts_only.then(|| literal_value(self.value[0]))?
    }

    /// The value when it is the word `true` or `false`.
    fn boolean(&self) -> Option<bool> {
        match self.value.as_slice() {
            [w] if w.eq_ignore_ascii_case("true") => Some(true),
            [w] if w.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }
}

/// The body's byte range inside a dollar-quoted literal `$tag$...$tag$`.
fn dollar_body(literal: &str) -> Option<(usize, usize)> {
    let tag_end = literal[1..].find('$')? + 1;
    let delimiter = &literal[..=tag_end];
    let end = if literal.len() >= 2 * delimiter.len() && literal.ends_with(delimiter) {
        literal.len() - delimiter.len()
    } else {
        literal.len()
    };
    Some((tag_end + 1, end.max(tag_end + 1)))
}

/// The text a string literal stands for; `None` for an unterminated one.
fn literal_value(literal: &str) -> Option<String> {
    if literal.starts_with('$') {
        let (start, end) = dollar_body(literal)?;
        return Some(literal[start..end].to_string());
    }
    if let Some(body) = literal
        .strip_prefix(['e', 'E'])
        .and_then(|l| l.strip_prefix('\''))
    {
        let body = body.strip_suffix('\'')?;
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => {}
                },
                '\'' => {
                    chars.next();
                    out.push('\'');
                }
                c => out.push(c),
            }
        }
        return Some(out);
    }
    let body = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(body.replace("''", "'"))
}

/// Reads the call's arguments: positionally as pg_cron declares them, or by
/// name.
fn job_from(function: &'static str, args: &[Argument], line: usize) -> Option<ScheduledJob> {
    let positions: &[&str] = match (function, args.len()) {
        ("cron.schedule", 2) => &["schedule", "command"],
        ("cron.schedule", _) => &["job_name", "schedule", "command"],
        _ => &[
            "job_name", "schedule", "command", "database", "username", "active",
        ],
    };
    let mut by_name: Vec<(&str, &Argument)> = Vec::new();
    for (k, arg) in args.iter().enumerate() {
        match &arg.name {
            Some(n) => {
                let known = positions.iter().find(|p| **p == n.as_str()).copied();
                if let Some(p) = known {
                    by_name.push((p, arg));
                }
            }
            None => {
                if let Some(p) = positions.get(k) {
                    by_name.push((p, arg));
                }
            }
        }
    }
    let get = |name: &str| by_name.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
    if args.is_empty() {
        return None;
    }
    Some(ScheduledJob {
        function,
        name: get("job_name").and_then(Argument::text),
        schedule: get("schedule").and_then(Argument::text),
        database: get("database").and_then(Argument::text),
        active: get("active").and_then(Argument::boolean).unwrap_or(true),
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<(Option<String>, Option<String>, usize)> {
        scheduled_jobs(sql)
            .into_iter()
            .map(|j| (j.name, j.schedule, j.line))
            .collect()
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn finds_named_and_unnamed_schedules_with_their_lines() {
        let sql = "create table t (id int);\n\
                   select cron.schedule('purge', '* * * * *', $$delete from t$$);\n\
                   SELECT CRON.SCHEDULE('0 3 * * *', 'vacuum');\n";
        assert_eq!(
            names(sql),
            [
                (some("purge"), some("* * * * *"), 2),
                (None, some("0 3 * * *"), 3)
            ]
        );
    }

    #[test]
    fn reads_schedule_in_database_and_named_arguments() {
        let sql = "select cron.schedule_in_database('ping', '*/5 * * * *',
                     $cmd$select net.http_post(url := 'https://x.example/ping')$cmd$, 'postgres');
                   select cron.schedule(job_name := 'digest', schedule => '0 8 * * 1',
                     command := 'select 1');
                   select cron.schedule_in_database('off', '@daily', 'select 1', 'app', active := false);";
        let jobs = scheduled_jobs(sql);
        assert_eq!(jobs.len(), 3, "{jobs:?}");
        assert_eq!(jobs[0].function, "cron.schedule_in_database");
        assert_eq!(jobs[0].name.as_deref(), Some("ping"));
        assert_eq!(jobs[0].database.as_deref(), Some("postgres"));
        assert!(jobs[0].active);
        assert_eq!(jobs[1].name.as_deref(), Some("digest"));
        assert_eq!(jobs[1].schedule.as_deref(), Some("0 8 * * 1"));
        assert!(!jobs[2].active);
        assert_eq!(jobs[2].line, 5);
    }

    #[test]
    fn ignores_comments_strings_and_function_bodies() {
        let sql = "-- select cron.schedule('in-a-comment', '* * * * *', 'x');
                   /* cron.schedule('in-a-block', '* * * * *', 'x') */
                   select 'cron.schedule(''in-a-string'', ''* * * * *'', ''x'')';
                   create function later() returns void language sql
                     as $$ select cron.schedule('when-called', '* * * * *', 'x') $$;
                   select cron.unschedule('old');";
        assert!(scheduled_jobs(sql).is_empty(), "{:?}", scheduled_jobs(sql));
    }

    #[test]
    fn finds_calls_inside_do_blocks() {
        let sql = "do $$\nbegin\n  perform cron.schedule('from-do', '0 * * * *', 'select 1');\nend\n$$;\n\
                   DO LANGUAGE plpgsql $body$ begin perform \"cron\".\"schedule\"(E'it''s', '1 * * * *', 'x'); end $body$;";
        assert_eq!(
            names(sql),
            [
                (some("from-do"), some("0 * * * *"), 3),
                (some("it's"), some("1 * * * *"), 6)
            ]
        );
    }

    #[test]
    fn computed_arguments_read_as_unknown() {
        let sql = "select cron.schedule(format('job-%s', 1), '* * * * *'::text, 'select 1');";
        assert_eq!(names(sql), [(None, some("* * * * *"), 1)]);
    }

    #[test]
    fn unterminated_calls_do_not_panic() {
        for sql in [
            "select cron.schedule(",
            "select cron.schedule('a', '* * * * *', $$x",
            "select cron.schedule('a'",
            "cron.",
            "do $$",
        ] {
            let _ = scheduled_jobs(sql);
        }
        assert_eq!(
            names("select cron.schedule('a', 'b', 'c'"),
            [(some("a"), some("b"), 1)]
        );
    }
}
