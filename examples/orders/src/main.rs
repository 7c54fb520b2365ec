//! `orders`: connects to `DATABASE_URL`, applies the service's migrations, places one order
//! and prints it as JSON. All the work is in the library; this only wires it up.

use anyhow::Context as _;
use keel_pool::{Config, Pool};
use orders::{LineItem, MIGRATIONS, OrderRequest};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("reading the configuration (set DATABASE_URL)")?;
    let pool = Pool::connect(config).await.context("connecting to the database")?;
    let applied = pool.migrate(&MIGRATIONS).await.context("applying the migrations")?;
    let status = pool.migration_status(&MIGRATIONS).await.context("reading the migration status")?;
    let request =
        OrderRequest::new("ada", vec![LineItem::new("tea-1kg", 2, 1_250), LineItem::new("mug", 1, 900)])
            .note("leave at the door")
            .attributes(serde_json::json!({ "channel": "web", "gift": false }));
    let id = orders::place_order(&pool, &request).await.context("placing the order")?;
    let (order, lines) = orders::order_with_lines(&pool, id).await.context("reading the order back")?;
    let lines: Vec<_> = lines
        .iter()
        .map(|l| serde_json::json!({ "sku": l.sku, "quantity": l.quantity, "unit_cents": l.unit_cents }))
        .collect();
    let out = serde_json::json!({
        "migrations": { "applied_now": applied, "applied": status.applied, "pending": status.pending },
        "order": {
            "id": order.id.to_string(),
            "customer": order.customer,
            "total_cents": order.total_cents,
            "placed_at": order.placed_at.to_string(),
            "note": order.note,
            "attributes": order.attributes,
            "lines": lines,
        },
    });
    println!("{out:#}");
    Ok(())
}
