//! PostgreSQL literals for statements that cannot take bind parameters (`COPY (query) TO
//! STDOUT`): each [`Value`] written as a constant of its type, quoted so no input can end it.

use super::value::Value;

/// `text` as a standard SQL string constant: `'` doubled, nothing else special. Correct when
/// `standard_conforming_strings` is on (PostgreSQL's default since 9.1; callers that inline
/// must make sure of it on their session).
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `value` as a PostgreSQL constant with the same type the bound parameter would have:
/// `(-5)`, `'1.5'::float8`, `'Ada'::text`, `'\x00ff'::bytea`, `'…'::timestamptz`. Numbers are
/// parenthesised when negative so `a-:n` cannot become a comment (`a--5`). Text must hold no
/// NUL byte and decimals must be decimals (checked by the caller, as for binds).
pub(super) fn postgres(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Bool(true) => "TRUE".to_owned(),
        Value::Bool(false) => "FALSE".to_owned(),
        Value::Int(i) if *i < 0 => format!("({i})"),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{}::float8", quoted(&f.to_string())),
        Value::Decimal(t) => format!("{}::numeric", quoted(t)),
        Value::Text(t) => format!("{}::text", quoted(t)),
        Value::Bytes(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("'\\x{hex}'::bytea")
        }
        Value::Uuid(u) => format!("'{u}'::uuid"),
        Value::Date(d) => format!("'{}'::date", d.format("%Y-%m-%d")),
        Value::Time(t) => format!("'{}'::time", t.format("%H:%M:%S%.f")),
        Value::DateTime(t) => format!("'{}'::timestamp", t.format("%Y-%m-%d %H:%M:%S%.f")),
        Value::Timestamp(t) => format!("'{}'::timestamptz", t.format("%Y-%m-%d %H:%M:%S%.f+00")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_be_escaped() {
        assert_eq!(
            postgres(&Value::Text("it's'; DROP TABLE x; --".into())),
            "'it''s''; DROP TABLE x; --'::text"
        );
        assert_eq!(postgres(&Value::Int(-5)), "(-5)");
        assert_eq!(postgres(&Value::Bytes(vec![0, 255])), "'\\x00ff'::bytea");
        assert_eq!(postgres(&Value::Float(f64::NAN)), "'NaN'::float8");
        assert_eq!(postgres(&Value::Float(f64::NEG_INFINITY)), "'-inf'::float8");
    }
}
