-- Orders and their lines. STRICT tables, so a value of the wrong type is refused as on the
-- servers. SQLite does not enforce VARCHAR lengths, so CHECK constraints do; ids are 16-byte
-- BLOBs; times are fixed-width UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (text order = time order);
-- JSON is TEXT that json_valid accepts.
CREATE TABLE orders (
    id           BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    customer     TEXT    NOT NULL CHECK (length(customer) <= 200),
    total_cents  INTEGER NOT NULL CONSTRAINT orders_total_cents_check CHECK (total_cents >= 0),
    placed_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000'),
    note         TEXT,
    attributes   TEXT    NOT NULL CONSTRAINT orders_attributes_check CHECK (json_valid(attributes))
) STRICT;
CREATE INDEX orders_customer_placed_at_idx ON orders (customer, placed_at);

CREATE TABLE order_lines (
    id          BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    order_id    BLOB    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sku         TEXT    NOT NULL CHECK (length(sku) <= 64),
    quantity    INTEGER NOT NULL CONSTRAINT order_lines_quantity_check CHECK (quantity > 0),
    unit_cents  INTEGER NOT NULL CONSTRAINT order_lines_unit_cents_check CHECK (unit_cents >= 0),
    CONSTRAINT order_lines_order_id_sku_key UNIQUE (order_id, sku)
) STRICT;
