//! The tokio-postgres baseline (PostgreSQL only): statements prepared once per session, one
//! session per pool slot shared (pipelined) by reads and one locked by transactions.

use std::sync::Arc;

use anyhow::{Result, bail};
use keel_demo::load::Workload;
use keel_pool::Config;
use keel_schema::{Id, NewUser};
use rand::Rng;

use crate::diesel::Op;

const PG_POINT: &str = "SELECT id, name, email, created_at FROM users WHERE id = $1";
const PG_JOIN: &str = "SELECT u.id, j.user_id FROM users u LEFT JOIN jobs j ON j.user_id = u.id \
                       WHERE u.id = $1 ORDER BY j.created_at, j.id";

const PG_INSERT_USER: &str = "INSERT INTO users (id, name, email, created_at) VALUES ($1, $2, $3, $4)";
const PG_SEEN: &str = "SELECT count(*) FROM transfers WHERE idempotency_key = $1";
const PG_UPDATE: &str = "UPDATE accounts SET balance_cents = balance_cents + $1::bigint \
                         WHERE id = $2 AND balance_cents >= -$1::bigint";
const PG_INSERT_TRANSFER: &str = "INSERT INTO transfers (id, from_account, to_account, amount_cents, \
                                  idempotency_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// Statements prepared once per session, as a tokio-postgres service would.
struct Prepared {
    point: tokio_postgres::Statement,
    join: tokio_postgres::Statement,
    insert_user: tokio_postgres::Statement,
    seen: tokio_postgres::Statement,
    update: tokio_postgres::Statement,
    insert_transfer: tokio_postgres::Statement,
}

impl Prepared {
    async fn on(c: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Prepared {
            point: c.prepare(PG_POINT).await?,
            join: c.prepare(PG_JOIN).await?,
            insert_user: c.prepare(PG_INSERT_USER).await?,
            seen: c.prepare(PG_SEEN).await?,
            update: c.prepare(PG_UPDATE).await?,
            insert_transfer: c.prepare(PG_INSERT_TRANSFER).await?,
        })
    }
}

pub(crate) struct PgClient {
    client: tokio::sync::Mutex<(tokio_postgres::Client, Prepared)>,
    shared: (tokio_postgres::Client, Prepared),
}

pub(crate) async fn clients(config: &Config, n: usize) -> Result<Vec<Arc<PgClient>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // Two sessions per slot: one shared by reads (pipelined), one locked by transactions.
        // keel's own connector, so the baseline runs with the same TLS setting as keel.
        let (pg_config, tls) = keel_pool::tls::tokio_postgres_connector(config)?;
        let connect = || async {
            let (client, conn) = pg_config.connect(tls.clone()).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(client)
        };
        let (a, b) = (connect().await?, connect().await?);
        let (pa, pb) = (Prepared::on(&a).await?, Prepared::on(&b).await?);
        out.push(Arc::new(PgClient { client: tokio::sync::Mutex::new((a, pa)), shared: (b, pb) }));
    }
    Ok(out)
}

pub(crate) async fn op(c: &PgClient, workload: Workload, id: Id, other: Id) -> Op {
    match workload {
        Workload::PointSelect => {
            let (client, p) = &c.shared;
            let row = client.query_one(&p.point, &[&id.0]).await?;
            Ok(row.get::<_, uuid::Uuid>(0) == id.0)
        }
        Workload::Join => {
            let (client, p) = &c.shared;
            let rows = client.query(&p.join, &[&id.0]).await?;
            Ok(!rows.is_empty()
                && rows.iter().all(|r| {
                    r.get::<_, uuid::Uuid>(0) == id.0
                        && r.get::<_, Option<uuid::Uuid>>(1).is_none_or(|u| u == id.0)
                }))
        }
        Workload::Insert => {
            let mut guard = c.client.lock().await;
            let (client, p) = &mut *guard;
            let tx = client.transaction().await?;
            let new = NewUser::new("Load Insert", format!("tp.{}@example.com", Id::new()));
            tokio_postgres::Transaction::execute(
                &tx,
                &p.insert_user,
                &[&new.id.0, &new.name, &new.email, &new.created_at.0],
            )
            .await?;
            let row = tx.query_one(&p.point, &[&new.id.0]).await?;
            tx.commit().await?;
            Ok(row.get::<_, uuid::Uuid>(0) == new.id.0)
        }
        Workload::Transfer => {
            let amount: i64 = rand::rng().random_range(1..=100);
            let key = Id::new().to_string();
            let (first, second, d1, d2) = if id.as_bytes() < other.as_bytes() {
                (id, other, -amount, amount)
            } else {
                (other, id, amount, -amount)
            };
            let mut guard = c.client.lock().await;
            let (client, p) = &mut *guard;
            let tx = client.transaction().await?;
            if tx.query_one(&p.seen, &[&key]).await?.get::<_, i64>(0) > 0 {
                return Ok(false);
            }
            for (acct, delta) in [(first, d1), (second, d2)] {
                if tokio_postgres::Transaction::execute(&tx, &p.update, &[&delta, &acct.0]).await? != 1 {
                    tx.rollback().await?;
                    bail!("insufficient_funds");
                }
            }
            let values: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&Id::new().0, &id.0, &other.0, &amount, &key, &keel_schema::now().0];
            tokio_postgres::Transaction::execute(&tx, &p.insert_transfer, &values).await?;
            tx.commit().await?;
            Ok(true)
        }
        Workload::WriteRead => bail!("write-read is keel-only (raw::run refuses it)"),
    }
}
