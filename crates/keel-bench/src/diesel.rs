//! The diesel-async + bb8 baseline with no keel layers: bb8's defaults (a ping on every
//! checkout) or without that ping, and the same queries as keel's repository.

use anyhow::{Result, bail};
use diesel::prelude::*;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection as _};
use keel_demo::load::Workload;
use keel_pool::{Backend, Config};
use keel_schema::schema::{accounts, jobs, transfers, users};
use keel_schema::{Id, Job, NewTransfer, NewUser, User};
use rand::Rng;

type PgPool = bb8::Pool<AsyncDieselConnectionManager<diesel_async::AsyncPgConnection>>;
type MyPool = bb8::Pool<AsyncDieselConnectionManager<diesel_async::AsyncMysqlConnection>>;
type LitePool = bb8::Pool<AsyncDieselConnectionManager<keel_pool::SqliteConnection>>;

#[derive(Clone)]
pub(crate) enum RawPool {
    Pg(PgPool),
    My(MyPool),
    Lite(LitePool),
}

/// Runs one diesel body on a checked-out raw connection of whichever backend.
macro_rules! with_raw {
    ($pool:expr, |$c:ident| $body:expr) => {
        match $pool {
            RawPool::Pg(p) => {
                let mut conn = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let $c: &mut diesel_async::AsyncPgConnection = &mut conn;
                $body
            }
            RawPool::My(p) => {
                let mut conn = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let $c: &mut diesel_async::AsyncMysqlConnection = &mut conn;
                $body
            }
            RawPool::Lite(p) => {
                let mut conn = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                let $c: &mut keel_pool::SqliteConnection = &mut conn;
                $body
            }
        }
    };
}

pub(crate) async fn raw_pool(config: &Config, size: u32, ping: bool) -> Result<RawPool> {
    let url = config.url().expose_secret().to_owned();
    fn builder<M: bb8::ManageConnection>(size: u32, ping: bool) -> bb8::Builder<M> {
        bb8::Pool::builder().max_size(size).test_on_check_out(ping)
    }
    // Connections are opened the way keel opens its own (same URL handling, TLS mode and
    // keepalive), so TLS costs the baseline what it costs keel.
    let bad = |e: keel_pool::Error| diesel::ConnectionError::BadConnection(e.to_string());
    Ok(match config.backend() {
        Backend::Postgres => {
            let (pg_config, tls) = keel_pool::tls::tokio_postgres_connector(config)?;
            let mut manager_config = diesel_async::pooled_connection::ManagerConfig::default();
            manager_config.custom_setup = Box::new(move |_url| {
                let (pg_config, tls) = (pg_config.clone(), tls.clone());
                Box::pin(async move {
                    let (client, conn) = pg_config
                        .connect(tls)
                        .await
                        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                    diesel_async::AsyncPgConnection::try_from_client_and_connection(client, conn).await
                })
            });
            RawPool::Pg(
                builder(size, ping)
                    .build(AsyncDieselConnectionManager::new_with_config(url, manager_config))
                    .await?,
            )
        }
        Backend::Mysql => {
            let config = config.clone();
            let mut manager_config = diesel_async::pooled_connection::ManagerConfig::default();
            manager_config.custom_setup = Box::new(move |_url| {
                let config = config.clone();
                Box::pin(async move { keel_pool::tls::mysql_connection(&config).await.map_err(bad) })
            });
            RawPool::My(
                builder(size, ping)
                    .build(AsyncDieselConnectionManager::new_with_config(url, manager_config))
                    .await?,
            )
        }
        Backend::Sqlite => {
            let path = match config.url().sqlite_target() {
                Some(keel_pool::SqliteTarget::File(p)) => p.clone(),
                _ => bail!("the SQLite baseline needs a file database"),
            };
            let mut manager_config = diesel_async::pooled_connection::ManagerConfig::default();
            manager_config.custom_setup = Box::new(|url| {
                let url = url.to_owned();
                Box::pin(async move {
                    let mut c = keel_pool::SqliteConnection::establish(&url).await?;
                    c.batch_execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                        .await
                        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                    Ok(c)
                })
            });
            RawPool::Lite(
                builder(size, ping)
                    .build(AsyncDieselConnectionManager::new_with_config(path, manager_config))
                    .await?,
            )
        }
    })
}

/// Outcome of one raw operation: `Ok(true)` right, `Ok(false)` wrong, `Err` failed.
pub(crate) type Op = Result<bool>;

pub(crate) async fn op(pool: &RawPool, workload: Workload, id: Id, other: Id) -> Op {
    match workload {
        Workload::PointSelect => with_raw!(pool, |c| {
            let u: User = users::table.find(id).select(User::as_select()).first(c).await?;
            Ok(u.id == id)
        }),
        Workload::Join => with_raw!(pool, |c| {
            let rows: Vec<(User, Option<Job>)> = users::table
                .left_join(jobs::table)
                .filter(users::id.eq(id))
                .order((jobs::created_at, jobs::id))
                .select((User::as_select(), Option::<Job>::as_select()))
                .load(c)
                .await?;
            Ok(!rows.is_empty()
                && rows.iter().all(|(u, j)| u.id == id && j.as_ref().is_none_or(|j| j.user_id == id)))
        }),
        Workload::Insert => {
            let new = NewUser::new("Load Insert", format!("raw.{}@example.com", Id::new()));
            let new = &new;
            with_raw!(pool, |c| {
                let u: User = c
                    .transaction::<_, diesel::result::Error, _>(async |c| {
                        diesel::insert_into(users::table).values(new).execute(c).await?;
                        users::table.find(new.id).select(User::as_select()).first(c).await
                    })
                    .await?;
                Ok(u.id == new.id)
            })
        }
        Workload::Transfer => {
            let amount: i64 = rand::rng().random_range(1..=100);
            let row = NewTransfer {
                id: Id::new(),
                from_account: id,
                to_account: other,
                amount_cents: amount,
                idempotency_key: Id::new().to_string(),
                created_at: keel_schema::now(),
            };
            let row = &row;
            let (first, second, d1, d2) = if id.as_bytes() < other.as_bytes() {
                (id, other, -amount, amount)
            } else {
                (other, id, amount, -amount)
            };
            with_raw!(pool, |c| {
                let applied = c
                    .transaction::<_, diesel::result::Error, _>(async |c| {
                        let seen: i64 = transfers::table
                            .filter(transfers::idempotency_key.eq(&row.idempotency_key))
                            .count()
                            .get_result(c)
                            .await?;
                        if seen > 0 {
                            return Ok(false);
                        }
                        for (acct, delta) in [(first, d1), (second, d2)] {
                            let n = diesel::update(
                                accounts::table
                                    .filter(accounts::id.eq(acct))
                                    .filter(accounts::balance_cents.ge(-delta)),
                            )
                            .set(accounts::balance_cents.eq(accounts::balance_cents + delta))
                            .execute(c)
                            .await?;
                            if n != 1 {
                                return Err(diesel::result::Error::RollbackTransaction);
                            }
                        }
                        diesel::insert_into(transfers::table).values(row).execute(c).await?;
                        Ok(true)
                    })
                    .await;
                match applied {
                    Ok(ok) => Ok(ok),
                    Err(diesel::result::Error::RollbackTransaction) => {
                        Err(anyhow::anyhow!("insufficient_funds"))
                    }
                    Err(e) => Err(e.into()),
                }
            })
        }
        Workload::WriteRead => bail!("write-read is keel-only (raw::run refuses it)"),
    }
}
