//! keel-derive: keel's procedural macros, re-exported by `keel-pool` (use them as
//! `keel_pool::embed_migrations!`; a crate using keel needs no direct dependency on this one).
//!
//! - `embed_migrations!("dir")`: reads `dir/{postgres,mysql,sqlite}/<version>_<name>/{up,down}.sql`
//!   (relative to the calling crate's `Cargo.toml`) at build time and expands to a
//!   `keel_pool::Migrations` value holding every file's text (`include_str!`, so cargo rebuilds
//!   when a file changes). A backend folder that does not exist becomes an empty slot that
//!   fails, naming the folder, when that backend is migrated; a folder with no migration at
//!   all, or a migration without `up.sql`, is a compile error.
//!
//! Adding a new migration directory is not a file change cargo sees: touch a source file (or
//! `cargo clean -p` the crate) to embed it, as with diesel's own `embed_migrations!`.
//!
//! - `#[derive(BulkRow)]`: implements `keel_pool::bulk::BulkRow` for a struct that also derives
//!   diesel's `Insertable` (it reads the same `#[diesel(table_name = …)]` and
//!   `#[diesel(column_name = …)]` attributes); see [`bulk_row`](mod@bulk_row).

mod bulk_row;

use std::path::{Path, PathBuf};

use proc_macro::TokenStream;
use quote::quote;

/// The backend folders, in the order `Migrations` takes them.
const BACKENDS: [&str; 3] = ["postgres", "mysql", "sqlite"];

/// Embeds a migration set per backend; see the crate docs.
#[proc_macro]
pub fn embed_migrations(input: TokenStream) -> TokenStream {
    let dir = syn::parse_macro_input!(input as syn::LitStr);
    match expand(&dir.value()) {
        Ok(tokens) => tokens.into(),
        Err(message) => syn::Error::new(dir.span(), message).to_compile_error().into(),
    }
}

/// Implements `keel_pool::bulk::BulkRow` for an `Insertable` struct; see the crate docs.
///
/// Attributes: `#[bulk(validate = path::to::fn)]` on the struct (a `fn(&Self) -> Result<(),
/// keel_pool::Error>` run on every row before anything is sent), `#[bulk(key)]` on the field
/// that identifies a row (default: the field named `id`; MySQL needs it to count the rows
/// `on_conflict_do_nothing` really inserted).
#[proc_macro_derive(BulkRow, attributes(bulk))]
pub fn derive_bulk_row(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    match bulk_row::expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(dir: &str) -> Result<proc_macro2::TokenStream, String> {
    let root = std::env::var("CARGO_MANIFEST_DIR").map(PathBuf::from).map_err(|e| e.to_string())?;
    let base = root.join(dir);
    if !base.is_dir() {
        return Err(format!(
            "no migrations folder {} (embed_migrations! reads {dir}/{{postgres,mysql,sqlite}})",
            base.display()
        ));
    }
    let mut sets = Vec::new();
    for backend in BACKENDS {
        let folder = base.join(backend);
        if !folder.is_dir() {
            sets.push(quote! { ::core::option::Option::None });
            continue;
        }
        let files = migrations_in(&folder)?;
        if files.is_empty() {
            return Err(format!(
                "{} holds no migration (expected <version>_<name>/up.sql)",
                folder.display()
            ));
        }
        let entries = files.iter().map(|(name, up, down)| {
            let up = up.display().to_string();
            let down = match down {
                Some(d) => {
                    let d = d.display().to_string();
                    quote! { ::core::option::Option::Some(::core::include_str!(#d)) }
                }
                None => quote! { ::core::option::Option::None },
            };
            quote! { ::keel_pool::migrations::MigrationFiles::new(#name, ::core::include_str!(#up), #down) }
        });
        sets.push(quote! { ::core::option::Option::Some(&[#(#entries),*]) });
    }
    let [pg, my, lite] = [&sets[0], &sets[1], &sets[2]];
    Ok(quote! { ::keel_pool::Migrations::embedded(#dir, #pg, #my, #lite) })
}

/// `(name, up.sql, down.sql)` of every migration folder in `folder`, sorted by name.
fn migrations_in(folder: &Path) -> Result<Vec<(String, PathBuf, Option<PathBuf>)>, String> {
    let entries = std::fs::read_dir(folder).map_err(|e| format!("reading {}: {e}", folder.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("reading {}: {e}", folder.display()))?.path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        if !path.is_dir() || name.starts_with('.') {
            continue;
        }
        let up = path.join("up.sql");
        if !up.is_file() {
            return Err(format!("migration {} has no up.sql", path.display()));
        }
        let down = Some(path.join("down.sql")).filter(|d| d.is_file());
        out.push((name, up, down));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
