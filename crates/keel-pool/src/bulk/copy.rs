//! PostgreSQL binary `COPY … FROM STDIN` on a fresh tokio-postgres connection, retried on
//! transient failures. The column types come from the server (one `Describe` of the column
//! list), so the client encodes exactly what each column expects. A refused row is named by the
//! line number in PostgreSQL's error context; a value that does not fit its column, by its row
//! and column.

use std::time::Instant;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::BulkRow;
use crate::Pool;
use crate::classify::classify_postgres;
use crate::error::{Error, ErrorKind};

/// The input row a `COPY` error points at: PostgreSQL's context says `COPY users, line 73001`
/// (1-based, one line per row in binary format too).
fn copy_error_row(err: &tokio_postgres::Error) -> Option<usize> {
    let context = err.as_db_error()?.where_()?;
    let rest = context.split("line ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<usize>().ok()?.checked_sub(1)
}

fn copy_error(err: &tokio_postgres::Error) -> Error {
    let source = classify_postgres(err);
    match copy_error_row(err) {
        Some(index) if err.as_db_error().is_some() => Error::BulkRow { index, source: Box::new(source) },
        _ => source,
    }
}

/// `"a", "b"`: the column list, each name quoted.
fn column_list(columns: &[&str]) -> String {
    let quoted: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
    quoted.join(", ")
}

/// Why row `index` could not be encoded: the first column whose value does not fit its type.
fn encode_error<R: BulkRow>(index: usize, row: &R, types: &[Type], err: &tokio_postgres::Error) -> Error {
    let mut buf = bytes::BytesMut::new();
    let values = row.copy_values();
    let culprit = values.iter().zip(types).zip(R::COLUMNS).find_map(|((v, ty), column)| {
        buf.clear();
        v.to_sql_checked(ty, &mut buf).err().map(|e| format!("column {column} ({ty}): {e}"))
    });
    let message = culprit.unwrap_or_else(|| crate::connect::error_chain(err));
    Error::BulkRow { index, source: Box::new(Error::invalid_input(message)) }
}

/// One attempt at `COPY`ing `rows` in a transaction on a fresh tokio-postgres connection.
async fn copy_once<R: BulkRow>(pool: &Pool, rows: &[R]) -> Result<usize, Error> {
    let table = R::table_sql();
    let columns = column_list(R::COLUMNS);
    let mut client = pool.postgres_client().await?;
    let tx = client.transaction().await.map_err(|e| copy_error(&e))?;
    if pool.config().is_pgbouncer()
        && let Some(t) = pool.config().statement_timeout_limit()
    {
        // No startup option behind PgBouncer: the limit is set for this transaction.
        let sql = format!("SET LOCAL statement_timeout = {}", t.as_millis());
        tx.batch_execute(&sql).await.map_err(|e| copy_error(&e))?;
    }
    let described =
        tx.prepare(&format!("SELECT {columns} FROM {table} LIMIT 0")).await.map_err(|e| copy_error(&e))?;
    let types: Vec<Type> = described.columns().iter().map(|c| c.type_().clone()).collect();
    // Closed now, inside the transaction: behind PgBouncer the server session that knows the
    // statement is ours only until the commit.
    drop(described);
    let sql = format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary)");
    let sink = tx.copy_in(&sql).await.map_err(|e| copy_error(&e))?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for (index, row) in rows.iter().enumerate() {
        let values: Vec<&(dyn ToSql + Sync)> = row.copy_values();
        if let Err(e) = writer.as_mut().write(&values).await {
            // A value the client could not encode never reached the server: name it.
            if e.as_db_error().is_none() && !e.is_closed() {
                return Err(encode_error(index, row, &types, &e));
            }
            return Err(copy_error(&e));
        }
    }
    let n = writer.finish().await.map_err(|e| copy_error(&e))?;
    if let Err(e) = tx.commit().await {
        let err = classify_postgres(&e);
        if matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::ServerShutdown) {
            return Err(Error::CommitOutcomeUnknown { source: Box::new(err) });
        }
        return Err(err);
    }
    Ok(n as usize)
}

/// `COPY` with the pool's retry policy for transient failures (a failed `COPY` leaves nothing
/// behind, so it can run again).
pub(super) async fn copy_with_retry<R: BulkRow>(pool: &Pool, rows: &[R]) -> Result<usize, Error> {
    let policy = pool.config().retry_policy().clone();
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let err = match copy_once(pool, rows).await {
            Ok(n) => return Ok(n),
            Err(e) => e,
        };
        match policy.backoff(attempt, started.elapsed()) {
            Some(pause) if err.is_transient() => {
                tracing::info!(target: "keel::bulk", attempt, kind = err.kind().as_str(), error = %err, "COPY failed transiently; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            _ => return Err(err),
        }
    }
}
