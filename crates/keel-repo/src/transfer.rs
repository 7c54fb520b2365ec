//! Accounts and money-moving transfers: a multi-step transaction through
//! [`Pool::transaction_with`](keel_pool::Pool::transaction_with), made safe to retry by a unique
//! idempotency key.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_pool::{Backend, Conn, ErrorKind, Reuse, ScopedFutureExt as _, TxOptions, with_conn, with_read};
use keel_schema::limits::IDEMPOTENCY_KEY_MAX_CHARS;
use keel_schema::schema::{accounts, transfers};
use keel_schema::{Account, Id, NewAccount, NewTransfer, Transfer};
use serde::Serialize;

use crate::cache::keys;
use crate::error::{Error, Result};
use crate::{Repo, validate};

/// What [`Repo::transfer`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TransferOutcome {
    /// The ledger row (the one written now, or the one an earlier call with the same key wrote).
    pub transfer: Transfer,
    /// `true` if this call moved the money; `false` if the key had already been applied.
    pub applied_now: bool,
}

fn validate_transfer(from: Id, to: Id, amount_cents: i64, key: &str) -> Result<()> {
    if amount_cents <= 0 {
        return Err(Error::invalid(format!("a transfer amount must be positive, got {amount_cents} cents")));
    }
    if from == to {
        return Err(Error::invalid(format!("cannot transfer from account {from} to itself")));
    }
    validate::non_empty("idempotency key", key)?;
    validate::text("idempotency key", key, IDEMPOTENCY_KEY_MAX_CHARS)
}

/// The earlier transfer under `key`, checked to be the same transfer.
fn replay(existing: Transfer, from: Id, to: Id, amount_cents: i64) -> Result<TransferOutcome> {
    if (existing.from_account, existing.to_account, existing.amount_cents) != (from, to, amount_cents) {
        return Err(Error::invalid(format!(
            "idempotency key {:?} was already used for a different transfer ({} cents from {} to {})",
            existing.idempotency_key, existing.amount_cents, existing.from_account, existing.to_account
        )));
    }
    Ok(TransferOutcome { transfer: existing, applied_now: false })
}

async fn find_by_key(conn: &mut Conn, key: &str) -> Result<Option<Transfer>> {
    Ok(with_conn!(conn, |c| transfers::table
        .filter(transfers::idempotency_key.eq(key))
        .select(Transfer::as_select())
        .first(c)
        .await
        .optional())?)
}

/// `balance += delta` on one account, only if the result stays >= 0. The number of rows
/// changed: 0 means no such account, or not enough money.
async fn add_to_balance(conn: &mut Conn, id: Id, delta: i64) -> Result<usize> {
    Ok(with_conn!(conn, |c| Reuse(
        diesel::update(
            accounts::table.filter(accounts::id.eq(id)).filter(accounts::balance_cents.ge(-delta))
        )
        .set(accounts::balance_cents.eq(accounts::balance_cents + delta))
    )
    .execute(c)
    .await)?)
}

async fn debit(conn: &mut Conn, account: Id, amount_cents: i64) -> Result<()> {
    if add_to_balance(conn, account, -amount_cents).await? == 1 {
        return Ok(());
    }
    Err(refused_debit(conn, account, amount_cents).await)
}

/// Why a debit changed no row: the account is missing, or its balance is short.
async fn refused_debit(conn: &mut Conn, account: Id, amount_cents: i64) -> Error {
    let balance: Result<Option<i64>> = with_conn!(conn, |c| accounts::table
        .find(account)
        .select(accounts::balance_cents)
        .first(c)
        .await
        .optional())
    .map_err(Error::from);
    match balance {
        Ok(Some(balance_cents)) => Error::InsufficientFunds { account, balance_cents, amount_cents },
        Ok(None) => Error::not_found(format!("account {account}")),
        Err(e) => e,
    }
}

async fn credit(conn: &mut Conn, account: Id, amount_cents: i64) -> Result<()> {
    if add_to_balance(conn, account, amount_cents).await? == 1 {
        return Ok(());
    }
    Err(Error::not_found(format!("account {account}")))
}

/// `balance += delta` on one account if the result stays >= 0, kept prepared.
macro_rules! balance_update {
    ($id:expr, $delta:expr) => {
        Reuse(
            diesel::update(
                accounts::table.filter(accounts::id.eq($id)).filter(accounts::balance_cents.ge(-$delta)),
            )
            .set(accounts::balance_cents.eq(accounts::balance_cents + $delta)),
        )
    };
}

/// PostgreSQL: the ledger row and both balance updates sent at once on the transaction's
/// connection (pipelined: one round trip instead of three, executed in order). The ledger row
/// goes first: a key applied before fails it on the unique index (the caller replays the
/// earlier transfer), an unknown account fails its foreign key. The updates stay in account-id
/// order, so opposite transfers cannot deadlock; the row's foreign-key share locks do not
/// conflict with PostgreSQL's no-key updates.
async fn transfer_pipelined(conn: &mut Conn, row: &NewTransfer) -> Result<()> {
    let (from, to, amount) = (row.from_account, row.to_account, row.amount_cents);
    let ((first, d1), (second, d2)) = if from.as_bytes() < to.as_bytes() {
        ((from, -amount), (to, amount))
    } else {
        ((to, amount), (from, -amount))
    };
    let Conn::Postgres(pg) = &mut *conn else {
        return Err(Error::invalid("the pipelined transfer is PostgreSQL only"));
    };
    let c: &keel_pool::PgConnection = pg;
    let (mut a, mut b, mut d) = (c, c, c);
    let (inserted, n1, n2) = futures_util::join!(
        Reuse(diesel::insert_into(transfers::table).values(row)).execute(&mut a),
        balance_update!(first, d1).execute(&mut b),
        balance_update!(second, d2).execute(&mut d),
    );
    let classified = |e: diesel::result::Error| keel_pool::classify(Backend::Postgres, e);
    let outcome = match (inserted, n1, n2) {
        (Err(e), _, _) => Err(classified(e)),
        (_, Err(e), _) | (_, _, Err(e)) => Err(classified(e)),
        (Ok(_), Ok(n1), Ok(n2)) => Ok((n1, n2)),
    };
    let (n1, n2) = match outcome {
        Ok(counts) => counts,
        Err(e) => {
            conn.observe(&e);
            if e.kind() == ErrorKind::ForeignKeyViolation {
                let missing = if e.constraint().is_some_and(|c| c.contains("from")) { from } else { to };
                return Err(Error::not_found(format!("account {missing}")));
            }
            return Err(Error::Db(e));
        }
    };
    for (account, delta, n) in [(first, d1, n1), (second, d2, n2)] {
        if n == 1 {
            continue;
        }
        if delta > 0 {
            return Err(Error::not_found(format!("account {account}")));
        }
        return Err(refused_debit(conn, account, amount).await);
    }
    Ok(())
}

impl Repo {
    /// Opens an account for `owner` with an opening balance (>= 0).
    pub async fn create_account(&self, owner: Id, balance_cents: i64) -> Result<Account> {
        let repo = self.clone();
        self.pool.detached(async move { repo.create_account_now(owner, balance_cents).await }).await
    }

    async fn create_account_now(&self, owner: Id, balance_cents: i64) -> Result<Account> {
        if balance_cents < 0 {
            return Err(Error::invalid(format!(
                "an opening balance cannot be negative, got {balance_cents}"
            )));
        }
        let new = NewAccount::new(owner, balance_cents);
        let new = &new;
        self.invalidating(|| [keys::account(new.id)], async {
            crate::insert_returning!(self, accounts, new, Account)
        })
        .await
    }

    /// The account with this id; `not_found` if there is none.
    pub async fn get_account(&self, id: Id) -> Result<Account> {
        let repo = self.clone();
        self.pool.detached(async move { repo.get_account_now(id).await }).await
    }

    async fn get_account_now(&self, id: Id) -> Result<Account> {
        crate::find_cached!(self, accounts, Account, account, id, "account")
    }

    /// The transfer recorded under `key`, if any.
    pub async fn transfer_by_key(&self, key: &str) -> Result<Option<Transfer>> {
        let key = key.to_owned();
        let repo = self.clone();
        self.pool.detached(async move { repo.transfer_by_key_now(&key).await }).await
    }

    async fn transfer_by_key_now(&self, key: &str) -> Result<Option<Transfer>> {
        find_by_key(&mut self.pool.get().await?, key).await
    }

    /// Sum of all balances, in cents (money is neither made nor lost by transfers).
    pub async fn total_balance(&self) -> Result<i64> {
        let repo = self.clone();
        self.pool.detached(async move { repo.total_balance_now().await }).await
    }

    async fn total_balance_now(&self) -> Result<i64> {
        let expr = match self.pool.backend() {
            Backend::Postgres => "CAST(COALESCE(SUM(balance_cents), 0) AS BIGINT)",
            Backend::Mysql => "CAST(COALESCE(SUM(balance_cents), 0) AS SIGNED)",
            Backend::Sqlite => "COALESCE(SUM(balance_cents), 0)",
        };
        Ok(with_read!(&self.pool, |c| accounts::table
            .select(diesel::dsl::sql::<diesel::sql_types::BigInt>(expr))
            .get_result(c)
            .await)?)
    }

    /// Moves `amount_cents` from one account to another, once per `idempotency_key`.
    ///
    /// One transaction: look the key up (an earlier call that committed makes this a no-op
    /// returning its row with `applied_now: false`), debit only if the balance covers the amount
    /// (else [`Error::InsufficientFunds`], never retried), credit, and record the transfer under
    /// the unique key. The two accounts are updated in id order, so concurrent transfers in
    /// opposite directions do not deadlock. Because of the key the transaction is idempotent:
    /// keel retries it even when a `COMMIT` was lost in flight, and a caller may safely repeat
    /// the call after any error.
    ///
    /// Fails with `invalid_input` for a non-positive amount, the same account twice, or a key
    /// reused for a different transfer; `not_found` for an unknown account.
    ///
    /// ```no_run
    /// # async fn demo(repo: keel_repo::Repo, a: keel_schema::Id, b: keel_schema::Id) -> Result<(), keel_repo::Error> {
    /// let first = repo.transfer(a, b, 1_500, "order-42").await?;
    /// let again = repo.transfer(a, b, 1_500, "order-42").await?; // applied once
    /// assert!(first.applied_now && !again.applied_now);
    /// # Ok(()) }
    /// ```
    pub async fn transfer(
        &self,
        from: Id,
        to: Id,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<TransferOutcome> {
        let idempotency_key = idempotency_key.to_owned();
        let repo = self.clone();
        self.pool
            .detached(async move { repo.transfer_now(from, to, amount_cents, &idempotency_key).await })
            .await
    }

    async fn transfer_now(
        &self,
        from: Id,
        to: Id,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<TransferOutcome> {
        validate_transfer(from, to, amount_cents, idempotency_key)?;
        let row = NewTransfer {
            id: Id::new(),
            from_account: from,
            to_account: to,
            amount_cents,
            idempotency_key: idempotency_key.to_owned(),
            created_at: keel_schema::now(),
        };
        let row = &row;
        // Owed whether it applies, replays or fails: invalidating an unchanged balance costs a miss.
        let owed = self.owe(|| [keys::account(from), keys::account(to)]);
        let done = self
            .pool
            .transaction_with(TxOptions::new().idempotent(true), |conn| {
                async move {
                    if conn.backend() == Backend::Postgres {
                        transfer_pipelined(conn, row).await?;
                    } else {
                        if let Some(existing) = find_by_key(conn, &row.idempotency_key).await? {
                            return replay(existing, from, to, amount_cents);
                        }
                        if from.as_bytes() < to.as_bytes() {
                            debit(conn, from, amount_cents).await?;
                            credit(conn, to, amount_cents).await?;
                        } else {
                            credit(conn, to, amount_cents).await?;
                            debit(conn, from, amount_cents).await?;
                        }
                        with_conn!(conn, |c| Reuse(diesel::insert_into(transfers::table).values(row))
                            .execute(c)
                            .await)?;
                    }
                    let transfer = Transfer {
                        id: row.id,
                        from_account: from,
                        to_account: to,
                        amount_cents,
                        idempotency_key: row.idempotency_key.clone(),
                        created_at: row.created_at,
                    };
                    Ok(TransferOutcome { transfer, applied_now: true })
                }
                .scope_boxed()
            })
            .await;
        owed.settle().await;
        match done {
            // A concurrent call with the same key committed first.
            Err(Error::Db(e))
                if e.kind() == ErrorKind::UniqueViolation
                    && e.constraint().is_some_and(|c| c.contains("idempotency_key")) =>
            {
                match self.transfer_by_key(idempotency_key).await? {
                    Some(existing) => replay(existing, from, to, amount_cents),
                    None => Err(Error::Db(e)),
                }
            }
            other => other,
        }
    }
}
