//! The `:name` rewriter: named placeholders become `$1`, `$2`, … (PostgreSQL) or `?` (MySQL,
//! SQLite), skipping string literals, quoted identifiers, comments, PostgreSQL dollar quotes and
//! `::type` casts.

use keel_pool::Backend;

use crate::error::{Error, Result};

/// Rewrites `:name` placeholders for `backend`; returns the SQL and, per bind position, the
/// parameter name. PostgreSQL numbers each distinct name once (`$1` twice for a repeated name);
/// MySQL and SQLite get one `?` per occurrence.
///
/// Fails on a `?` (MySQL, SQLite) or `$n` (PostgreSQL) placeholder outside literals: mixing
/// them with named parameters would shift every position.
pub fn rewrite(sql: &str, backend: Backend) -> Result<(String, Vec<String>)> {
    let Rewritten { sql, binds, .. } = rewrite_with(sql, backend, |_| None)?;
    Ok((sql, binds))
}

/// What [`rewrite_with`] made of the SQL.
#[derive(Debug, PartialEq)]
pub(super) struct Rewritten {
    /// The SQL with placeholders.
    pub sql: String,
    /// Per bind position, the parameter name.
    pub binds: Vec<String>,
    /// Every name the SQL uses, once each, in order of first use (inlined ones included).
    pub used: Vec<String>,
}

/// [`rewrite`], but a name for which `inline` gives text is written as that text (the keyword
/// `NULL`, or a literal [`super::literal`] made) instead of a placeholder, and takes no bind
/// position.
pub(super) fn rewrite_with(
    sql: &str,
    backend: Backend,
    inline: impl Fn(&str) -> Option<String>,
) -> Result<Rewritten> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut names: Vec<String> = Vec::new();
    let mut used: Vec<String> = Vec::new();
    let mut i = 0;
    let pg = backend == Backend::Postgres;
    let my = backend == Backend::Mysql;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // Copies chars[i..end] verbatim.
    let copy = |out: &mut String, from: usize, to: usize| out.extend(&chars[from..to.min(chars.len())]);
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' | '`' if c != '`' || my => {
                // E'…' on PostgreSQL and every MySQL string take backslash escapes.
                let backslash = my || (pg && c == '\'' && i > 0 && matches!(chars[i - 1], 'e' | 'E'));
                let mut j = i + 1;
                while j < chars.len() {
                    if backslash && chars[j] == '\\' {
                        j += 2;
                        continue;
                    }
                    if chars[j] == c {
                        if chars.get(j + 1) == Some(&c) {
                            j += 2; // doubled quote
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                copy(&mut out, i, j + 1);
                i = j + 1;
            }
            '-' if next == Some('-') => {
                let end = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |p| i + p);
                copy(&mut out, i, end);
                i = end;
            }
            '#' if my => {
                let end = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |p| i + p);
                copy(&mut out, i, end);
                i = end;
            }
            '/' if next == Some('*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < chars.len() && depth > 0 {
                    if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                        depth -= 1;
                        j += 2;
                    } else if pg && chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                        depth += 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                copy(&mut out, i, j);
                i = j;
            }
            '$' if pg && next.is_some_and(|n| n.is_ascii_digit()) => {
                return Err(Error::invalid("use :name parameters, not $n placeholders"));
            }
            '$' if pg && next.is_some_and(|n| n == '$' || ident_start(n)) => {
                // A dollar-quoted string: $tag$ … $tag$.
                let tag_end = chars[i + 1..].iter().position(|&c| !ident(c)).map(|p| i + 1 + p);
                match tag_end {
                    Some(t) if chars[t] == '$' => {
                        let tag: String = chars[i..=t].iter().collect();
                        let rest: String = chars[t + 1..].iter().collect();
                        let close = rest
                            .find(&tag)
                            .map_or(chars.len(), |p| t + 1 + rest[..p].chars().count() + tag.chars().count());
                        copy(&mut out, i, close);
                        i = close;
                    }
                    _ => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            '?' if !pg => return Err(Error::invalid("use :name parameters, not ? placeholders")),
            ':' if next == Some(':') => {
                out.push_str("::");
                i += 2;
            }
            ':' if next.is_some_and(ident_start) && !(i > 0 && ident(chars[i - 1]) && pg) => {
                let end = chars[i + 1..].iter().position(|&c| !ident(c)).map_or(chars.len(), |p| i + 1 + p);
                let name: String = chars[i + 1..end].iter().collect();
                if !used.contains(&name) {
                    used.push(name.clone());
                }
                if let Some(text) = inline(&name) {
                    out.push_str(&text);
                } else if pg {
                    let n = match names.iter().position(|x| *x == name) {
                        Some(p) => p + 1,
                        None => {
                            names.push(name);
                            names.len()
                        }
                    };
                    out.push('$');
                    out.push_str(&n.to_string());
                } else {
                    names.push(name);
                    out.push('?');
                }
                i = end;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(Rewritten { sql: out, binds: names, used })
}
#[cfg(test)]
mod tests {
    use super::*;

    fn pg(sql: &str) -> (String, Vec<String>) {
        rewrite(sql, Backend::Postgres).unwrap()
    }

    fn my(sql: &str) -> (String, Vec<String>) {
        rewrite(sql, Backend::Mysql).unwrap()
    }

    #[test]
    fn placeholders_outside_literals_and_comments_only() {
        let sql = "SELECT ':name', 'it''s :x', \"col:x\", x::int, '{1,2}'::int[] -- :x\n\
                   FROM t /* :x */ WHERE a = :a AND b = :b AND c = :a";
        let (text, names) = pg(sql);
        assert_eq!(
            text,
            "SELECT ':name', 'it''s :x', \"col:x\", x::int, '{1,2}'::int[] -- :x\n\
             FROM t /* :x */ WHERE a = $1 AND b = $2 AND c = $1"
        );
        assert_eq!(names, ["a", "b"]);
        let (text, names) = my(sql);
        assert!(text.ends_with("WHERE a = ? AND b = ? AND c = ?"), "{text}");
        assert_eq!(names, ["a", "b", "a"]);
    }

    #[test]
    fn dialect_quirks() {
        // PostgreSQL: nested comments, dollar quotes, E'' escapes.
        let (t, n) = pg("SELECT /* a /* :x */ :y */ $$ :z $$, $q$ :z $q$, E'\\' :w', :v");
        assert_eq!(t, "SELECT /* a /* :x */ :y */ $$ :z $$, $q$ :z $q$, E'\\' :w', $1");
        assert_eq!(n, ["v"]);
        // MySQL: backticks, backslash escapes, # comments.
        let (t, n) = my("SELECT `a:b`, 'x\\' :no', :yes # :c");
        assert_eq!(t, "SELECT `a:b`, 'x\\' :no', ? # :c");
        assert_eq!(n, ["yes"]);
        assert_eq!(
            rewrite("SELECT ?", Backend::Sqlite).unwrap_err().kind(),
            Some(keel_pool::ErrorKind::InvalidInput)
        );
        assert_eq!(
            rewrite("SELECT $1", Backend::Postgres).unwrap_err().kind(),
            Some(keel_pool::ErrorKind::InvalidInput)
        );
        // A `?` inside a literal is fine.
        assert_eq!(my("SELECT '?', :a").0, "SELECT '?', ?");
    }

    #[test]
    fn inlined_nulls_take_no_position_but_count_as_used() {
        let sql = "SELECT :a, :n, :b, :n::int, ':n' -- :n";
        let r = rewrite_with(sql, Backend::Postgres, |n| (n == "n").then(|| "NULL".to_owned())).unwrap();
        assert_eq!(r.sql, "SELECT $1, NULL, $2, NULL::int, ':n' -- :n");
        assert_eq!(r.binds, ["a", "b"]);
        assert_eq!(r.used, ["a", "n", "b"]);
        let r = rewrite_with(sql, Backend::Mysql, |n| (n == "n").then(|| "NULL".to_owned())).unwrap();
        assert_eq!(r.sql, "SELECT ?, NULL, ?, NULL::int, ':n' -- :n");
        assert_eq!(r.binds, ["a", "b"]);
        let r = rewrite_with(sql, Backend::Sqlite, |_| None).unwrap();
        assert_eq!(r.binds, ["a", "n", "b", "n"]);
        assert_eq!(r.used, ["a", "n", "b"]);
    }
}
