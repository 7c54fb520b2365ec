//! Row decoders: one `QueryableByName` impl of [`Row`] per backend, turning each column's wire
//! type (PostgreSQL oid, MySQL type, SQLite storage class) into a [`Value`].

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::mysql::{Mysql, MysqlType};
use diesel::pg::Pg;
use diesel::row::{Field, NamedRow};
use diesel::sql_types as st;
use diesel::sqlite::{Sqlite, SqliteType};

use super::value::{Row, Value};

fn decode_err(column: &str, what: impl std::fmt::Display) -> Box<dyn std::error::Error + Send + Sync> {
    format!("column {column}: {what}").into()
}

/// Reads every column of a row with `decode`.
fn build_row<'a, DB, R>(
    row: &R,
    decode: impl Fn(&str, DB::RawValue<'_>) -> deserialize::Result<Value>,
) -> deserialize::Result<Row>
where
    DB: diesel::backend::Backend,
    R: NamedRow<'a, DB>,
{
    let n = diesel::row::Row::field_count(row);
    let mut columns = Vec::with_capacity(n);
    for i in 0..n {
        let field = diesel::row::Row::get(row, i).ok_or_else(|| decode_err("?", "missing field"))?;
        let name = field.field_name().unwrap_or("?").to_owned();
        let value = match field.value() {
            None => Value::Null,
            Some(raw) => decode(&name, raw)?,
        };
        columns.push((name, value));
    }
    Ok(Row(columns))
}

/// PostgreSQL `numeric` (base-10000 digit groups) as decimal text.
pub(super) fn numeric_text(n: diesel::pg::data_types::PgNumeric) -> String {
    use diesel::pg::data_types::PgNumeric;
    let (neg, weight, scale, digits) = match n {
        PgNumeric::Positive { weight, scale, digits } => (false, weight, scale, digits),
        PgNumeric::Negative { weight, scale, digits } => (true, weight, scale, digits),
        PgNumeric::NaN => return "NaN".to_owned(),
    };
    let group = |i: i64| if i >= 0 { digits.get(i as usize).copied().unwrap_or(0) } else { 0 };
    let mut int = String::new();
    for i in 0..=i64::from(weight) {
        let d = group(i);
        if int.is_empty() { int.push_str(&d.to_string()) } else { int.push_str(&format!("{d:04}")) }
    }
    let int = if int.is_empty() || int.chars().all(|c| c == '0') { "0".to_owned() } else { int };
    let mut frac = String::new();
    let mut k = 1i64;
    while frac.len() < usize::from(scale) {
        frac.push_str(&format!("{:04}", group(i64::from(weight) + k)));
        k += 1;
    }
    frac.truncate(usize::from(scale));
    let sign = if neg { "-" } else { "" };
    if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
}

impl diesel::deserialize::QueryableByName<Pg> for Row {
    fn build<'a>(row: &impl NamedRow<'a, Pg>) -> deserialize::Result<Self> {
        build_row::<Pg, _>(row, |name, raw| {
            let oid = raw.get_oid().get();
            Ok(match oid {
                16 => Value::Bool(<bool as FromSql<st::Bool, Pg>>::from_sql(raw)?),
                21 => Value::Int(i64::from(<i16 as FromSql<st::SmallInt, Pg>>::from_sql(raw)?)),
                23 => Value::Int(i64::from(<i32 as FromSql<st::Integer, Pg>>::from_sql(raw)?)),
                20 => Value::Int(<i64 as FromSql<st::BigInt, Pg>>::from_sql(raw)?),
                700 => Value::Float(f64::from(<f32 as FromSql<st::Float, Pg>>::from_sql(raw)?)),
                701 => Value::Float(<f64 as FromSql<st::Double, Pg>>::from_sql(raw)?),
                1700 => Value::Decimal(numeric_text(FromSql::<st::Numeric, Pg>::from_sql(raw)?)),
                25 | 1043 | 1042 | 19 | 114 => Value::Text(<String as FromSql<st::Text, Pg>>::from_sql(raw)?),
                3802 => Value::Text(
                    String::from_utf8_lossy(raw.as_bytes().get(1..).unwrap_or_default()).into_owned(),
                ),
                17 => Value::Bytes(<Vec<u8> as FromSql<st::Binary, Pg>>::from_sql(raw)?),
                2950 => Value::Uuid(uuid::Uuid::from_slice(raw.as_bytes()).map_err(|e| decode_err(name, e))?),
                1082 => Value::Date(<NaiveDate as FromSql<st::Date, Pg>>::from_sql(raw)?),
                1083 => Value::Time(<NaiveTime as FromSql<st::Time, Pg>>::from_sql(raw)?),
                1114 => Value::DateTime(<NaiveDateTime as FromSql<st::Timestamp, Pg>>::from_sql(raw)?),
                1184 => Value::Timestamp(<DateTime<Utc> as FromSql<st::Timestamptz, Pg>>::from_sql(raw)?),
                other => {
                    return Err(decode_err(
                        name,
                        format!(
                            "PostgreSQL type oid {other} has no keel Value; cast it in SQL (e.g. {name}::text)"
                        ),
                    ));
                }
            })
        })
    }
}

impl diesel::deserialize::QueryableByName<Mysql> for Row {
    fn build<'a>(row: &impl NamedRow<'a, Mysql>) -> deserialize::Result<Self> {
        build_row::<Mysql, _>(row, |name, raw| {
            Ok(match raw.value_type() {
                MysqlType::Tiny
                | MysqlType::Short
                | MysqlType::Long
                | MysqlType::LongLong
                | MysqlType::UnsignedTiny
                | MysqlType::UnsignedShort
                | MysqlType::UnsignedLong => Value::Int(<i64 as FromSql<st::BigInt, Mysql>>::from_sql(raw)?),
                MysqlType::UnsignedLongLong => {
                    let text = String::from_utf8_lossy(raw.as_bytes()).into_owned();
                    match <u64 as FromSql<st::Unsigned<st::BigInt>, Mysql>>::from_sql(raw) {
                        Ok(v) => i64::try_from(v).map(Value::Int).unwrap_or(Value::Decimal(v.to_string())),
                        Err(_) => Value::Decimal(text),
                    }
                }
                MysqlType::Float | MysqlType::Double => {
                    Value::Float(<f64 as FromSql<st::Double, Mysql>>::from_sql(raw)?)
                }
                MysqlType::Numeric => Value::Decimal(String::from_utf8_lossy(raw.as_bytes()).into_owned()),
                MysqlType::String | MysqlType::Enum | MysqlType::Set => {
                    match std::str::from_utf8(raw.as_bytes()) {
                        Ok(t) => Value::Text(t.to_owned()),
                        Err(_) => Value::Bytes(raw.as_bytes().to_vec()),
                    }
                }
                MysqlType::Blob | MysqlType::Bit => Value::Bytes(raw.as_bytes().to_vec()),
                MysqlType::Date => Value::Date(<NaiveDate as FromSql<st::Date, Mysql>>::from_sql(raw)?),
                MysqlType::Time => Value::Time(<NaiveTime as FromSql<st::Time, Mysql>>::from_sql(raw)?),
                MysqlType::DateTime | MysqlType::Timestamp => {
                    Value::DateTime(<NaiveDateTime as FromSql<st::Timestamp, Mysql>>::from_sql(raw)?)
                }
                other => {
                    return Err(decode_err(
                        name,
                        format!("MySQL type {other:?} has no keel Value; cast it in SQL"),
                    ));
                }
            })
        })
    }
}

impl diesel::deserialize::QueryableByName<Sqlite> for Row {
    fn build<'a>(row: &impl NamedRow<'a, Sqlite>) -> deserialize::Result<Self> {
        build_row::<Sqlite, _>(row, |_, raw| {
            Ok(match raw.value_type() {
                None => Value::Null,
                Some(SqliteType::Double | SqliteType::Float) => {
                    Value::Float(<f64 as FromSql<st::Double, Sqlite>>::from_sql(raw)?)
                }
                Some(SqliteType::Text) => Value::Text(<String as FromSql<st::Text, Sqlite>>::from_sql(raw)?),
                Some(SqliteType::Binary) => {
                    Value::Bytes(<Vec<u8> as FromSql<st::Binary, Sqlite>>::from_sql(raw)?)
                }
                Some(_) => Value::Int(<i64 as FromSql<st::BigInt, Sqlite>>::from_sql(raw)?),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_text_keeps_every_digit() {
        use diesel::pg::data_types::PgNumeric;
        let n = |weight, scale, digits: Vec<i16>| numeric_text(PgNumeric::Positive { weight, scale, digits });
        assert_eq!(n(0, 2, vec![12, 5000]), "12.50");
        assert_eq!(n(1, 0, vec![1, 2345]), "12345");
        assert_eq!(n(-1, 4, vec![5]), "0.0005");
        assert_eq!(n(0, 0, vec![]), "0");
        assert_eq!(numeric_text(PgNumeric::Negative { weight: 0, scale: 1, digits: vec![3, 1000] }), "-3.1");
    }
}
