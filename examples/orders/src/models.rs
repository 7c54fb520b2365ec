//! Row structs: [`Order`] and [`OrderLine`] as stored, [`NewOrder`] and [`NewOrderLine`] for
//! inserts.

use diesel::prelude::*;
use keel_pool::{Id, Timestamp};

use crate::schema::{order_lines, orders};

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

/// An order row to insert. A `None` note is written as `NULL`.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = orders, treat_none_as_null = true)]
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

/// An order line to insert.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = order_lines)]
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
