DROP TABLE bulk_items;
