//! Splitting a migration file into statements, the way the Supabase CLI
//! records them in `supabase_migrations.schema_migrations.statements`.
//!
//! This is a lexer, not a parser: it knows just enough of PostgreSQL's lexical
//! rules (quotes, dollar quotes, nested comments, parentheses and SQL-standard
//! `BEGIN ATOMIC ... END` bodies) to tell a `;` that ends a statement from one
//! that is data. It never fails: an unterminated quote or comment runs to the
//! end of the input, so that the database, which knows the grammar, reports
//! the mistake instead of this module guessing at it.
//!
//! Everything is scanned as bytes. That is safe for UTF-8 because every byte
//! the lexer stops at is ASCII, and ASCII bytes never occur inside a
//! multi-byte character, so each slice taken starts and ends on a character
//! boundary.

/// One statement of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement without its `;`, from its first token to its last:
    /// whitespace and comments around it are left out, comments inside kept.
    pub text: String,
    /// 1-based line of the file where the statement's first token (its first
    /// character that is neither whitespace nor comment) is.
    pub line: usize,
    /// 0-based position among the file's statements.
    pub index: usize,
    /// Whether the statement cannot run inside a transaction block; see
    /// [`non_transactional_reason`].
    pub needs_no_transaction: bool,
}

/// Splits `sql` into statements on the `;`s outside quotes, comments,
/// parentheses and `BEGIN ATOMIC ... END` bodies. Statements holding nothing
/// but whitespace and comments are dropped; a last statement without `;` is
/// kept.
pub fn split(sql: &str) -> Vec<Statement> {
    let mut statements = Vec::new();
    let mut lines = LineCounter::new();
    let mut current = Pending::default();
    for token in Lexer::new(sql) {
        match token.kind {
            Kind::Space | Kind::Comment => continue,
            // Kept so that the server reports the unterminated comment; on
            // its own it is still only a comment, and dropped.
            Kind::UnterminatedComment => {
                if current.start.is_some() {
                    current.end = token.end;
                }
                continue;
            }
            Kind::Semicolon if current.parens == 0 && current.atomic == 0 => {
                current.finish(sql, &mut statements);
                continue;
            }
            _ => {}
        }
        current.push(sql, token, &mut lines);
    }
    current.finish(sql, &mut statements);
    statements
}

/// Why a statement cannot run inside a transaction block, if it cannot: the
/// message PostgreSQL 15 gives when one is tried. Looks at the statement's
/// first keywords, after any leading whitespace and comments, ignoring case.
///
/// `ALTER TYPE ... ADD VALUE` is not reported: since PostgreSQL 12 it runs
/// in a transaction block (the new value just cannot be used before commit).
/// `CLUSTER` without a table and `CREATE SUBSCRIPTION` are not reported
/// either: whether they can run depends on more than their first keywords.
pub fn non_transactional_reason(statement: &str) -> Option<&'static str> {
    let tokens: Vec<(Kind, &str)> = Lexer::new(statement)
        .filter(|t| t.kind.is_significant())
        .take_while(|t| t.kind != Kind::Semicolon)
        .map(|t| (t.kind, &statement[t.start..t.end]))
        .collect();
    let is = |i: usize, keyword: &str| is_keyword(&tokens, i, keyword);

    if is(0, "create") {
        let index = if is(1, "unique") { 2 } else { 1 };
        if is(index, "index") && is(index + 1, "concurrently") {
            return Some("CREATE INDEX CONCURRENTLY cannot run inside a transaction block");
        }
        if is(1, "database") {
            return Some("CREATE DATABASE cannot run inside a transaction block");
        }
        if is(1, "tablespace") {
            return Some("CREATE TABLESPACE cannot run inside a transaction block");
        }
    } else if is(0, "drop") {
        if is(1, "index") && is(2, "concurrently") {
            return Some("DROP INDEX CONCURRENTLY cannot run inside a transaction block");
        }
        if is(1, "database") {
            return Some("DROP DATABASE cannot run inside a transaction block");
        }
        if is(1, "tablespace") {
            return Some("DROP TABLESPACE cannot run inside a transaction block");
        }
    } else if is(0, "reindex") {
        return reindex_reason(&tokens);
    } else if is(0, "vacuum") {
        return Some("VACUUM cannot run inside a transaction block");
    } else if is(0, "alter") {
        if is(1, "system") {
            return Some("ALTER SYSTEM cannot run inside a transaction block");
        }
        // ALTER DATABASE name SET TABLESPACE moves files; SET of a
        // parameter is an ordinary catalog change.
        if is(1, "database") && is(3, "set") && is(4, "tablespace") {
            return Some("ALTER DATABASE SET TABLESPACE cannot run inside a transaction block");
        }
        if is(1, "table") {
            let detach = (2..tokens.len()).find(|&i| is(i, "detach") && is(i + 1, "partition"));
            if detach.is_some_and(|d| (d + 2..tokens.len()).any(|i| is(i, "concurrently"))) {
                return Some(
                    "ALTER TABLE ... DETACH CONCURRENTLY cannot run inside a transaction block",
                );
            }
        }
    } else if is(1, "prepared") {
        if is(0, "commit") {
            return Some("COMMIT PREPARED cannot run inside a transaction block");
        }
        if is(0, "rollback") {
            return Some("ROLLBACK PREPARED cannot run inside a transaction block");
        }
    }
    None
}

/// `REINDEX [ ( option [, ...] ) ] { INDEX | TABLE | SCHEMA | DATABASE |
/// SYSTEM } [ CONCURRENTLY ] name`, where CONCURRENTLY may also be an option,
/// with an optional boolean value.
fn reindex_reason(tokens: &[(Kind, &str)]) -> Option<&'static str> {
    let is = |i: usize, keyword: &str| is_keyword(tokens, i, keyword);
    let mut concurrently = false;
    let mut target = 1;
    if matches!(tokens.get(1), Some((Kind::OpenParen, _))) {
        let mut i = 2;
        let mut option_start = true;
        while i < tokens.len() && tokens[i].0 != Kind::CloseParen {
            if option_start && is(i, "concurrently") {
                let value = tokens
                    .get(i + 1)
                    .map_or("", |&(_, text)| text.trim_matches('\''));
                concurrently = !["false", "off", "0"]
                    .iter()
                    .any(|off| value.eq_ignore_ascii_case(off));
            }
            option_start = tokens[i].1 == ",";
            i += 1;
        }
        target = i + 1;
    }
    if concurrently || is(target + 1, "concurrently") {
        Some("REINDEX CONCURRENTLY cannot run inside a transaction block")
    } else if is(target, "schema") {
        Some("REINDEX SCHEMA cannot run inside a transaction block")
    } else if is(target, "database") {
        Some("REINDEX DATABASE cannot run inside a transaction block")
    } else if is(target, "system") {
        Some("REINDEX SYSTEM cannot run inside a transaction block")
    } else {
        None
    }
}

/// Whether `tokens[i]` is the word `keyword`, in any case. Only bare words
/// are keywords: `"concurrently"` is a name.
fn is_keyword(tokens: &[(Kind, &str)], i: usize, keyword: &str) -> bool {
    tokens
        .get(i)
        .is_some_and(|&(kind, text)| kind == Kind::Word && text.eq_ignore_ascii_case(keyword))
}

/// The statement being collected by [`split`].
#[derive(Debug, Default)]
struct Pending {
    /// Byte offset and line of the first token, once there is one.
    start: Option<(usize, usize)>,
    /// Byte offset just past the last token.
    end: usize,
    /// How far the first keywords match CREATE [OR REPLACE] FUNCTION.
    head: Head,
    /// Open parentheses: like psql, a `;` inside them does not end the
    /// statement (CREATE RULE ... DO (a; b) needs that).
    parens: usize,
    /// Open BEGIN ATOMIC bodies plus the CASEs open inside them, since both
    /// close with END.
    atomic: usize,
    /// The previous token was the word BEGIN, in a routine's definition.
    after_begin: bool,
}

impl Pending {
    /// Adds a token that is neither whitespace, comment, nor a `;` that
    /// ends the statement.
    fn push(&mut self, sql: &str, token: Token, lines: &mut LineCounter) {
        if self.start.is_none() {
            self.start = Some((token.start, lines.line_at(sql, token.start)));
        }
        self.end = token.end;
        let word = (token.kind == Kind::Word).then(|| &sql[token.start..token.end]);
        self.head = self.head.next(word);
        let after_begin = std::mem::take(&mut self.after_begin);
        match token.kind {
            Kind::OpenParen => self.parens += 1,
            Kind::CloseParen => self.parens = self.parens.saturating_sub(1),
            _ => {}
        }
        // Only a routine's definition has a BEGIN ATOMIC body; elsewhere
        // BEGIN starts a transaction and END may be a column label.
        let (Head::Routine, Some(word)) = (self.head, word) else {
            return;
        };
        let opens_atomic = after_begin && word.eq_ignore_ascii_case("atomic");
        // A CASE outside a body is an expression (RETURN CASE ... END), and
        // its END closes nothing that counts.
        let opens_case = self.atomic > 0 && word.eq_ignore_ascii_case("case");
        if opens_atomic || opens_case {
            self.atomic += 1;
        } else if self.atomic > 0 && word.eq_ignore_ascii_case("end") {
            self.atomic -= 1;
        }
        // Whitespace and comments may separate BEGIN from ATOMIC; they never
        // reach `push`, so they leave this flag alone.
        self.after_begin = word.eq_ignore_ascii_case("begin");
    }

    /// Emits the statement, if it has any token, and starts a new one.
    fn finish(&mut self, sql: &str, statements: &mut Vec<Statement>) {
        let done = std::mem::take(self);
        let Some((start, line)) = done.start else {
            return;
        };
        // Only an unterminated string or quoted name can end in whitespace.
        let text = sql[start..done.end].trim_end_matches(is_space_char);
        statements.push(Statement {
            text: text.to_string(),
            line,
            index: statements.len(),
            needs_no_transaction: non_transactional_reason(text).is_some(),
        });
    }
}

/// How far a statement's first words match `CREATE [OR REPLACE] {FUNCTION |
/// PROCEDURE}`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Head {
    #[default]
    Start,
    AfterCreate,
    AfterOr,
    AfterReplace,
    /// The statement defines a function or procedure.
    Routine,
    /// It does not.
    Other,
}

impl Head {
    /// The state after one more token; `word` is its text if it is a word.
    fn next(self, word: Option<&str>) -> Head {
        let is = |keyword: &str| word.is_some_and(|w| w.eq_ignore_ascii_case(keyword));
        match self {
            Head::Start if is("create") => Head::AfterCreate,
            Head::AfterCreate if is("or") => Head::AfterOr,
            Head::AfterOr if is("replace") => Head::AfterReplace,
            Head::AfterCreate | Head::AfterReplace if is("function") || is("procedure") => {
                Head::Routine
            }
            Head::Routine => Head::Routine,
            _ => Head::Other,
        }
    }
}

/// Finds line numbers for increasing byte offsets without rescanning.
#[derive(Debug)]
struct LineCounter {
    pos: usize,
    line: usize,
}

impl LineCounter {
    fn new() -> Self {
        LineCounter { pos: 0, line: 1 }
    }

    /// The 1-based line of `pos`; `pos` must not be below the last one asked.
    /// Only `\n` ends a line, so CRLF counts once and a line here is a line
    /// of [`str::lines`].
    fn line_at(&mut self, sql: &str, pos: usize) -> usize {
        let skipped = sql.as_bytes().get(self.pos..pos).unwrap_or_default();
        self.line += skipped.iter().filter(|&&b| b == b'\n').count();
        self.pos = pos.max(self.pos);
        self.line
    }
}

/// What a token is, as far as splitting cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Spaces, tabs and line breaks.
    Space,
    /// `-- ...` up to the line break, or a closed `/* ... */`.
    Comment,
    /// `/* ...` to the end of the input.
    UnterminatedComment,
    /// Identifier, keyword or number.
    Word,
    /// `"..."`.
    QuotedIdent,
    /// `'...'`, `E'...'` or a dollar-quoted string.
    Literal,
    Semicolon,
    OpenParen,
    CloseParen,
    /// Anything else: operators, punctuation, `$1` parameters.
    Other,
}

impl Kind {
    /// Whether the token is part of a statement rather than space around it.
    fn is_significant(self) -> bool {
        !matches!(
            self,
            Kind::Space | Kind::Comment | Kind::UnterminatedComment
        )
    }
}

/// A token: its kind and byte range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    /// What it is.
    pub(crate) kind: Kind,
    /// Byte offset of its first byte.
    pub(crate) start: usize,
    /// Byte offset just past it.
    pub(crate) end: usize,
}

/// Cuts SQL into tokens, following PostgreSQL's lexer (scan.l) where it
/// matters for finding statement boundaries.
pub(crate) struct Lexer<'a> {
    sql: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer over `sql` from its start.
    pub(crate) fn new(sql: &'a str) -> Self {
        Lexer { sql, pos: 0 }
    }

    /// `$1`, `$tag$...$tag$`, `$$...$$`, or a lone `$`.
    fn dollar(&self, start: usize) -> (Kind, usize) {
        let bytes = self.sql.as_bytes();
        let after = start + 1;
        let tag_end = match bytes.get(after) {
            Some(b'$') => after,
            Some(&b) if is_ident_start(b) => {
                let end = skip_while(bytes, after, is_tag_cont);
                if bytes.get(end) != Some(&b'$') {
                    return (Kind::Other, after);
                }
                end
            }
            Some(b) if b.is_ascii_digit() => {
                return (
                    Kind::Other,
                    skip_while(bytes, after, |b| b.is_ascii_digit()),
                );
            }
            _ => return (Kind::Other, after),
        };
        let delimiter = &self.sql[start..=tag_end];
        let body = tag_end + 1;
        let end = self.sql[body..]
            .find(delimiter)
            .map_or(self.sql.len(), |at| body + at + delimiter.len());
        (Kind::Literal, end)
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let bytes = self.sql.as_bytes();
        let start = self.pos;
        let &first = bytes.get(start)?;
        let second = bytes.get(start + 1).copied();
        // Every arm consumes at least one byte, so the lexer always ends.
        let (kind, end) = match (first, second) {
            (b, _) if is_space(b) => (Kind::Space, skip_while(bytes, start, is_space)),
            (b'-', Some(b'-')) => {
                let end = bytes[start..]
                    .iter()
                    .position(|&b| b == b'\n' || b == b'\r')
                    .map_or(bytes.len(), |at| start + at);
                (Kind::Comment, end)
            }
            (b'/', Some(b'*')) => block_comment(bytes, start),
            (b'\'', _) => (Kind::Literal, quoted_end(bytes, start + 1, b'\'')),
            (b'"', _) => (Kind::QuotedIdent, quoted_end(bytes, start + 1, b'"')),
            // A word would have swallowed an `e` inside it, so this one
            // stands alone: an escape string.
            (b'e' | b'E', Some(b'\'')) => (Kind::Literal, escape_string_end(bytes, start + 2)),
            (b'$', _) => self.dollar(start),
            (b';', _) => (Kind::Semicolon, start + 1),
            (b'(', _) => (Kind::OpenParen, start + 1),
            (b')', _) => (Kind::CloseParen, start + 1),
            (b, _) if is_ident_start(b) => (Kind::Word, skip_while(bytes, start, is_ident_cont)),
            (b, _) if b.is_ascii_digit() => (Kind::Word, skip_while(bytes, start, is_number_cont)),
            // Non-ASCII bytes start words, so this is one ASCII byte.
            _ => (Kind::Other, start + 1),
        };
        self.pos = end;
        Some(Token { kind, start, end })
    }
}

/// PostgreSQL's whitespace: space, tab, newline, carriage return, vertical
/// tab, form feed. Unicode spaces are identifier characters to it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// [`is_space`] for `char`s.
fn is_space_char(c: char) -> bool {
    u8::try_from(c).is_ok_and(is_space)
}

/// Bytes that may start an identifier or a dollar-quote tag; every byte of a
/// non-ASCII character counts, as in PostgreSQL.
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// Bytes that may continue a dollar-quote tag.
fn is_tag_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// Bytes that may continue an identifier: unlike a tag, it may hold `$`, so
/// `a$b$` is one identifier and not the start of a dollar quote.
fn is_ident_cont(b: u8) -> bool {
    is_tag_cont(b) || b == b'$'
}

/// Bytes of a number, loosely: `1`, `1.5`, `1e10`, `0x1F`, `1_000`.
fn is_number_cont(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// The offset of the first byte from `start` on that fails `keep`.
fn skip_while(bytes: &[u8], start: usize, keep: impl Fn(u8) -> bool) -> usize {
    bytes
        .get(start..)
        .and_then(|rest| rest.iter().position(|&b| !keep(b)))
        .map_or(bytes.len(), |at| start + at)
}

/// The end of a `'...'` or `"..."` whose body starts at `from`; a doubled
/// quote is part of the body.
fn quoted_end(bytes: &[u8], from: usize, quote: u8) -> usize {
    let mut i = from;
    while let Some(at) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == quote))
    {
        let at = i + at;
        if bytes.get(at + 1) == Some(&quote) {
            i = at + 2;
        } else {
            return at + 1;
        }
    }
    bytes.len()
}

/// The end of an `E'...'` whose body starts at `from`: a backslash escapes
/// the next byte, and a doubled quote is part of the body too.
fn escape_string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A block comment starting at `start`. They nest, as the SQL standard
/// says and PostgreSQL does, unlike C's.
fn block_comment(bytes: &[u8], start: usize) -> (Kind, usize) {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return (Kind::Comment, i);
                }
            }
            _ => i += 1,
        }
    }
    (Kind::UnterminatedComment, bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn quotes_hide_semicolons() {
        assert_eq!(
            texts("select 'a;b', 'it''s; ok'; select \"x;\"\"y\" from t;select 1"),
            [
                "select 'a;b', 'it''s; ok'",
                "select \"x;\"\"y\" from t",
                "select 1"
            ]
        );
        // Without E, a backslash is an ordinary character and ends nothing.
        assert_eq!(texts(r"select '\'; select 2"), [r"select '\'", "select 2"]);
    }

    #[test]
    fn escape_strings_use_backslashes() {
        assert_eq!(
            texts(r"select E'it\'s; fine'; select e'\\'; select E'a''b;c'; select 3"),
            [
                r"select E'it\'s; fine'",
                r"select e'\\'",
                "select E'a''b;c'",
                "select 3"
            ]
        );
        // An identifier ending in e is no escape-string prefix.
        assert_eq!(
            texts(r"select somee'\'; select 4"),
            [r"select somee'\'", "select 4"]
        );
    }

    #[test]
    fn block_comments_nest() {
        let sql = "/* outer /* inner; */ still comment; */ select 1;\n\
                   select /* a; /* b */ ; */ 2; /* just; a comment */";
        assert_eq!(texts(sql), ["select 1", "select /* a; /* b */ ; */ 2"]);
    }

    #[test]
    fn dollar_quotes_hide_semicolons_and_other_tags() {
        let sql = "create function f() returns void as $$ begin perform 1; end $$ language plpgsql;\n\
                   do $fn$ begin execute $q$ select 1; $q$; raise notice '$$'; end $fn$;\n\
                   select $a$ $b$ ; $b$ $a$, $_x1$;$_x1$;\n\
                   select 1";
        assert_eq!(
            texts(sql),
            [
                "create function f() returns void as $$ begin perform 1; end $$ language plpgsql",
                "do $fn$ begin execute $q$ select 1; $q$; raise notice '$$'; end $fn$",
                "select $a$ $b$ ; $b$ $a$, $_x1$;$_x1$",
                "select 1",
            ]
        );
    }

    #[test]
    fn parameters_and_identifiers_with_dollars_are_not_quotes() {
        assert_eq!(
            texts("prepare p as select $1::int + $23; execute p(1); select a$b$c, $ ; select 2"),
            [
                "prepare p as select $1::int + $23",
                "execute p(1)",
                "select a$b$c, $",
                "select 2"
            ]
        );
        // A tag cannot start with a digit, so `$1$` is a parameter and a `$`.
        assert_eq!(texts("select $1$; select 2"), ["select $1$", "select 2"]);
    }

    #[test]
    fn line_comments_hide_semicolons() {
        let sql = "select 1 -- not the end; really\n  + 1; -- trailing; comment\n\
                   select 2 --x\r; select 3";
        assert_eq!(
            texts(sql),
            [
                "select 1 -- not the end; really\n  + 1",
                "select 2",
                "select 3"
            ]
        );
    }

    #[test]
    fn begin_atomic_bodies_stay_whole() {
        let function = "CREATE OR REPLACE FUNCTION public.grade(score int)\n\
                        RETURNS text LANGUAGE sql\n\
                        BEGIN ATOMIC\n  \
                          select case when score > 90 then 'A;' else case score when 0 then 'zero' end end;\n  \
                          insert into log values (score);\n  \
                          SELECT (CASE WHEN true THEN 1 END);\n\
                        END";
        let procedure =
            "create procedure p() language sql begin -- why\n atomic insert into t values (1); End";
        let returned = "create function signed(x numeric) returns numeric language sql \
                        return case when x < 0 then -x else x end";
        let sql = format!("{function};\n{procedure};\n{returned};\nselect 'after';");
        assert_eq!(
            texts(&sql),
            [function, procedure, returned, "select 'after'"]
        );
        // END and CASE count only as words, never inside anything else.
        let tricky = "create function f() returns int language sql begin atomic \
                      select 'end' as \"end\", weekend, /* end */ $$end$$; select 1; end";
        assert_eq!(texts(&format!("{tricky}; select 2")), [tricky, "select 2"]);
    }

    #[test]
    fn transaction_statements_split_normally() {
        let sql = "begin;\ncreate table t (a int);\nBEGIN ISOLATION LEVEL SERIALIZABLE;\n\
                   create function f() returns int language sql begin atomic select 1; end;\n\
                   commit;\nend;";
        assert_eq!(
            texts(sql),
            [
                "begin",
                "create table t (a int)",
                "BEGIN ISOLATION LEVEL SERIALIZABLE",
                "create function f() returns int language sql begin atomic select 1; end",
                "commit",
                "end"
            ]
        );
    }

    #[test]
    fn parentheses_keep_rule_actions_together() {
        let rule =
            "create rule r as on insert to t do also (insert into u values (1); delete from v)";
        assert_eq!(texts(&format!("{rule}; select 1")), [rule, "select 1"]);
    }

    #[test]
    fn crlf_line_endings() {
        let statements = split("select 1;\r\n-- note\r\nselect\r\n  2;\r\n");
        let found: Vec<_> = statements
            .iter()
            .map(|s| (s.text.as_str(), s.line))
            .collect();
        assert_eq!(found, [("select 1", 1), ("select\r\n  2", 3)]);
    }

    #[test]
    fn line_numbers_skip_leading_comments() {
        let sql = "/* header\n   over three\n   lines; */\n\n  create table a (id int);\n\
                   -- comment\ncreate table b (\n  id int\n); select 1; select 2;\n\n\n  select 3";
        let found: Vec<_> = split(sql).into_iter().map(|s| (s.line, s.index)).collect();
        assert_eq!(found, [(5, 0), (7, 1), (9, 2), (9, 3), (12, 4)]);
    }

    #[test]
    fn empty_statements_are_dropped() {
        assert!(split("").is_empty());
        assert!(split(";;  ;\n-- only a comment\n/* c */; \t").is_empty());
        assert_eq!(texts(";;select 1;;\n;select 2"), ["select 1", "select 2"]);
    }

    #[test]
    fn unterminated_things_run_to_the_end() {
        assert_eq!(texts("select 'abc; select 2"), ["select 'abc; select 2"]);
        assert_eq!(texts("select 1; do $x$ a; b"), ["select 1", "do $x$ a; b"]);
        assert_eq!(
            texts("select 1 /* open; /* */ select 2"),
            ["select 1 /* open; /* */ select 2"]
        );
        assert_eq!(texts("select 1; /* only a comment"), ["select 1"]);
        assert_eq!(texts("select (1; select 2"), ["select (1; select 2"]);
        assert_eq!(texts(r"select E'\"), [r"select E'\"]);
        assert_eq!(texts("select \"a; b"), ["select \"a; b"]);
    }

    #[test]
    fn non_ascii_text() {
        assert_eq!(
            texts("select 'é;ü' as ñ; select données$é$ from «t»; select $é$;$é$; select ✓"),
            [
                "select 'é;ü' as ñ",
                "select données$é$ from «t»",
                "select $é$;$é$",
                "select ✓"
            ]
        );
    }

    #[test]
    fn indexes_count_kept_statements() {
        let statements = split("; select 1;; -- x\n select 2;");
        let found: Vec<_> = statements.iter().map(|s| s.index).collect();
        assert_eq!(found, [0, 1]);
    }

    #[test]
    fn concurrently_is_detected() {
        let cic = Some("CREATE INDEX CONCURRENTLY cannot run inside a transaction block");
        assert_eq!(
            non_transactional_reason("create index concurrently i on t (a)"),
            cic
        );
        assert_eq!(
            non_transactional_reason("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)"),
            cic
        );
        assert_eq!(
            non_transactional_reason(
                "-- why\n/* nested /* note */ */\n  Create  Index\n\tConcurrently on t (a)"
            ),
            cic
        );
        assert_eq!(
            non_transactional_reason("drop index concurrently if exists i"),
            Some("DROP INDEX CONCURRENTLY cannot run inside a transaction block")
        );
        let reindex = Some("REINDEX CONCURRENTLY cannot run inside a transaction block");
        assert_eq!(
            non_transactional_reason("reindex table concurrently t"),
            reindex
        );
        assert_eq!(
            non_transactional_reason("REINDEX (VERBOSE) INDEX CONCURRENTLY i"),
            reindex
        );
        assert_eq!(
            non_transactional_reason("reindex (concurrently) table t"),
            reindex
        );
        assert_eq!(
            non_transactional_reason("reindex (verbose, concurrently true) table t"),
            reindex
        );
        assert_eq!(
            non_transactional_reason("reindex (concurrently false) table t"),
            None
        );
        assert_eq!(non_transactional_reason("reindex table t"), None);

        // Not CONCURRENTLY, or not as a keyword.
        assert_eq!(non_transactional_reason("create index i on t (a)"), None);
        assert_eq!(
            non_transactional_reason("create index \"concurrently\" on t (a)"),
            None
        );
        assert_eq!(
            non_transactional_reason("-- create index concurrently\ncreate index i on t (a)"),
            None
        );
        assert_eq!(
            non_transactional_reason("select 'create index concurrently'"),
            None
        );
        assert_eq!(
            non_transactional_reason("comment on index i is 'concurrently'"),
            None
        );
    }

    #[test]
    fn other_non_transactional_statements() {
        for (sql, reason) in [
            (
                "vacuum analyze t",
                "VACUUM cannot run inside a transaction block",
            ),
            ("VACUUM", "VACUUM cannot run inside a transaction block"),
            (
                "create database x",
                "CREATE DATABASE cannot run inside a transaction block",
            ),
            (
                "drop database if exists x",
                "DROP DATABASE cannot run inside a transaction block",
            ),
            (
                "alter system set work_mem = '4MB'",
                "ALTER SYSTEM cannot run inside a transaction block",
            ),
            (
                "create tablespace x location '/x'",
                "CREATE TABLESPACE cannot run inside a transaction block",
            ),
            (
                "drop tablespace x",
                "DROP TABLESPACE cannot run inside a transaction block",
            ),
            (
                "reindex schema public",
                "REINDEX SCHEMA cannot run inside a transaction block",
            ),
            (
                "reindex database d",
                "REINDEX DATABASE cannot run inside a transaction block",
            ),
            (
                "reindex system d",
                "REINDEX SYSTEM cannot run inside a transaction block",
            ),
            (
                "alter database \"d\" set tablespace t",
                "ALTER DATABASE SET TABLESPACE cannot run inside a transaction block",
            ),
            (
                "alter table only p detach partition p1 concurrently",
                "ALTER TABLE ... DETACH CONCURRENTLY cannot run inside a transaction block",
            ),
            (
                "commit prepared 'x'",
                "COMMIT PREPARED cannot run inside a transaction block",
            ),
            (
                "rollback prepared 'x'",
                "ROLLBACK PREPARED cannot run inside a transaction block",
            ),
        ] {
            assert_eq!(non_transactional_reason(sql), Some(reason), "{sql}");
        }
        for sql in [
            "alter type mood add value 'meh'",
            "alter database d set work_mem = '4MB'",
            "alter table p detach partition p1",
            "analyze t",
            "commit",
            "create table database (a int)",
            "do $$ begin create index concurrently i on t (a); end $$",
            "",
            "-- nothing",
        ] {
            assert_eq!(non_transactional_reason(sql), None, "{sql}");
        }
    }

    #[test]
    fn split_marks_non_transactional_statements() {
        let statements =
            split("create table t (a int);\n-- slow\ncreate index concurrently i on t (a);");
        let flags: Vec<_> = statements.iter().map(|s| s.needs_no_transaction).collect();
        assert_eq!(flags, [false, true]);
    }

    #[test]
    fn example_migrations_split_cleanly() {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut files = Vec::new();
        for project in std::fs::read_dir(&examples).unwrap() {
            let migrations = project.unwrap().path().join("supabase/migrations");
            let Ok(entries) = std::fs::read_dir(&migrations) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "sql") {
                    files.push(path);
                }
            }
        }
        files.sort();
        assert!(
            !files.is_empty(),
            "no migrations under {}",
            examples.display()
        );

        let concurrent = "savings-groups/supabase/migrations/\
                          20260108000000_transactions_institution_occurred_at_index.sql";
        let mut saw_concurrent = false;
        for path in &files {
            let sql = std::fs::read_to_string(path).unwrap();
            let lines: Vec<&str> = sql.lines().collect();
            let statements = split(&sql);
            for s in &statements {
                let at = format!(
                    "{}: statement {} at line {}",
                    path.display(),
                    s.index,
                    s.line
                );
                assert!(!s.text.trim().is_empty(), "{at} is empty");
                let first_line = s.text.lines().next().unwrap_or_default();
                let prefix: String = first_line.chars().take(10).collect();
                let line = lines
                    .get(s.line - 1)
                    .unwrap_or_else(|| panic!("{at}: no such line"));
                assert!(line.contains(&prefix), "{at}: {line:?} lacks {prefix:?}");
            }
            if path.ends_with(concurrent) {
                saw_concurrent = true;
                assert_eq!(statements.len(), 1, "{}", path.display());
                assert!(statements[0].needs_no_transaction);
            } else {
                // The other examples are meant to run in one transaction.
                for s in &statements {
                    assert!(!s.needs_no_transaction, "{}: {}", path.display(), s.text);
                }
            }
        }
        assert!(saw_concurrent, "{concurrent} not found");
    }

    /// Checks what holds for any input, whatever it splits into.
    fn check_invariants(sql: &str) {
        let statements = split(sql);
        let last_line = 1 + sql.matches('\n').count();
        let mut previous_line = 1;
        for (i, s) in statements.iter().enumerate() {
            assert_eq!(s.index, i);
            assert!(!s.text.is_empty());
            assert!(!s.text.starts_with(is_space_char) && !s.text.ends_with(is_space_char));
            assert!(sql.contains(&s.text));
            assert!(s.line >= previous_line && s.line <= last_line);
            previous_line = s.line;
            assert_eq!(
                s.needs_no_transaction,
                non_transactional_reason(&s.text).is_some()
            );
        }
        let _ = non_transactional_reason(sql);
    }

    /// Pieces of SQL that stress the lexer when glued together at random.
    const FRAGMENTS: &[&str] = &[
        ";",
        "'",
        "''",
        "\"",
        "$",
        "$$",
        "$a$",
        "$1",
        "-",
        "--",
        "/",
        "*",
        "/*",
        "*/",
        "\n",
        "\r",
        "\r\n",
        " ",
        "\\",
        "E'",
        "e",
        "(",
        ")",
        "BEGIN",
        "begin",
        "ATOMIC",
        "atomic",
        "END",
        "end",
        "case",
        "CASE",
        "create",
        "or replace",
        "function",
        "procedure",
        "index",
        "concurrently",
        "x",
        "1",
        "é",
        "ü",
        "✓",
        "\u{0}",
    ];

    proptest! {
        #[test]
        fn split_never_panics(sql in ".*") {
            check_invariants(&sql);
        }

        #[test]
        fn split_never_panics_on_sql_like_input(
            pieces in prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60)
        ) {
            check_invariants(&pieces.concat());
        }

        #[test]
        fn generated_statements_round_trip(
            file in prop::collection::vec((leading(), statement()), 1..8),
            trailer in prop_oneof![Just(String::new()), Just(";".to_string()), comment()],
        ) {
            let mut sql = String::new();
            let mut lines = Vec::new();
            for (i, (leading, statement)) in file.iter().enumerate() {
                if i > 0 {
                    sql.push_str(";\n");
                }
                sql.push_str(leading);
                lines.push(1 + sql.matches('\n').count());
                sql.push_str(statement);
            }
            sql.push_str(&trailer);

            let split_once = split(&sql);
            let expected: Vec<&str> = file.iter().map(|(_, s)| s.trim()).collect();
            let found: Vec<&str> = split_once.iter().map(|s| s.text.as_str()).collect();
            prop_assert_eq!(&found, &expected, "{:?}", sql);
            let found_lines: Vec<usize> = split_once.iter().map(|s| s.line).collect();
            prop_assert_eq!(found_lines, lines);

            let rejoined = found.join(";");
            let again = texts(&rejoined);
            prop_assert_eq!(again, found, "{:?}", rejoined);
        }
    }

    /// Identifiers, never one of the words that steer the splitter.
    fn identifier() -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_$]{0,8}".prop_filter("steering keyword", |s| {
            !["begin", "atomic", "case", "end"]
                .iter()
                .any(|k| s.eq_ignore_ascii_case(k))
        })
    }

    /// Integers and decimals.
    fn number() -> impl Strategy<Value = String> {
        "[0-9]{1,6}(\\.[0-9]{1,3})?"
    }

    /// `'...'` holding `;`, quotes and backslashes (plain characters here).
    fn string() -> impl Strategy<Value = String> {
        "[a-z ;$\"*/\\\\\n'-]{0,12}".prop_map(|s| format!("'{}'", s.replace('\'', "''")))
    }

    /// `E'...'` holding backslash escapes, doubled quotes and `;`.
    fn escape_string() -> impl Strategy<Value = String> {
        let piece =
            prop::sample::select(&["a", ";", "\\'", "\\\\", "''", "\"", "$", " ", "é", "*/"][..]);
        (prop::bool::ANY, prop::collection::vec(piece, 0..8)).prop_map(|(upper, pieces)| {
            format!("{}'{}'", if upper { "E" } else { "e" }, pieces.concat())
        })
    }

    /// `"..."` holding `;`, quotes and `$`.
    fn quoted_identifier() -> impl Strategy<Value = String> {
        "[a-z ;'$\"]{1,8}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\"")))
    }

    /// `$$...$$` or `$tag$...$tag$`, maybe holding another tag's quote.
    fn dollar_quoted() -> impl Strategy<Value = String> {
        (
            "(|[a-zA-Z_][a-zA-Z0-9_]{0,4})",
            "[a-z ;'\"$\n-]{0,16}",
            "(|\\$q\\$ ; \\$q\\$)",
        )
            .prop_map(|(tag, body, inner)| format!("${tag}${body}{inner}${tag}$"))
            .prop_filter("the body closes the quote early", |quoted| {
                let delimiter = &quoted[..=quoted[1..].find('$').unwrap_or(0) + 1];
                quoted[delimiter.len()..].find(delimiter)
                    == Some(quoted.len() - 2 * delimiter.len())
            })
    }

    /// A line comment with its line break, or a block comment, maybe nested.
    fn comment() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ;'\"$*/]{0,10}".prop_map(|s| format!("--{s}\n")),
            ("[a-z ;'\"$-]{0,8}", prop::option::of("[a-z ;]{0,5}")).prop_map(|(outer, inner)| {
                match inner {
                    Some(inner) => format!("/* {outer} /* {inner} */ {outer} */"),
                    None => format!("/*{outer}*/"),
                }
            }),
        ]
    }

    /// CASE ... END, maybe nested, whose END must not close a body.
    fn case_expression() -> impl Strategy<Value = String> {
        (identifier(), number(), prop::bool::ANY).prop_map(|(x, n, nested)| {
            if nested {
                format!("CASE WHEN {x} THEN case {n} when 1 then 'end;' END ELSE {n} end")
            } else {
                format!("case when {x} > {n} then {x} else 0 end")
            }
        })
    }

    /// A token or small group that never holds a top-level `;`.
    fn piece() -> impl Strategy<Value = String> {
        let simple = prop_oneof![
            3 => identifier(),
            1 => number(),
            1 => string(),
            1 => escape_string(),
            1 => quoted_identifier(),
            1 => dollar_quoted(),
            1 => comment(),
            1 => case_expression(),
            1 => Just("+".to_string()),
            1 => Just("::".to_string()),
            1 => Just("$1".to_string()),
        ];
        // Parentheses may hold `;`s, as CREATE RULE's actions do.
        let group = (prop::collection::vec(simple.clone(), 0..4), prop::bool::ANY).prop_map(
            |(inside, semicolons)| {
                let between = if semicolons { " ; " } else { " , " };
                format!("({})", inside.join(between))
            },
        );
        prop_oneof![6 => simple, 1 => group]
    }

    /// Whitespace between pieces, CRLF included.
    fn separator() -> impl Strategy<Value = &'static str> {
        prop::sample::select(&[" ", "\n", "\t", "  ", "\r\n"][..])
    }

    /// Pieces after `first`, ending in a piece that is no comment, since
    /// comments around a statement are not part of its text.
    fn words_after(first: &'static str) -> impl Strategy<Value = String> {
        (
            prop::collection::vec((separator(), piece()), 0..6),
            identifier(),
        )
            .prop_map(move |(pieces, last)| {
                let mut text = first.to_string();
                for (separator, piece) in pieces {
                    text.push_str(separator);
                    text.push_str(&piece);
                }
                text.push(' ');
                text.push_str(&last);
                text
            })
    }

    /// A statement without a body, starting with a keyword.
    fn plain_statement() -> impl Strategy<Value = String> {
        prop::sample::select(
            &[
                "select",
                "insert into",
                "update",
                "alter table",
                "grant",
                "create table",
                "create index",
                "create index concurrently",
                "BEGIN",
                "comment on",
                "do",
            ][..],
        )
        .prop_flat_map(words_after)
    }

    /// CREATE FUNCTION or PROCEDURE with a BEGIN ATOMIC body of 0..4 statements.
    fn atomic_routine() -> impl Strategy<Value = String> {
        let head = prop::sample::select(
            &[
                "create function f() returns int language sql",
                "CREATE OR REPLACE FUNCTION public.f(a int) RETURNS SETOF int LANGUAGE sql STABLE",
                "create procedure p() language sql",
                "create or replace procedure \"P\"() language sql",
            ][..],
        );
        let begin = prop::sample::select(
            &[
                "begin atomic",
                "BEGIN ATOMIC",
                "begin /* ; */ atomic",
                "Begin\n-- x\nAtomic",
            ][..],
        );
        let body = prop::collection::vec(words_after("select"), 0..4);
        let end = prop::sample::select(&["end", "END", "End"][..]);
        (head, begin, body, end).prop_map(|(head, begin, body, end)| {
            let body: String = body.iter().map(|s| format!("\n  {s};")).collect();
            format!("{head}\n{begin}{body}\n{end}")
        })
    }

    /// Any generated statement, without its `;`.
    fn statement() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => plain_statement(),
            2 => atomic_routine(),
            1 => case_expression().prop_map(|case| {
                format!("create function g() returns int language sql return {case}")
            }),
            1 => dollar_quoted().prop_map(|body| format!("do {body}")),
        ]
    }

    /// Whitespace and comments before a statement, which its text leaves out.
    fn leading() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![separator().prop_map(String::from), comment()],
            0..3,
        )
        .prop_map(|parts| parts.concat())
    }
}
