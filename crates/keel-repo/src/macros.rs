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
