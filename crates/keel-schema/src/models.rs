//! Row structs (`Queryable`/`Selectable`) and insert structs (`Insertable`), one file per table.

mod account;
mod job;
mod transfer;
mod user;

pub use account::{Account, NewAccount};
pub use job::{Job, NewJob};
pub use transfer::{NewTransfer, Transfer};
pub use user::{NewUser, User};
