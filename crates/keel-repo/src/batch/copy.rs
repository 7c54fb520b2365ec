//! PostgreSQL binary `COPY … FROM STDIN` on a fresh tokio-postgres connection, retried on
//! transient failures; a refused row is named by the line number in PostgreSQL's error context.

use std::time::Instant;

use keel_pool::ErrorKind;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

use super::BatchRow;
use crate::Repo;
use crate::error::{Error, Result};

/// The input row a `COPY` error points at: PostgreSQL's context says `COPY users, line 73001`
/// (1-based, one line per row in binary format too).
fn copy_error_row(err: &tokio_postgres::Error) -> Option<usize> {
    let context = err.as_db_error()?.where_()?;
    let rest = context.split("line ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<usize>().ok()?.checked_sub(1)
}

fn copy_error(err: &tokio_postgres::Error) -> Error {
    let source = keel_pool::classify_postgres(err);
    match copy_error_row(err) {
        Some(index) if err.as_db_error().is_some() => Error::BatchRow { index, source },
        _ => Error::Db(source),
    }
}

/// One attempt at `COPY`ing `rows` in a transaction on a fresh tokio-postgres connection.
async fn copy_once<R: BatchRow>(pool: &keel_pool::Pool, rows: &[R]) -> Result<usize> {
    let mut client = pool.postgres_client().await?;
    let tx = client.transaction().await.map_err(|e| copy_error(&e))?;
    let sink = tx.copy_in(R::COPY_SQL).await.map_err(|e| copy_error(&e))?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, R::COPY_TYPES));
    for row in rows {
        writer.as_mut().write(&row.copy_values()).await.map_err(|e| copy_error(&e))?;
    }
    let n = writer.finish().await.map_err(|e| copy_error(&e))?;
    if let Err(e) = tx.commit().await {
        let err = keel_pool::classify_postgres(&e);
        if matches!(err.kind(), ErrorKind::ConnectionLost | ErrorKind::ServerShutdown) {
            return Err(keel_pool::Error::CommitOutcomeUnknown { source: Box::new(err) }.into());
        }
        return Err(err.into());
    }
    Ok(n as usize)
}
impl Repo {
    /// `COPY` with the pool's retry policy for transient failures (a failed `COPY` leaves
    /// nothing behind, so it can run again).
    pub(super) async fn copy_with_retry<R: BatchRow>(&self, rows: &[R]) -> Result<usize> {
        let policy = self.pool.config().retry_policy().clone();
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let err = match copy_once(&self.pool, rows).await {
                Ok(n) => return Ok(n),
                Err(e) => e,
            };
            match policy.backoff(attempt, started.elapsed()) {
                Some(pause) if err.is_transient() => {
                    tracing::info!(target: "keel::repo", attempt, kind = err.as_str(), error = %err, "COPY failed transiently; retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                _ => return Err(err),
            }
        }
    }
}
