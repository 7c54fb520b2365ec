//! `#[derive(BulkRow)]`: reads the struct's diesel attributes (`table_name`, `column_name`) and
//! keel's own (`#[bulk(validate = …)]`, `#[bulk(key)]`), and writes the `BulkRow` impl: the
//! column list, the row's values for binary `COPY`, one multi-row `INSERT` per backend, and the
//! validation hook. Everything expands through `::keel_pool::`, so the user's crate needs no
//! dependency on keel-derive, tokio-postgres or diesel-async.

use proc_macro2::TokenStream;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Data, DeriveInput, Expr, Fields, Ident, Meta, Path, Token};

/// One struct field: its Rust name and the column it fills.
struct Field {
    ident: Ident,
    column: Ident,
    key: bool,
}

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(input.generics.span(), "BulkRow cannot be derived for a generic struct"));
    }
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(input.ident.span(), "BulkRow can only be derived for a struct"));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new(input.ident.span(), "BulkRow needs a struct with named fields"));
    };

    let mut table: Option<Path> = None;
    for meta in metas(&input.attrs, "diesel")? {
        if let Meta::NameValue(nv) = &meta
            && nv.path.is_ident("table_name")
        {
            table = Some(expr_path(&nv.value)?);
        }
    }
    let table = table.ok_or_else(|| {
        syn::Error::new(
            input.ident.span(),
            "BulkRow needs #[diesel(table_name = …)], as diesel's Insertable does",
        )
    })?;

    let mut validate: Option<Path> = None;
    for meta in metas(&input.attrs, "bulk")? {
        match &meta {
            Meta::NameValue(nv) if nv.path.is_ident("validate") => validate = Some(expr_path(&nv.value)?),
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "unknown #[bulk] option; expected `validate = path`",
                ));
            }
        }
    }

    let mut fields = Vec::new();
    for f in &named.named {
        let Some(ident) = f.ident.clone() else { continue };
        let mut column = ident.clone();
        for meta in metas(&f.attrs, "diesel")? {
            match &meta {
                Meta::NameValue(nv) if nv.path.is_ident("column_name") => {
                    let path = expr_path(&nv.value)?;
                    column = path.get_ident().cloned().ok_or_else(|| {
                        syn::Error::new(path.span(), "column_name must be a plain column name")
                    })?;
                }
                m if m.path().is_ident("embed") || m.path().is_ident("serialize_as") => {
                    return Err(syn::Error::new(
                        m.span(),
                        "BulkRow does not support #[diesel(embed)] or #[diesel(serialize_as)]: list the columns as fields",
                    ));
                }
                _ => {}
            }
        }
        let mut key = false;
        for meta in metas(&f.attrs, "bulk")? {
            match &meta {
                Meta::Path(p) if p.is_ident("key") => key = true,
                other => {
                    return Err(syn::Error::new(
                        other.span(),
                        "unknown #[bulk] field option; expected `key`",
                    ));
                }
            }
        }
        fields.push(Field { ident, column, key });
    }
    if fields.is_empty() {
        return Err(syn::Error::new(input.ident.span(), "BulkRow needs at least one field"));
    }
    let marked: Vec<&Field> = fields.iter().filter(|f| f.key).collect();
    let key = match marked.as_slice() {
        [] => fields.iter().find(|f| f.ident == "id"),
        [one] => Some(*one),
        [_, second, ..] => {
            return Err(syn::Error::new(second.ident.span(), "only one field can be #[bulk(key)]"));
        }
    };

    let name = &input.ident;
    let idents: Vec<&Ident> = fields.iter().map(|f| &f.ident).collect();
    let columns: Vec<&Ident> = fields.iter().map(|f| &f.column).collect();
    let validate_body = match &validate {
        Some(path) => quote! { #path(self) },
        None => quote! { ::core::result::Result::Ok(()) },
    };
    let has_key = key.is_some();
    let mysql_do_nothing = match key {
        Some(k) => {
            let (field, column) = (&k.ident, &k.column);
            quote! {
                let keys: ::std::vec::Vec<_> = rows.iter().map(|r| ::core::clone::Clone::clone(&r.#field)).collect();
                let count = || __k::diesel::QueryDsl::count(__k::diesel::QueryDsl::filter(
                    #table::table,
                    __k::diesel::ExpressionMethods::eq_any(#table::#column, &keys),
                ));
                let before: i64 = __k::diesel_async::RunQueryDsl::get_result(count(), &mut *c).await?;
                __k::diesel_async::RunQueryDsl::execute(insert.on_conflict_do_nothing(), &mut *c).await?;
                let after: i64 = __k::diesel_async::RunQueryDsl::get_result(count(), &mut *c).await?;
                ::core::result::Result::Ok((after - before) as usize)
            }
        }
        None => quote! {
            let _ = insert;
            ::core::result::Result::Err(__k::no_key_error())
        },
    };

    Ok(quote! {
        const _: () = {
            use ::keel_pool::bulk::__private as __k;

            impl ::keel_pool::bulk::BulkRow for #name {
                const COLUMNS: &'static [&'static str] =
                    &[#(<#table::#columns as __k::diesel::Column>::NAME),*];
                const HAS_KEY: bool = #has_key;

                fn table_sql() -> ::std::string::String {
                    __k::pg_sql(&#table::table)
                }

                fn validate(&self) -> ::core::result::Result<(), ::keel_pool::Error> {
                    #validate_body
                }

                fn copy_values(&self) -> ::std::vec::Vec<&(dyn __k::ToSql + ::core::marker::Sync)> {
                    ::std::vec![#(&self.#idents as &(dyn __k::ToSql + ::core::marker::Sync)),*]
                }

                fn insert_pg<'a>(
                    c: &'a mut ::keel_pool::PgConnection,
                    rows: &'a [Self],
                    do_nothing: bool,
                ) -> impl ::core::future::Future<Output = __k::QueryResult<usize>> + ::core::marker::Send + 'a {
                    async move {
                        let insert = __k::diesel::insert_into(#table::table).values(rows);
                        if do_nothing {
                            __k::diesel_async::RunQueryDsl::execute(insert.on_conflict_do_nothing(), c).await
                        } else {
                            __k::diesel_async::RunQueryDsl::execute(insert, c).await
                        }
                    }
                }

                fn insert_mysql<'a>(
                    c: &'a mut ::keel_pool::MysqlConnection,
                    rows: &'a [Self],
                    do_nothing: bool,
                ) -> impl ::core::future::Future<Output = __k::QueryResult<usize>> + ::core::marker::Send + 'a {
                    async move {
                        let insert = __k::diesel::insert_into(#table::table).values(rows);
                        if !do_nothing {
                            return __k::diesel_async::RunQueryDsl::execute(insert, c).await;
                        }
                        #mysql_do_nothing
                    }
                }

                fn insert_sqlite(
                    c: &mut __k::diesel::SqliteConnection,
                    rows: &[Self],
                    do_nothing: bool,
                ) -> __k::QueryResult<usize> {
                    if do_nothing {
                        __k::diesel::RunQueryDsl::execute(__k::diesel::insert_or_ignore_into(#table::table).values(rows), c)
                    } else {
                        __k::diesel::RunQueryDsl::execute(__k::diesel::insert_into(#table::table).values(rows), c)
                    }
                }
            }
        };
    })
}

/// The comma-separated items of every `#[name(…)]` attribute.
fn metas(attrs: &[syn::Attribute], name: &str) -> syn::Result<Vec<Meta>> {
    let mut out = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident(name)) {
        out.extend(attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)?);
    }
    Ok(out)
}

/// The path in `key = path`.
fn expr_path(expr: &Expr) -> syn::Result<Path> {
    match expr {
        Expr::Path(p) => Ok(p.path.clone()),
        other => Err(syn::Error::new(other.span(), "expected a path")),
    }
}
