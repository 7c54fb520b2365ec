//! orders: a small order service of its own built on keel — the way your service uses keel,
//! through public APIs only (`keel-pool`, diesel, diesel-async, tokio; `keel-test` for its
//! tests). It is an example: read it, copy it; nothing in keel depends on it.
//!
//! What it shows:
//! - its own schema ([`schema`]): `orders` with a nullable `note` and a JSON `attributes`
//!   column, and `order_lines` (foreign key with `ON DELETE CASCADE`, `CHECK (quantity > 0)`,
//!   one line per SKU), one `table!` for PostgreSQL, MySQL/MariaDB and SQLite;
//! - its own migrations, `migrations/{postgres,mysql,sqlite}/<version>_<name>/{up,down}.sql`,
//!   embedded as [`MIGRATIONS`] and applied with [`Pool::migrate`](keel_pool::Pool::migrate);
//! - bulk loads of its rows (`#[derive(keel_pool::BulkRow)]` on [`NewOrder`] and
//!   [`NewOrderLine`], loaded with [`keel_pool::bulk::insert`]: `COPY` on PostgreSQL);
//! - a transaction that keel retries on transient failures ([`place_order`]) and a read-only
//!   snapshot ([`order_with_lines`]);
//! - an error type of its own ([`Error`]) carrying keel's classified errors and its own refusals;
//! - tests through `keel_test::for_each_backend(&MIGRATIONS, …)` (`tests/orders.rs`).
//!
//! JSON per backend: diesel's [`Json`](diesel::sql_types::Json) with `serde_json::Value` is one
//! SQL type on all three — PostgreSQL `json` (not `jsonb`, which diesel's `Json` cannot read
//! back), MySQL `JSON` (MariaDB: `LONGTEXT` with a `json_valid` check), SQLite `TEXT` with a
//! `json_valid` check.
//!
//! Modules:
//! - [`schema`]: the `table!` definitions.
//! - [`models`]: `Order`/`NewOrder`, `OrderLine`/`NewOrderLine` (the `New…` ones are bulk rows).
//! - [`service`]: [`place_order`], [`order_with_lines`], [`cancel_order`], and the request
//!   types [`OrderRequest`], [`LineItem`].
//! - [`error`]: [`Error`], the service's errors.
//! - `checks` (private): the value checks `place_order` and the bulk rows share.
//!
//! ```no_run
//! # async fn demo() -> Result<(), orders::Error> {
//! use keel_pool::{Config, Pool};
//! use orders::{LineItem, OrderRequest, MIGRATIONS};
//!
//! let pool = Pool::connect(Config::from_env()?).await?;
//! pool.migrate(&MIGRATIONS).await?; // safe when ten instances start at once
//! let request = OrderRequest::new("ada", vec![LineItem::new("tea-1kg", 2, 1_250)])
//!     .attributes(serde_json::json!({ "channel": "web" }));
//! let id = orders::place_order(&pool, &request).await?;
//! let (order, lines) = orders::order_with_lines(&pool, id).await?;
//! assert_eq!((order.total_cents, lines.len()), (2_500, 1));
//! # Ok(()) }
//! ```

use keel_pool::Migrations;

mod checks;
pub mod error;
pub mod models;
pub mod schema;
pub mod service;

pub use error::Error;
pub use models::{NewOrder, NewOrderLine, Order, OrderLine};
pub use service::{LineItem, OrderRequest, cancel_order, order_with_lines, place_order};

/// The service's migrations, `migrations/{postgres,mysql,sqlite}/<version>_<name>/{up,down}.sql`
/// beside this crate's `Cargo.toml`, embedded at build time. Apply them with
/// `pool.migrate(&MIGRATIONS)`.
pub const MIGRATIONS: Migrations = keel_pool::embed_migrations!("migrations");
