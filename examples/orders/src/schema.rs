//! The `table!` definitions: one schema for PostgreSQL, MySQL/MariaDB and SQLite, written by
//! hand with keel's portable column types ([`keel_pool::sql_types`]) and diesel's
//! [`Json`](diesel::sql_types::Json), so the same typed queries compile for every backend.
//! The column limits are here too, so the service can check them before any backend does
//! (SQLite does not enforce `VARCHAR` lengths; PostgreSQL and MySQL report them differently).

/// Most characters in `orders.customer` (`varchar(200)`).
pub const CUSTOMER_MAX_CHARS: usize = 200;

/// Most characters in `order_lines.sku` (`varchar(64)`).
pub const SKU_MAX_CHARS: usize = 64;

diesel::table! {
    use diesel::sql_types::*;
    use keel_pool::sql_types::{Uuid, UtcTimestamp};

    /// One placed order. `total_cents` is the sum of its lines, computed when it is placed.
    orders (id) {
        /// Primary key (UUIDv7, made by the client).
        id -> Uuid,
        /// Who placed it, at most 200 characters.
        customer -> Varchar,
        /// Sum of `quantity * unit_cents` over the lines (>= 0).
        total_cents -> BigInt,
        /// When it was placed, UTC with microseconds.
        placed_at -> UtcTimestamp,
        /// A free-text note; `NULL` when the customer left none.
        note -> Nullable<Text>,
        /// Free-form attributes (channel, gift wrapping, …): PostgreSQL `json`, MySQL `JSON`
        /// (MariaDB: `LONGTEXT` checked by `json_valid`), SQLite `TEXT` checked by `json_valid`.
        attributes -> Json,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use keel_pool::sql_types::Uuid;

    /// The lines of an order; deleted with it (`ON DELETE CASCADE`). One line per SKU.
    order_lines (id) {
        /// Primary key (UUIDv7).
        id -> Uuid,
        /// The order this line belongs to.
        order_id -> Uuid,
        /// Stock-keeping unit, at most 64 characters, unique within the order.
        sku -> Varchar,
        /// How many (> 0, a `CHECK` constraint).
        quantity -> Integer,
        /// Price of one, in cents (>= 0).
        unit_cents -> BigInt,
    }
}

diesel::joinable!(order_lines -> orders (order_id));

diesel::allow_tables_to_appear_in_same_query!(orders, order_lines);
