//! Chunked multi-row `INSERT`s inside one transaction: a fast path of plain statements, and
//! on a refused row a second run with a savepoint per chunk that bisects the chunk to name the
//! failing row's index. SQLite runs the same loop on its synchronous connection.

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, TransactionManager as _};

use super::BulkRow;
use crate::classify::classify;
use crate::error::Error;
use crate::url::Backend;
use crate::{Conn, MysqlConnection, PgConnection};

/// Why a probe insert ended: it failed (the row is in this prefix) or it worked and was
/// rolled back on purpose.
enum Probe {
    Failed(DieselError),
    RolledBack,
}

impl From<DieselError> for Probe {
    fn from(e: DieselError) -> Self {
        Probe::Failed(e)
    }
}

/// Inserts `rows` in chunks on an async connection, each chunk under a savepoint. When a chunk
/// fails for a reason that retrying cannot fix, finds the first failing row by bisecting
/// prefixes of the chunk (each probe rolled back to its savepoint), so the error can name it.
macro_rules! insert_chunks_async {
    ($c:expr, $backend:expr, $rows:expr, $chunk_rows:expr, $do_nothing:expr, $locate:expr, $insert:path) => {{
        let c = $c;
        let mut total = 0usize;
        let mut failure = None;
        for (k, chunk) in $rows.chunks($chunk_rows).enumerate() {
            if !$locate {
                // The fast path: plain INSERTs; a failure aborts the batch and the caller
                // runs it again with `locate` to name the row.
                match $insert(&mut *c, chunk, $do_nothing).await {
                    Ok(n) => {
                        total += n;
                        continue;
                    }
                    Err(e) => {
                        failure = Some(classify($backend, e));
                        break;
                    }
                }
            }
            let done = match savepoint(c).await {
                Ok(()) => match $insert(&mut *c, chunk, $do_nothing).await {
                    Ok(n) => release(c).await.map(|()| n),
                    Err(e) => {
                        let _ = roll_back(c).await;
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            let e = match done {
                Ok(n) => {
                    total += n;
                    continue;
                }
                Err(e) => classify($backend, e),
            };
            if e.is_transient() {
                failure = Some(e);
                break;
            }
            let (mut ok, mut bad, mut err) = (0usize, chunk.len(), e);
            while bad - ok > 1 {
                let mid = ok + (bad - ok) / 2;
                let prefix = &chunk[..mid];
                let probe = match savepoint(c).await {
                    Ok(()) => {
                        let inserted = $insert(&mut *c, prefix, $do_nothing).await;
                        roll_back(c).await.and(inserted)
                    }
                    Err(e) => Err(e),
                };
                match probe {
                    Err(e) => {
                        bad = mid;
                        err = classify($backend, e);
                    }
                    _ => ok = mid,
                }
            }
            failure = Some(Error::BulkRow { index: k * $chunk_rows + bad - 1, source: Box::new(err) });
            break;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(total),
        }
    }};
}

/// Opens a savepoint (the connection is inside keel's transaction, so diesel's transaction
/// manager nests).
async fn savepoint<C: AsyncConnection>(c: &mut C) -> QueryResult<()> {
    C::TransactionManager::begin_transaction(c).await
}

async fn release<C: AsyncConnection>(c: &mut C) -> QueryResult<()> {
    C::TransactionManager::commit_transaction(c).await
}

async fn roll_back<C: AsyncConnection>(c: &mut C) -> QueryResult<()> {
    C::TransactionManager::rollback_transaction(c).await
}

/// The SQLite version of [`insert_chunks_async!`], run on the blocking pool. Returns the row
/// count, or the failing row's index and error.
fn insert_chunks_sqlite<R: BulkRow>(
    c: &mut diesel::SqliteConnection,
    rows: &[R],
    chunk_rows: usize,
    do_nothing: bool,
    locate: bool,
) -> QueryResult<std::result::Result<usize, (Option<usize>, DieselError)>> {
    let mut total = 0usize;
    for (k, chunk) in rows.chunks(chunk_rows).enumerate() {
        if !locate {
            match R::insert_sqlite(c, chunk, do_nothing) {
                Ok(n) => {
                    total += n;
                    continue;
                }
                Err(e) => return Ok(Err((None, e))),
            }
        }
        let e = match c.transaction(|c| R::insert_sqlite(c, chunk, do_nothing)) {
            Ok(n) => {
                total += n;
                continue;
            }
            Err(e) => e,
        };
        if classify(Backend::Sqlite, clone_error(&e)).is_transient() {
            return Ok(Err((None, e)));
        }
        let (mut ok, mut bad, mut err) = (0usize, chunk.len(), e);
        while bad - ok > 1 {
            let mid = ok + (bad - ok) / 2;
            let probe = c.transaction::<(), Probe, _>(|c| {
                R::insert_sqlite(c, &chunk[..mid], do_nothing)?;
                Err(Probe::RolledBack)
            });
            match probe {
                Err(Probe::Failed(e)) => {
                    bad = mid;
                    err = e;
                }
                _ => ok = mid,
            }
        }
        return Ok(Err((Some(k * chunk_rows + bad - 1), err)));
    }
    Ok(Ok(total))
}

/// A copy of a diesel error good enough to classify (diesel errors are not `Clone`).
fn clone_error(e: &DieselError) -> DieselError {
    match e {
        DieselError::DatabaseError(kind, info) => {
            DieselError::DatabaseError(*kind, Box::new(info.message().to_owned()))
        }
        other => DieselError::QueryBuilderError(other.to_string().into()),
    }
}
/// Inserts `rows` in chunks of `chunk_rows` on `conn` (inside the caller's transaction); with
/// `locate`, each chunk under a savepoint so a refused row can be found by its index.
pub(super) async fn insert_chunks<R: BulkRow>(
    conn: &mut Conn,
    rows: &[R],
    chunk_rows: usize,
    do_nothing: bool,
    locate: bool,
) -> Result<usize, Error> {
    match conn {
        Conn::Postgres(c) => {
            let c: &mut PgConnection = &mut *c;
            insert_chunks_async!(c, Backend::Postgres, rows, chunk_rows, do_nothing, locate, R::insert_pg)
        }
        Conn::Mysql(c) => {
            let c: &mut MysqlConnection = &mut *c;
            insert_chunks_async!(c, Backend::Mysql, rows, chunk_rows, do_nothing, locate, R::insert_mysql)
        }
        Conn::Sqlite(c) => {
            // diesel-async cannot send a multi-row INSERT to SQLite (diesel_async#277): run the
            // chunks on the wrapped synchronous connection, inside the open transaction.
            let owned = rows.to_vec();
            let outcome = c
                .spawn_blocking(move |sc| insert_chunks_sqlite(sc, &owned, chunk_rows, do_nothing, locate))
                .await
                .map_err(|e| classify(Backend::Sqlite, e))?;
            outcome.map_err(|(index, e)| {
                let source = classify(Backend::Sqlite, e);
                match index {
                    Some(index) => Error::BulkRow { index, source: Box::new(source) },
                    None => source,
                }
            })
        }
    }
}
