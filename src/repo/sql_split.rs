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
    // Only bare words are keywords: `"concurrently"` is an index's name.
    let is = |i: usize, keyword: &str| matches!(tokens.get(i), Some(&(Kind::Word, word)) if word.eq_ignore_ascii_case(keyword));

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
    let is = |i: usize, keyword: &str| matches!(tokens.get(i), Some(&(Kind::Word, word)) if word.eq_ignore_ascii_case(keyword));
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
        if after_begin && word.eq_ignore_ascii_case("atomic") {
            self.atomic += 1;
        } else if self.atomic > 0 && word.eq_ignore_ascii_case("case") {
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
        // Only an unterminated literal can end in whitespace.
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
enum Kind {
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
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// Cuts SQL into tokens, following PostgreSQL's lexer (scan.l) where it
/// matters for finding statement boundaries.
struct Lexer<'a> {
    sql: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(sql: &'a str) -> Self {
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
