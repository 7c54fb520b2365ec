//! The crate's internal macros, declared before every module that uses them.

/// Inserts `$row` into `$table` and reads the stored row back by id as `$model`, in one
/// transaction (MySQL has no `RETURNING`; the id is generated client-side).
macro_rules! insert_returning {
    ($repo:expr, $table:ident, $row:expr, $model:ty) => {
        $repo
            .pool
            .transaction(|conn| {
                async move {
                    keel_pool::with_conn!(conn, |c| {
                        match keel_pool::Reuse(diesel::insert_into($table::table).values($row))
                            .execute(c)
                            .await
                        {
                            Ok(_) => $table::table.find($row.id).select(<$model>::as_select()).first(c).await,
                            Err(e) => Err(e),
                        }
                    })
                    .map_err($crate::Error::from)
                }
                .scope_boxed()
            })
            .await
    };
}
pub(crate) use insert_returning;

/// The row of `$table` with primary key `$id` as `$model`, read through the cache under
/// `keys::$key($id)` (see [`crate::cache`]); `not_found` naming `$what` when there is none.
macro_rules! find_cached {
    ($repo:expr, $table:ident, $model:ty, $key:ident, $id:expr, $what:literal) => {{
        let id = $id;
        let found: Option<$model> = $repo
            .read_through(
                || $crate::cache::keys::$key(id),
                || async {
                    Ok(keel_pool::with_read!(&$repo.pool, |c| $table::table
                        .find(id)
                        .select(<$model>::as_select())
                        .first(c)
                        .await
                        .optional())?)
                },
            )
            .await?;
        found.ok_or_else(|| $crate::Error::not_found(format!(concat!($what, " {}"), id)))
    }};
}
pub(crate) use find_cached;
