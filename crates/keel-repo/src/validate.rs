//! Checks done before a value reaches the database, so every backend refuses the same input
//! the same way: SQLite does not enforce `VARCHAR` lengths, and only PostgreSQL rejects NUL
//! bytes in text.

use crate::error::Error;

/// Refuses text with a NUL byte or more than `max_chars` characters (the column's length,
/// counted in characters as PostgreSQL, MySQL and SQLite's `length()` do).
pub(crate) fn text(field: &str, value: &str, max_chars: usize) -> Result<(), Error> {
    if value.contains('\0') {
        return Err(Error::invalid(format!("{field} contains a NUL byte, which text columns cannot store")));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(Error::invalid(format!("{field} is {chars} characters long; the limit is {max_chars}")));
    }
    Ok(())
}

/// Refuses empty text (after trimming).
pub(crate) fn non_empty(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::invalid(format!("{field} must not be empty")));
    }
    Ok(())
}

/// A `limit` argument clamped to `1..=max`; zero or negative is invalid input.
pub(crate) fn limit(limit: i64, max: i64) -> Result<i64, Error> {
    if limit < 1 {
        return Err(Error::invalid(format!("limit must be at least 1, got {limit}")));
    }
    Ok(limit.min(max))
}

/// Escapes `%`, `_` and the escape character `!` so `text` matches itself in `LIKE … ESCAPE '!'`.
/// `!` rather than `\`: a backslash inside the `ESCAPE '…'` literal is itself an escape on
/// MySQL, so no single spelling of it works on every backend.
pub(crate) fn like_contains(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for ch in text.chars() {
        if matches!(ch, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_contains("50%_a!b\\c"), "%50!%!_a!!b\\c%");
        assert_eq!(like_contains("'; DROP TABLE users; --"), "%'; DROP TABLE users; --%");
    }

    #[test]
    fn text_limits_count_characters() {
        assert!(text("name", &"é".repeat(100), 100).is_ok());
        assert!(text("name", &"é".repeat(101), 100).is_err());
        let err = text("name", "a\0b", 100).unwrap_err();
        assert_eq!(err.kind(), Some(keel_pool::ErrorKind::InvalidInput));
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}
