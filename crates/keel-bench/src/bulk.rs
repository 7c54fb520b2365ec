//! `keel-bench bulk`: one bulk insert of fresh users in one transaction, timed — keel's
//! chunked multi-row path and COPY beside plain diesel multi-row and raw tokio-postgres COPY.

use std::time::Instant;

use anyhow::{Result, bail};
use diesel_async::{AsyncConnection, RunQueryDsl};
use keel_pool::Config;
use keel_repo::{BatchMethod, BatchOptions, Repo};
use keel_schema::schema::users;
use keel_schema::{Id, NewUser};
use serde::Serialize;

use crate::diesel::{RawPool, raw_pool};

/// Options of `keel-bench bulk`.
#[derive(Debug, Clone, clap::Args)]
pub struct BulkArgs {
    /// keel-multirow, keel-copy, diesel-multirow, tokio-postgres-copy.
    #[arg(long)]
    pub method: String,
    /// Users to insert in one transaction.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
}

/// What one bulk insert measured.
#[derive(Debug, Clone, Serialize)]
pub struct BulkReport {
    /// The method.
    pub method: String,
    /// Backend name.
    pub backend: &'static str,
    /// Rows inserted.
    pub rows: usize,
    /// Seconds for the whole call.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_s: f64,
}

/// Plain diesel-async: 5,000-row INSERTs in one transaction.
macro_rules! multirow {
    ($c:expr, $rows:expr) => {
        $c.transaction::<_, diesel::result::Error, _>(async |c| {
            let mut n = 0;
            for chunk in $rows.chunks(5_000) {
                n += diesel::insert_into(users::table).values(chunk).execute(c).await?;
            }
            Ok(n)
        })
        .await?
    };
}

/// Inserts `rows` fresh users in one transaction by `method` and times it.
pub async fn bulk(config: Config, args: &BulkArgs) -> Result<BulkReport> {
    let tag = &Id::new().to_string()[24..];
    let rows: Vec<NewUser> = (0..args.rows)
        .map(|i| NewUser::new(format!("Bulk User {i}"), format!("bulk{i}.{tag}@example.com")))
        .collect();
    let backend = config.backend();
    let keel = keel_pool::Pool::connect(config.clone().max_size(2)).await?;
    let started;
    let n = match args.method.as_str() {
        "keel-multirow" | "keel-copy" => {
            let method = if args.method == "keel-copy" { BatchMethod::Copy } else { BatchMethod::MultiRow };
            let repo = Repo::new(keel.clone());
            started = Instant::now();
            repo.insert_users_with(&rows, &BatchOptions::new().method(method)).await?
        }
        "diesel-multirow" => {
            let pool = raw_pool(&config, 1, false).await?;
            started = Instant::now();
            let rows = &rows;
            match &pool {
                RawPool::Lite(p) => {
                    let mut c = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let owned = rows.clone();
                    c.spawn_blocking(move |c| {
                        diesel::Connection::transaction(c, |c| {
                            let mut n = 0;
                            for chunk in owned.chunks(5_000) {
                                n += diesel::RunQueryDsl::execute(
                                    diesel::insert_into(users::table).values(chunk),
                                    c,
                                )?;
                            }
                            Ok(n)
                        })
                    })
                    .await?
                }
                RawPool::Pg(p) => {
                    let mut c = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    multirow!(&mut *c, rows)
                }
                RawPool::My(p) => {
                    let mut c = p.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    multirow!(&mut *c, rows)
                }
            }
        }
        "tokio-postgres-copy" => {
            use tokio_postgres::binary_copy::BinaryCopyInWriter;
            use tokio_postgres::types::Type;
            let (pg_config, tls) = keel_pool::tls::tokio_postgres_connector(&config)?;
            let (mut client, conn) = pg_config.connect(tls).await?;
            tokio::spawn(conn);
            started = Instant::now();
            let tx = client.transaction().await?;
            let sink =
                tx.copy_in("COPY users (id, name, email, created_at) FROM STDIN (FORMAT binary)").await?;
            let mut w = std::pin::pin!(BinaryCopyInWriter::new(
                sink,
                &[Type::UUID, Type::VARCHAR, Type::VARCHAR, Type::TIMESTAMPTZ]
            ));
            for r in &rows {
                w.as_mut().write(&[&r.id.0, &r.name, &r.email, &r.created_at.0]).await?;
            }
            let n = w.finish().await?;
            tx.commit().await?;
            n as usize
        }
        other => bail!("unknown bulk method {other:?}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    if n != args.rows {
        bail!("inserted {n} rows, expected {}", args.rows);
    }
    Ok(BulkReport {
        method: args.method.clone(),
        backend: backend.as_str(),
        rows: n,
        seconds,
        rows_per_s: n as f64 / seconds,
    })
}
