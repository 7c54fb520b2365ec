-- Unique text compares byte-exactly, as on PostgreSQL and SQLite. utf8mb4_bin is PAD SPACE on
-- MariaDB and MySQL: 'a@x.com' and 'a@x.com ' collided on users_email_key, and a transfer key
-- 'k ' replayed the transfer of 'k'. The NO PAD binary collation is utf8mb4_nopad_bin on MariaDB
-- and utf8mb4_0900_bin on MySQL 8; one file serves both by choosing at run time.
SET @keel_exact = IF(VERSION() LIKE '%MariaDB%', 'utf8mb4_nopad_bin', 'utf8mb4_0900_bin');
SET @keel_sql = CONCAT('ALTER TABLE users MODIFY email VARCHAR(255) CHARACTER SET utf8mb4 COLLATE ', @keel_exact, ' NOT NULL');
PREPARE keel_stmt FROM @keel_sql;
EXECUTE keel_stmt;
DEALLOCATE PREPARE keel_stmt;
SET @keel_sql = CONCAT('ALTER TABLE transfers MODIFY idempotency_key VARCHAR(100) CHARACTER SET utf8mb4 COLLATE ', @keel_exact, ' NOT NULL');
PREPARE keel_stmt FROM @keel_sql;
EXECUTE keel_stmt;
DEALLOCATE PREPARE keel_stmt;
