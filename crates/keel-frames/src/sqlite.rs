//! SQLite: rows read one at a time on the connection's blocking thread. SQLite types values,
//! not columns, so a column's Arrow type is its first non-NULL value's storage class in the
//! first batch (INTEGER → Int64, REAL → Float64, TEXT → Utf8, BLOB → Binary; all NULL → Utf8).
//! Later integers in a REAL column become floats, and numbers in a TEXT column their text; any
//! other mix is an error naming the column.

use keel_pool::{Conn, Pool};
use keel_repo::raw::{Params, Row, Value};
use tokio::sync::oneshot;

use crate::columns::{Builder, Columns, Kind};
use crate::{Error, Options};

fn kind_of(rows: &[Row], i: usize) -> Kind {
    let first = rows.iter().filter_map(|r| r.iter().nth(i).map(|(_, v)| v)).find(|v| **v != Value::Null);
    match first {
        Some(Value::Int(_)) => Kind::Int64,
        Some(Value::Float(_)) => Kind::Float64,
        Some(Value::Bytes(_)) => Kind::Binary,
        _ => Kind::Text,
    }
}

fn append(builder: &mut Builder, v: &Value) -> Result<(), String> {
    match (builder, v) {
        (b, Value::Null) => b.append_null(),
        (Builder::Int64(b), Value::Int(i)) => b.append_value(*i),
        (Builder::Float64(b), Value::Float(f)) => b.append_value(*f),
        (Builder::Float64(b), Value::Int(i)) => b.append_value(*i as f64),
        (Builder::Text(b), Value::Text(t)) => b.append_value(t),
        (Builder::Text(b), Value::Int(i)) => b.append_value(i.to_string()),
        (Builder::Text(b), Value::Float(f)) => b.append_value(f.to_string()),
        (Builder::Binary(b), Value::Bytes(x)) => b.append_value(x),
        (_, v) => {
            return Err(format!(
                "SQLite value {v:?} does not fit the column's type (taken from its first value)"
            ));
        }
    }
    Ok(())
}

fn append_row(columns: &mut Columns, row: &Row) -> Result<(), Error> {
    for (i, (_, v)) in row.iter().enumerate() {
        if let Some(b) = columns.builders.get_mut(i) {
            append(b, v).map_err(|m| Error::value(&columns.names[i], m))?;
        }
    }
    columns.rows += 1;
    Ok(())
}

/// What the reader runs on the connection's blocking thread: it hands each row to the callback
/// (which returns `false` to stop) and says how the read ended.
pub(crate) type Source =
    Box<dyn FnOnce(&mut diesel::SqliteConnection, &mut dyn FnMut(Row) -> bool) -> Result<(), Error> + Send>;

/// `sql` with `params` as a [`Source`].
pub(crate) fn raw_source(sql: &str, params: &Params) -> Source {
    let (sql, params) = (sql.to_owned(), params.clone());
    Box::new(move |conn, each| {
        keel_repo::raw::for_each_sqlite(conn, &sql, &params, each).map_err(Error::from)
    })
}

/// Starts reading `source`; the schema comes back once the first batch is read, the batches
/// through `tx`.
pub(crate) async fn start(
    pool: &Pool,
    source: Source,
    options: &Options,
    tx: crate::BatchTx,
) -> Result<arrow_schema::SchemaRef, Error> {
    let mut conn = pool.get().await?;
    let (schema_tx, schema_rx) = oneshot::channel::<Result<arrow_schema::SchemaRef, Error>>();
    let batch_rows = options.batch_rows;
    tokio::spawn(async move {
        let Conn::Sqlite(c) = &mut conn else {
            return drop(schema_tx.send(Err(Error::value("?", "not a SQLite connection"))));
        };
        let wrapper: &mut keel_pool::SqliteConnection = c;
        let job = wrapper.spawn_blocking(move |sync| {
            let mut first: Vec<Row> = Vec::new();
            let mut columns: Option<Columns> = None;
            let mut schema_tx = Some(schema_tx);
            let mut failed: Option<Error> = None;
            let start = |first: &[Row]| {
                let names: Vec<String> =
                    first.first().map(|r| r.columns().map(str::to_owned).collect()).unwrap_or_default();
                let specs: Vec<(String, Kind)> =
                    names.into_iter().enumerate().map(|(i, n)| (n, kind_of(first, i))).collect();
                Columns::new(&specs, batch_rows)
            };
            let read = source(sync, &mut |row| {
                let Some(cols) = columns.as_mut() else {
                    first.push(row);
                    if first.len() < batch_rows {
                        return true;
                    }
                    match start(&first) {
                        Ok(mut c) => {
                            let rows = std::mem::take(&mut first);
                            if let Some(s) = schema_tx.take() {
                                let _ = s.send(Ok(c.schema.clone()));
                            }
                            for r in &rows {
                                if let Err(e) = append_row(&mut c, r) {
                                    failed = Some(e);
                                    return false;
                                }
                            }
                            let ok = tx.blocking_send(c.finish()).is_ok();
                            columns = Some(c);
                            return ok;
                        }
                        Err(e) => {
                            failed = Some(e);
                            return false;
                        }
                    }
                };
                if let Err(e) = append_row(cols, &row) {
                    failed = Some(e);
                    return false;
                }
                cols.rows < batch_rows || tx.blocking_send(cols.finish()).is_ok()
            });
            let outcome = match (read, failed) {
                (Err(e), _) => Err(e),
                (Ok(()), Some(e)) => Err(e),
                (Ok(()), None) => Ok(()),
            };
            let mut last = columns.map(Ok).unwrap_or_else(|| start(&first));
            if let Ok(c) = &mut last
                && c.rows == 0
            {
                for r in &first {
                    if let Err(e) = append_row(c, r) {
                        let _ = tx.blocking_send(Err(e));
                        return Ok(());
                    }
                }
            }
            match (schema_tx.take(), outcome, last) {
                (Some(s), Err(e), _) | (Some(s), Ok(()), Err(e)) => drop(s.send(Err(e))),
                (Some(s), Ok(()), Ok(mut c)) => {
                    let _ = s.send(Ok(c.schema.clone()));
                    if c.rows > 0 {
                        let _ = tx.blocking_send(c.finish());
                    }
                }
                (None, Err(e), _) | (None, Ok(()), Err(e)) => drop(tx.blocking_send(Err(e))),
                (None, Ok(()), Ok(mut c)) => {
                    if c.rows > 0 {
                        let _ = tx.blocking_send(c.finish());
                    }
                }
            }
            Ok(())
        });
        let _ = job.await;
    });
    schema_rx.await.unwrap_or_else(|_| Err(Error::value("?", "the SQLite reader stopped")))
}
