//! Row structs: [`Order`] and [`OrderLine`] as stored, [`NewOrder`] and [`NewOrderLine`] for
//! inserts — one at a time in [`place_order`](crate::place_order), or many at once with
//! [`keel_pool::bulk::insert`] (they derive [`keel_pool::BulkRow`], with the service's checks as
//! the validation hook).
//!
//! ```no_run
//! # async fn demo(pool: keel_pool::Pool, rows: Vec<orders::NewOrder>) -> Result<(), keel_pool::Error> {
//! // All rows or none; binary COPY on PostgreSQL, chunked multi-row INSERTs elsewhere.
//! let n = keel_pool::bulk::insert(&pool, &rows, &keel_pool::bulk::Options::new()).await?;
//! # Ok(()) }
//! ```

use diesel::prelude::*;
use keel_pool::{Id, Timestamp};

use crate::checks::{amount_problem, text_problem};
use crate::schema::{CUSTOMER_MAX_CHARS, SKU_MAX_CHARS, order_lines, orders};

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = orders)]
pub struct Order {
    /// Primary key.
    pub id: Id,
    /// Who placed it.
    pub customer: String,
    /// Sum of the lines, in cents.
    pub total_cents: i64,
    /// When it was placed.
    pub placed_at: Timestamp,
    /// The customer's note, if any.
    pub note: Option<String>,
    /// Free-form attributes.
    pub attributes: serde_json::Value,
}

/// An order row to insert. A `None` note is written as `NULL`. A bulk load refuses (by its
/// index) a row [`place_order`](crate::place_order) would refuse: an empty or over-long
/// customer, a NUL byte in a text, a negative total.
#[derive(Debug, Clone, PartialEq, Insertable, keel_pool::BulkRow)]
#[diesel(table_name = orders, treat_none_as_null = true)]
#[bulk(validate = check_order)]
pub struct NewOrder {
    /// Primary key.
    pub id: Id,
    /// Who placed it.
    pub customer: String,
    /// Sum of the lines, in cents.
    pub total_cents: i64,
    /// When it was placed.
    pub placed_at: Timestamp,
    /// The customer's note, if any.
    pub note: Option<String>,
    /// Free-form attributes.
    pub attributes: serde_json::Value,
}

/// One line of an order, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Identifiable, Associations)]
#[diesel(table_name = order_lines, belongs_to(Order))]
pub struct OrderLine {
    /// Primary key.
    pub id: Id,
    /// The order it belongs to.
    pub order_id: Id,
    /// Stock-keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: i32,
    /// Price of one, in cents.
    pub unit_cents: i64,
}

/// An order line to insert. A bulk load refuses (by its index) an empty, over-long or
/// NUL-holding SKU, a quantity that is not positive and a negative price.
#[derive(Debug, Clone, PartialEq, Eq, Insertable, keel_pool::BulkRow)]
#[diesel(table_name = order_lines)]
#[bulk(validate = check_line)]
pub struct NewOrderLine {
    /// Primary key.
    pub id: Id,
    /// The order it belongs to.
    pub order_id: Id,
    /// Stock-keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: i32,
    /// Price of one, in cents.
    pub unit_cents: i64,
}

/// [`NewOrder`]'s validation hook for bulk loads.
fn check_order(order: &NewOrder) -> Result<(), keel_pool::Error> {
    let texts = [
        ("customer", Some(order.customer.as_str()), true, Some(CUSTOMER_MAX_CHARS)),
        ("note", order.note.as_deref(), false, None),
    ];
    for (field, text, required, max) in texts {
        if let Some(problem) = text.and_then(|t| text_problem(t, required, max)) {
            return Err(keel_pool::Error::invalid_input(format!(
                "order {}: {field} refused: {problem}",
                order.id
            )));
        }
    }
    if order.total_cents < 0 {
        return Err(keel_pool::Error::invalid_input(format!(
            "order {}: the total cannot be negative, got {} cents",
            order.id, order.total_cents
        )));
    }
    Ok(())
}

/// [`NewOrderLine`]'s validation hook for bulk loads.
fn check_line(line: &NewOrderLine) -> Result<(), keel_pool::Error> {
    let problem = text_problem(&line.sku, true, Some(SKU_MAX_CHARS))
        .map(|p| format!("the SKU is refused: {p}"))
        .or_else(|| amount_problem(line.quantity, line.unit_cents));
    match problem {
        Some(problem) => Err(keel_pool::Error::invalid_input(format!(
            "order line {} ({:?}): {problem}",
            line.id, line.sku
        ))),
        None => Ok(()),
    }
}
