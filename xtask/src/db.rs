//! `cargo xtask migrate` and `cargo xtask db status`: the embedded migrations applied to one
//! database, and per backend whether its server is reachable, its version and which
//! migrations are applied or pending. Default URLs come from `keel_test::servers`.

use anyhow::{Context, Result};
use keel_pool::{Backend, Config, Pool};
use keel_test::servers;

/// The URL of `backend` when none was given: the given one if it is of that backend, else the
/// test server's (or the SQLite default file).
fn url_for(backend: Backend, given: Option<&Config>) -> String {
    match (given, backend) {
        (Some(c), b) if c.backend() == b => c.url().expose_secret().to_owned(),
        (_, b) => servers::server_url(b).unwrap_or_else(|| servers::SQLITE_URL.to_owned()),
    }
}

/// Applies pending migrations to `url` (default: the SQLite default file).
pub async fn migrate(url: Option<&str>) -> Result<()> {
    let config = Config::new(url.unwrap_or(servers::SQLITE_URL))?;
    println!("migrating {}", config.url());
    let pool = Pool::connect(config).await.context("connecting")?;
    let applied = pool.migrate(&keel_schema::MIGRATIONS).await.context("running migrations")?;
    if applied.is_empty() {
        println!("up to date");
    }
    for v in applied {
        println!("applied {v}");
    }
    Ok(())
}

/// Prints, per backend, reachability, server version and migration status.
pub async fn status(url: Option<&str>) -> Result<()> {
    let given = url.map(Config::new).transpose()?;
    for backend in Backend::ALL {
        let url = url_for(backend, given.as_ref());
        let config = Config::new(&url)?.connect_timeout(std::time::Duration::from_secs(2));
        println!("{backend:<8} {}", config.url());
        let pool = match Pool::connect(config).await {
            Ok(pool) => pool,
            Err(e) => {
                println!("         reachable: no — {e}");
                continue;
            }
        };
        println!("         reachable: yes");
        match pool.server_version().await {
            Ok(v) => println!("         version:   {v}"),
            Err(e) => println!("         version:   unknown ({e})"),
        }
        match pool.migration_status(&keel_schema::MIGRATIONS).await {
            Ok(s) => {
                println!("         applied:   {} {}", s.applied.len(), s.applied.join(", "));
                println!("         pending:   {} {}", s.pending.len(), s.pending.join(", "));
            }
            Err(e) => println!("         migrations: unknown ({e})"),
        }
    }
    Ok(())
}
