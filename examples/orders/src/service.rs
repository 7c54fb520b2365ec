//! The service's operations: [`place_order`] (one transaction, retried by keel on transient
//! failures), [`order_with_lines`] (one read-only snapshot) and [`cancel_order`].

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Id, Isolation, Pool, ScopedFutureExt as _, TxOptions, with_conn};

use crate::checks::{amount_problem, text_problem};
use crate::error::Error;
use crate::models::{NewOrder, NewOrderLine, Order, OrderLine};
use crate::schema::{CUSTOMER_MAX_CHARS, SKU_MAX_CHARS, order_lines, orders};

/// One line of an order to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    /// Stock-keeping unit (at most 64 characters, once per order).
    pub sku: String,
    /// How many; must be positive.
    pub quantity: i32,
    /// Price of one, in cents; must not be negative.
    pub unit_cents: i64,
}

impl LineItem {
    /// `quantity` of `sku` at `unit_cents` each.
    pub fn new(sku: impl Into<String>, quantity: i32, unit_cents: i64) -> Self {
        LineItem { sku: sku.into(), quantity, unit_cents }
    }
}

/// An order to place: who, what, an optional note and free-form JSON attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    /// Who places it (at most 200 characters).
    pub customer: String,
    /// The lines; at least one.
    pub lines: Vec<LineItem>,
    /// A note, stored as `NULL` when `None` (the default).
    pub note: Option<String>,
    /// Attributes stored in the JSON column; `{}` by default.
    pub attributes: serde_json::Value,
}

impl OrderRequest {
    /// An order by `customer` of `lines`, without a note, with attributes `{}`.
    pub fn new(customer: impl Into<String>, lines: Vec<LineItem>) -> Self {
        OrderRequest {
            customer: customer.into(),
            lines,
            note: None,
            attributes: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// Sets the note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Sets the attributes.
    pub fn attributes(mut self, attributes: serde_json::Value) -> Self {
        self.attributes = attributes;
        self
    }

    /// The order's total in cents, or the service's refusal of the request: no lines, an
    /// empty or over-long customer, an over-long SKU, a NUL byte in any text, a quantity that is
    /// not positive, a negative price, or a total beyond `i64`.
    pub fn total_cents(&self) -> Result<i64, Error> {
        if self.lines.is_empty() {
            return Err(Error::EmptyOrder);
        }
        let texts = [
            ("customer", Some(self.customer.as_str()), true, Some(CUSTOMER_MAX_CHARS)),
            ("note", self.note.as_deref(), false, None),
        ];
        for (field, text, required, max) in texts {
            if let Some(reason) = text.and_then(|t| text_problem(t, required, max)) {
                return Err(Error::InvalidField { field, reason });
            }
        }
        let mut total: i64 = 0;
        for (index, line) in self.lines.iter().enumerate() {
            let refuse = |reason: String| Error::InvalidLine { index, sku: line.sku.clone(), reason };
            if let Some(problem) = text_problem(&line.sku, true, Some(SKU_MAX_CHARS)) {
                return Err(refuse(format!("the SKU is refused: {problem}")));
            }
            if let Some(problem) = amount_problem(line.quantity, line.unit_cents) {
                return Err(refuse(problem));
            }
            total = i64::from(line.quantity)
                .checked_mul(line.unit_cents)
                .and_then(|amount| total.checked_add(amount))
                .ok_or_else(|| refuse("the order total does not fit in 64 bits".to_owned()))?;
        }
        Ok(total)
    }
}

/// Places an order: the order row and all its lines in one transaction, so either everything
/// is written or nothing is. Returns the new order's id.
///
/// The request is checked first ([`OrderRequest::total_cents`]); then the database has the last
/// word (a SKU twice in one order is a `UniqueViolation`, an over-long text an `InvalidInput`
/// or a constraint violation, depending on the backend). Serialization failures, deadlocks,
/// lock timeouts and lost connections are retried by keel with backoff; the ids are made once,
/// before the first attempt, so every attempt writes the same rows.
pub async fn place_order(pool: &Pool, request: &OrderRequest) -> Result<Id, Error> {
    let total_cents = request.total_cents()?;
    let order = NewOrder {
        id: Id::new(),
        customer: request.customer.clone(),
        total_cents,
        placed_at: keel_pool::now(),
        note: request.note.clone(),
        attributes: request.attributes.clone(),
    };
    let lines: Vec<NewOrderLine> = request
        .lines
        .iter()
        .map(|l| NewOrderLine {
            id: Id::new(),
            order_id: order.id,
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_cents: l.unit_cents,
        })
        .collect();
    let (order, lines) = (&order, &lines);
    pool.transaction(|conn| {
        async move {
            with_conn!(conn, |c| diesel::insert_into(orders::table).values(order).execute(c).await)?;
            // One INSERT per line: diesel's multi-row INSERT on SQLite exists only on its
            // synchronous connection, not through diesel-async, and an order has a handful of
            // lines (large loads are a bulk insert's job).
            for line in lines {
                with_conn!(conn, |c| diesel::insert_into(order_lines::table).values(line).execute(c).await)?;
            }
            Ok::<_, Error>(order.id)
        }
        .scope_boxed()
    })
    .await
}

/// The order `id` and its lines (in the order they were placed), read in one read-only
/// transaction, so the lines always belong to the order as it was. A `NotFound` error
/// ([`keel_pool::ErrorKind::NotFound`]) when there is no such order.
pub async fn order_with_lines(pool: &Pool, id: Id) -> Result<(Order, Vec<OrderLine>), Error> {
    let snapshot = TxOptions::new().read_only(true).isolation(Isolation::RepeatableRead);
    pool.transaction_with(snapshot, |conn| {
        async move {
            let order: Option<Order> = with_conn!(conn, |c| orders::table
                .find(id)
                .select(Order::as_select())
                .first(c)
                .await
                .optional())?;
            let order = order.ok_or_else(|| keel_pool::Error::not_found(format!("order {id}")))?;
            let lines: Vec<OrderLine> = with_conn!(conn, |c| OrderLine::belonging_to(&order)
                .select(OrderLine::as_select())
                .order(order_lines::id)
                .load(c)
                .await)?;
            Ok::<_, Error>((order, lines))
        }
        .scope_boxed()
    })
    .await
}

/// Cancels (deletes) the order `id`; its lines go with it (`ON DELETE CASCADE`). A `NotFound`
/// error when there is no such order.
pub async fn cancel_order(pool: &Pool, id: Id) -> Result<(), Error> {
    let mut conn = pool.get().await?;
    let deleted = with_conn!(&mut conn, |c| diesel::delete(orders::table.find(id)).execute(c).await)?;
    if deleted == 0 {
        return Err(keel_pool::Error::not_found(format!("order {id}")).into());
    }
    Ok(())
}
