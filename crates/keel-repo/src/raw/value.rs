//! [`Value`] and [`Row`]: what raw SQL binds and returns, with their JSON forms (`Row` as an
//! object in column order, bytes as base64, timestamps as RFC 3339).

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use keel_schema::{Id, Timestamp};
use serde::ser::{SerializeMap, Serializer};

/// One value of a row or a parameter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL` (JSON `null`). As a parameter it takes the type its place in the statement
    /// needs, on every backend (see [the raw SQL docs](crate::raw#null-and-decimal-parameters)).
    Null,
    /// A boolean (PostgreSQL `boolean`; MySQL and SQLite have none and return integers).
    Bool(bool),
    /// Any integer column (JSON number).
    Int(i64),
    /// A floating-point column (JSON number).
    Float(f64),
    /// An exact decimal (`numeric`/`DECIMAL`), as text so no digit is lost (JSON string). As a
    /// parameter the text must be a decimal (`-12.50`, `1.5e3`, `NaN`) and is bound as
    /// PostgreSQL `numeric`, or as text on MySQL and SQLite.
    Decimal(String),
    /// Text (JSON string).
    Text(String),
    /// Binary data (JSON: base64 string). MySQL `BINARY(16)` and SQLite `BLOB` ids come back
    /// as 16 bytes; [`Value::as_uuid`] reads them.
    Bytes(Vec<u8>),
    /// A PostgreSQL `uuid` (JSON string).
    Uuid(uuid::Uuid),
    /// A date (JSON `"2026-11-25"`).
    Date(NaiveDate),
    /// A time of day (JSON `"13:45:00"`).
    Time(NaiveTime),
    /// A date and time without zone (JSON `"2026-11-25T13:45:00"`).
    DateTime(NaiveDateTime),
    /// A UTC timestamp (JSON RFC 3339). As a parameter it is bound in keel's column format, so
    /// it compares correctly with `created_at` on every backend.
    Timestamp(DateTime<Utc>),
}

impl Value {
    /// The value as a UUID: a PostgreSQL `uuid`, 16 bytes (MySQL/SQLite ids) or UUID text.
    pub fn as_uuid(&self) -> Option<uuid::Uuid> {
        match self {
            Value::Uuid(u) => Some(*u),
            Value::Bytes(b) => uuid::Uuid::from_slice(b).ok(),
            Value::Text(t) => t.parse().ok(),
            _ => None,
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as text, if it is text or a decimal.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Decimal(s) => Some(s),
            _ => None,
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use base64::Engine as _;
        match self {
            Value::Null => s.serialize_none(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Decimal(t) | Value::Text(t) => s.serialize_str(t),
            Value::Bytes(b) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b)),
            Value::Uuid(u) => s.collect_str(u),
            Value::Date(d) => s.collect_str(&d.format("%Y-%m-%d")),
            Value::Time(t) => s.collect_str(&t.format("%H:%M:%S%.f")),
            Value::DateTime(t) => s.collect_str(&t.format("%Y-%m-%dT%H:%M:%S%.f")),
            Value::Timestamp(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

value_from!(
    bool => |v| Value::Bool(v),
    i32 => |v| Value::Int(i64::from(v)),
    i64 => |v| Value::Int(v),
    f64 => |v| Value::Float(v),
    &str => |v| Value::Text(v.to_owned()),
    String => |v| Value::Text(v),
    &String => |v| Value::Text(v.clone()),
    Vec<u8> => |v| Value::Bytes(v),
    uuid::Uuid => |v| Value::Uuid(v),
    Id => |v| Value::Uuid(v.0),
    NaiveDate => |v| Value::Date(v),
    NaiveTime => |v| Value::Time(v),
    NaiveDateTime => |v| Value::DateTime(v),
    DateTime<Utc> => |v| Value::Timestamp(v),
    Timestamp => |v| Value::Timestamp(v.0),
);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row: columns in query order, each with its name and value. Serialises as a JSON
/// object in column order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(pub(super) Vec<(String, Value)>);

impl Row {
    /// The value of the column named `name` (the first, if several share it).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Column names and values, in query order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Column names, in query order.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_serialise_in_column_order() {
        let row = Row(vec![
            ("z".into(), Value::Int(1)),
            ("a".into(), Value::Null),
            ("m".into(), Value::Decimal("1.50".into())),
        ]);
        assert_eq!(serde_json::to_string(&row).unwrap(), r#"{"z":1,"a":null,"m":"1.50"}"#);
    }
}
