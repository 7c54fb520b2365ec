//! MySQL/MariaDB: the query runs as a prepared statement (binary protocol) on a mysql_async
//! connection of the pool's, rows read one at a time into the Arrow builders. The column types
//! come from the result's metadata: decimal precision and scale, binary or text collation.
//! The session runs in UTC (`time_zone = '+00:00'`), as keel stores `DATETIME` in UTC.

use chrono::{Datelike as _, NaiveDate};
use keel_pool::{Backend, Pool};
use keel_repo::raw::{Params, Value};
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable as _;
use tokio::sync::oneshot;

use crate::columns::{Builder, Columns, Kind, decimal_text};
use crate::{Error, Options};

/// MySQL's character set number for binary data.
const BINARY_CHARSET: u16 = 63;

fn db(e: mysql_async::Error) -> Error {
    Error::Db(keel_pool::Error::invalid_input(format!("MySQL: {e}")))
}

fn kind(c: &mysql_async::Column) -> Result<Kind, Error> {
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let binary = c.character_set() == BINARY_CHARSET;
    let name = c.name_str();
    Ok(match c.column_type() {
        ColumnType::MYSQL_TYPE_TINY if c.column_length() == 1 => Kind::Bool,
        ColumnType::MYSQL_TYPE_TINY | ColumnType::MYSQL_TYPE_SHORT | ColumnType::MYSQL_TYPE_INT24 => {
            Kind::Int32
        }
        ColumnType::MYSQL_TYPE_YEAR => Kind::Int32,
        ColumnType::MYSQL_TYPE_LONG if !unsigned => Kind::Int32,
        ColumnType::MYSQL_TYPE_LONG => Kind::Int64,
        ColumnType::MYSQL_TYPE_LONGLONG if unsigned => Kind::UInt64,
        ColumnType::MYSQL_TYPE_LONGLONG => Kind::Int64,
        ColumnType::MYSQL_TYPE_FLOAT => Kind::Float32,
        ColumnType::MYSQL_TYPE_DOUBLE => Kind::Float64,
        ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => {
            let scale = c.decimals();
            let precision =
                c.column_length().saturating_sub(u32::from(scale > 0)).saturating_sub(u32::from(!unsigned));
            if precision > 38 || precision == 0 {
                return Err(Error::UnsupportedType {
                    column: name.into_owned(),
                    db_type: format!("DECIMAL({precision},{scale}) (Decimal128 holds 1 to 38 digits)"),
                });
            }
            Kind::Decimal(precision as u8, scale as i8)
        }
        ColumnType::MYSQL_TYPE_STRING if binary => Kind::FixedBinary(c.column_length() as i32),
        ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB
            if binary =>
        {
            Kind::Binary
        }
        ColumnType::MYSQL_TYPE_STRING
        | ColumnType::MYSQL_TYPE_VARCHAR
        | ColumnType::MYSQL_TYPE_VAR_STRING
        | ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB
        | ColumnType::MYSQL_TYPE_JSON
        | ColumnType::MYSQL_TYPE_ENUM
        | ColumnType::MYSQL_TYPE_SET => Kind::Text,
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => Kind::Date,
        ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIMESTAMP2 => Kind::Timestamp(true),
        other => {
            return Err(Error::UnsupportedType { column: name.into_owned(), db_type: format!("{other:?}") });
        }
    })
}

/// A keel parameter as a mysql_async value, stored as keel stores it (UUIDs as 16 bytes,
/// timestamps as UTC `DATETIME`).
fn param(v: Value) -> mysql_async::Value {
    use chrono::Timelike as _;
    use mysql_async::Value as M;
    let datetime = |t: chrono::NaiveDateTime| {
        M::Date(
            t.year() as u16,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.nanosecond() / 1000,
        )
    };
    match v {
        Value::Bool(b) => M::Int(i64::from(b)),
        Value::Int(i) => M::Int(i),
        Value::Float(f) => M::Double(f),
        Value::Text(t) | Value::Decimal(t) => M::Bytes(t.into_bytes()),
        Value::Bytes(b) => M::Bytes(b),
        Value::Uuid(u) => M::Bytes(u.as_bytes().to_vec()),
        Value::Date(d) => datetime(d.and_hms_opt(0, 0, 0).unwrap_or_default()),
        Value::Time(t) => {
            M::Time(false, 0, t.hour() as u8, t.minute() as u8, t.second() as u8, t.nanosecond() / 1000)
        }
        Value::DateTime(t) => datetime(t),
        Value::Timestamp(t) => datetime(t.naive_utc()),
        _ => M::NULL,
    }
}

fn days(y: u16, m: u8, d: u8) -> Option<i32> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some((NaiveDate::from_ymd_opt(i32::from(y), u32::from(m), u32::from(d))? - epoch).num_days() as i32)
}

fn append(builder: &mut Builder, v: mysql_async::Value) -> Result<(), String> {
    use mysql_async::Value as M;
    let mismatch = |v: &M| format!("unexpected MySQL value {v:?}");
    match (builder, v) {
        (b, M::NULL) => b.append_null(),
        (Builder::Bool(b), M::Int(i)) => b.append_value(i != 0),
        (Builder::Int32(b), M::Int(i)) => b.append_value(i32::try_from(i).map_err(|e| e.to_string())?),
        (Builder::Int32(b), M::UInt(i)) => b.append_value(i32::try_from(i).map_err(|e| e.to_string())?),
        (Builder::Int64(b), M::Int(i)) => b.append_value(i),
        (Builder::Int64(b), M::UInt(i)) => b.append_value(i64::try_from(i).map_err(|e| e.to_string())?),
        (Builder::UInt64(b), M::UInt(i)) => b.append_value(i),
        (Builder::UInt64(b), M::Int(i)) => b.append_value(u64::try_from(i).map_err(|e| e.to_string())?),
        (Builder::Float32(b), M::Float(f)) => b.append_value(f),
        (Builder::Float64(b), M::Double(f)) => b.append_value(f),
        (Builder::Float64(b), M::Float(f)) => b.append_value(f64::from(f)),
        (Builder::Text(b), M::Bytes(t)) => {
            b.append_value(std::str::from_utf8(&t).map_err(|e| e.to_string())?)
        }
        (Builder::Binary(b), M::Bytes(t)) => b.append_value(t),
        (Builder::Fixed(b), M::Bytes(t)) => b.append_value(t).map_err(|e| e.to_string())?,
        (Builder::Decimal(b, scale), M::Bytes(t)) => {
            let text = std::str::from_utf8(&t).map_err(|e| e.to_string())?;
            b.append_value(decimal_text(text, *scale)?)
        }
        (Builder::Date(b), M::Date(y, m, d, ..)) => match days(y, m, d) {
            Some(days) => b.append_value(days),
            None => b.append_null(), // MySQL's zero date
        },
        (Builder::Timestamp(b), M::Date(y, m, d, h, mi, s, us)) => match days(y, m, d) {
            Some(days) => b.append_value(
                i64::from(days) * 86_400_000_000
                    + (i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)) * 1_000_000
                    + i64::from(us),
            ),
            None => b.append_null(),
        },
        (_, v) => return Err(mismatch(&v)),
    }
    Ok(())
}

/// `sql` with `:name` parameters as a statement with `?` placeholders and its values.
pub(crate) fn raw_statement(sql: &str, params: &Params) -> Result<(String, Vec<mysql_async::Value>), Error> {
    let (text, values) = keel_repo::raw::positional(sql, Backend::Mysql, params)?;
    Ok((text, values.into_iter().map(param).collect()))
}

/// Starts the statement `text` with `values` for its `?` placeholders; the schema comes back at
/// once, the batches through `tx`.
pub(crate) async fn start(
    pool: &Pool,
    (text, values): (String, Vec<mysql_async::Value>),
    options: &Options,
    tx: crate::BatchTx,
) -> Result<arrow_schema::SchemaRef, Error> {
    let mut conn = pool.mysql_client().await?;
    conn.query_drop("SET time_zone = '+00:00'").await.map_err(db)?;
    let (schema_tx, schema_rx) = oneshot::channel();
    let batch_rows = options.batch_rows;
    tokio::spawn(async move {
        let params = if values.is_empty() {
            mysql_async::Params::Empty
        } else {
            mysql_async::Params::Positional(values)
        };
        let mut result = match conn.exec_iter(text, params).await {
            Ok(r) => r,
            Err(e) => return drop(schema_tx.send(Err(db(e)))),
        };
        let specs: Result<Vec<(String, Kind)>, Error> =
            result.columns_ref().iter().map(|c| Ok((c.name_str().into_owned(), kind(c)?))).collect();
        let mut columns = match specs.and_then(|s| Columns::new(&s, batch_rows)) {
            Ok(c) => c,
            Err(e) => return drop(schema_tx.send(Err(e))),
        };
        if schema_tx.send(Ok(columns.schema.clone())).is_err() {
            return;
        }
        loop {
            let row = match result.next().await {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return drop(tx.send(Err(db(e))).await),
            };
            for (i, v) in row.unwrap().into_iter().enumerate() {
                if let Err(m) = append(&mut columns.builders[i], v) {
                    return drop(tx.send(Err(Error::value(&columns.names[i], m))).await);
                }
            }
            columns.rows += 1;
            if columns.rows == batch_rows && tx.send(columns.finish()).await.is_err() {
                return;
            }
        }
        if columns.rows > 0 {
            let _ = tx.send(columns.finish()).await;
        }
    });
    schema_rx.await.unwrap_or_else(|_| Err(Error::value("?", "the MySQL reader stopped")))
}
