//! PostgreSQL: `COPY (query) TO STDOUT (FORMAT binary)` on a tokio-postgres client, decoded
//! straight from the wire into Arrow builders. The column types come from preparing the query
//! first (and, for `numeric` columns of a table, their declared precision and scale from
//! `pg_attribute`). `COPY` takes no bind parameters, so `:name` parameters are written into the
//! SQL as typed constants ([`keel_repo::raw::inline_postgres`]) on a session with
//! `standard_conforming_strings` on.

use bytes::{Buf as _, BytesMut};
use futures_util::StreamExt as _;
use keel_pool::Pool;
use keel_repo::raw::Params;
use tokio_postgres::types::Type;

use crate::columns::{Builder, Columns, Kind, UNCONSTRAINED_DECIMAL};
use crate::{Error, Options};

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

fn db(e: &tokio_postgres::Error) -> Error {
    Error::Db(keel_pool::classify_postgres(e))
}

/// The Arrow kind of a PostgreSQL column, or `UnsupportedType`.
fn kind(name: &str, ty: &Type, typmod: i32) -> Result<Kind, Error> {
    Ok(match *ty {
        Type::BOOL => Kind::Bool,
        Type::INT2 => Kind::Int16,
        Type::INT4 => Kind::Int32,
        Type::INT8 => Kind::Int64,
        Type::FLOAT4 => Kind::Float32,
        Type::FLOAT8 => Kind::Float64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::JSONB => Kind::Text,
        Type::BYTEA => Kind::Binary,
        Type::UUID => Kind::Uuid,
        Type::TIMESTAMPTZ => Kind::Timestamp(true),
        Type::TIMESTAMP => Kind::Timestamp(false),
        Type::DATE => Kind::Date,
        Type::TIME => Kind::Time,
        Type::NUMERIC if typmod >= 4 => {
            let precision = ((typmod - 4) >> 16) & 0xffff;
            let scale = (typmod - 4) & 0xffff;
            if precision > 38 {
                return Err(Error::UnsupportedType {
                    column: name.to_owned(),
                    db_type: format!("numeric({precision},{scale}) (more than Decimal128's 38 digits)"),
                });
            }
            Kind::Decimal(precision as u8, scale as i8)
        }
        Type::NUMERIC => Kind::Decimal(UNCONSTRAINED_DECIMAL.0, UNCONSTRAINED_DECIMAL.1),
        _ => return Err(Error::UnsupportedType { column: name.to_owned(), db_type: ty.name().to_owned() }),
    })
}

/// The Arrow columns of a prepared statement's result (a table's `numeric` columns get their
/// declared precision and scale from `pg_attribute`).
async fn columns_of(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
    options: &Options,
) -> Result<Columns, Error> {
    let mut specs = Vec::with_capacity(statement.columns().len());
    for c in statement.columns() {
        let mut typmod = -1;
        if *c.type_() == Type::NUMERIC
            && let (Some(table), Some(attnum)) = (c.table_oid(), c.column_id())
        {
            let row = client
                .query_opt(
                    "SELECT atttypmod FROM pg_attribute WHERE attrelid = $1 AND attnum = $2",
                    &[&table, &attnum],
                )
                .await
                .map_err(|e| db(&e))?;
            typmod = row.map_or(-1, |r| r.get(0));
        }
        specs.push((c.name().to_owned(), kind(c.name(), c.type_(), typmod)?));
    }
    Columns::new(&specs, options.batch_rows)
}

/// Starts the `COPY`; the schema comes back at once, the batches through `tx`.
pub(crate) async fn start(
    pool: &Pool,
    sql: &str,
    params: &Params,
    options: &Options,
    tx: crate::BatchTx,
) -> Result<arrow_schema::SchemaRef, Error> {
    let inlined = keel_repo::raw::inline_postgres(sql.trim().trim_end_matches(';'), params)?;
    let client = pool.postgres_client().await?;
    client.batch_execute("SET standard_conforming_strings = on").await.map_err(|e| db(&e))?;
    let statement = client.prepare(&inlined).await.map_err(|e| db(&e))?;
    let mut columns = columns_of(&client, &statement, options).await?;
    let schema = columns.schema.clone();
    let copy =
        client.copy_out(&format!("COPY ({inlined}) TO STDOUT (FORMAT binary)")).await.map_err(|e| db(&e))?;
    let batch_rows = options.batch_rows;
    tokio::spawn(async move {
        // The client must live as long as the copy stream: dropping it ends the session, which
        // stops the server's COPY (what happens when the reader goes away).
        let _client = client;
        let mut copy = std::pin::pin!(copy);
        let mut buf = BytesMut::new();
        let mut header_done = false;
        let result: Result<(), Error> = async {
            loop {
                if !header_done && let Some(len) = header_len(&buf)? {
                    buf.advance(len);
                    header_done = true;
                }
                if header_done {
                    while let Some(len) = tuple_len(&buf, columns.builders.len())? {
                        let Some(len) = len else { return Ok(()) };
                        decode_tuple(&buf[..len], &mut columns)?;
                        buf.advance(len);
                        if columns.rows == batch_rows && tx.send(columns.finish()).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                match copy.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => return Err(db(&e)),
                    None => return Err(Error::value("?", "COPY ended without its trailer")),
                }
            }
        }
        .await;
        send_rest(&mut columns, result, &tx).await;
        // Read to the end so the COPY completes cleanly when the trailer came early.
        while let Some(Ok(_)) = copy.next().await {}
    });
    Ok(schema)
}

/// Sends what the read leaves: its last partial batch, or the error that ended it.
async fn send_rest(columns: &mut Columns, result: Result<(), Error>, tx: &crate::BatchTx) {
    let last = match result {
        Ok(()) if columns.rows > 0 => columns.finish(),
        Ok(()) => return,
        Err(e) => Err(e),
    };
    let _ = tx.send(last).await;
}

/// A bind value as diesel serialised it (PostgreSQL's binary format), sent as it is.
#[derive(Debug)]
struct RawParam<'a>(Option<&'a [u8]>);

impl tokio_postgres::types::ToSql for RawParam<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match self.0 {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                tokio_postgres::types::IsNull::No
            }
            None => tokio_postgres::types::IsNull::Yes,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A result value's binary wire bytes, whatever its type (decoded by [`append`], as COPY's are).
struct RawField<'a>(&'a [u8]);

impl<'a> tokio_postgres::types::FromSql<'a> for RawField<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawField(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The type diesel gave a bind (`oid`), as tokio-postgres names it in `Parse`.
fn bind_type(oid: u32) -> Type {
    Type::from_oid(oid).unwrap_or_else(|| {
        Type::new(format!("oid {oid}"), oid, tokio_postgres::types::Kind::Simple, String::new())
    })
}

/// Starts a typed diesel query: its SQL with `$n` placeholders and diesel's binary binds (type
/// oids and bytes, from [`crate::typed::postgres_binds`]) as a prepared statement (COPY takes no
/// parameters); its binary result rows go through the same decoder as COPY's tuples.
pub(crate) async fn start_typed<Q>(
    pool: &Pool,
    query: &Q,
    options: &Options,
    tx: crate::BatchTx,
) -> Result<arrow_schema::SchemaRef, Error>
where
    Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>,
{
    let client = pool.postgres_client().await?;
    let (sql, binds) = crate::typed::postgres_binds(&client, query).await?;
    let types: Vec<Type> = binds.iter().map(|(oid, _)| bind_type(*oid)).collect();
    let statement = client.prepare_typed(&sql, &types).await.map_err(|e| db(&e))?;
    let mut columns = columns_of(&client, &statement, options).await?;
    let schema = columns.schema.clone();
    let params = binds.iter().map(|(_, b)| RawParam(b.as_deref()));
    let rows = client.query_raw(&statement, params).await.map_err(|e| db(&e))?;
    let batch_rows = options.batch_rows;
    tokio::spawn(async move {
        // As for COPY: dropping the client (when the reader goes away) ends the session.
        let _client = client;
        let mut rows = std::pin::pin!(rows);
        let result: Result<(), Error> = async {
            while let Some(row) = rows.next().await {
                let row = row.map_err(|e| db(&e))?;
                for (i, builder) in columns.builders.iter_mut().enumerate() {
                    let field: Option<RawField> = row.try_get(i).map_err(|e| db(&e))?;
                    match field {
                        None => builder.append_null(),
                        Some(RawField(v)) => {
                            append(builder, v).map_err(|m| Error::value(&columns.names[i], m))?
                        }
                    }
                }
                columns.rows += 1;
                if columns.rows == batch_rows && tx.send(columns.finish()).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        }
        .await;
        send_rest(&mut columns, result, &tx).await;
    });
    Ok(schema)
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The header's length once it is all in `buf`.
fn header_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
    if buf.len() < 19 {
        return Ok(None);
    }
    if &buf[..11] != SIGNATURE {
        return Err(Error::value("?", "not a binary COPY stream"));
    }
    let ext = i32_at(buf, 15) as usize;
    Ok((buf.len() >= 19 + ext).then_some(19 + ext))
}

/// The length of the next tuple if it is all in `buf`: `Some(None)` for the trailer.
fn tuple_len(buf: &[u8], ncols: usize) -> Result<Option<Option<usize>>, Error> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let n = i16_at(buf, 0);
    if n == -1 {
        return Ok(Some(None));
    }
    if n as usize != ncols {
        return Err(Error::value("?", format!("COPY tuple has {n} fields, expected {ncols}")));
    }
    let mut at = 2;
    for _ in 0..ncols {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let len = i32_at(buf, at);
        at += 4 + usize::try_from(len).unwrap_or(0);
    }
    Ok((buf.len() >= at).then_some(Some(at)))
}

/// Appends one tuple's fields to the builders.
fn decode_tuple(t: &[u8], columns: &mut Columns) -> Result<(), Error> {
    let mut at = 2;
    for (i, builder) in columns.builders.iter_mut().enumerate() {
        let len = i32_at(t, at);
        at += 4;
        if len < 0 {
            builder.append_null();
            continue;
        }
        let v = &t[at..at + len as usize];
        at += len as usize;
        append(builder, v).map_err(|m| Error::value(&columns.names[i], m))?;
    }
    columns.rows += 1;
    Ok(())
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
    v.try_into().map_err(|_| format!("expected {N} bytes, got {}", v.len()))
}

/// One binary wire value into its builder.
fn append(builder: &mut Builder, v: &[u8]) -> Result<(), String> {
    match builder {
        Builder::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
        Builder::Int16(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
        Builder::Int32(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
        Builder::Int64(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
        Builder::Float32(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
        Builder::Float64(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
        Builder::Text(b) => {
            // jsonb's binary form is a version byte (1) and the text.
            let text = match v.first() {
                Some(1) => &v[1..],
                _ => v,
            };
            b.append_value(std::str::from_utf8(text).map_err(|e| e.to_string())?)
        }
        Builder::Binary(b) => b.append_value(v),
        Builder::Fixed(b) => b.append_value(v).map_err(|e| e.to_string())?,
        Builder::Timestamp(b) => {
            b.append_value(i64::from_be_bytes(fixed(v)?).saturating_add(PG_EPOCH_MICROS))
        }
        Builder::Date(b) => b.append_value(i32::from_be_bytes(fixed(v)?).saturating_add(PG_EPOCH_DAYS)),
        Builder::Time(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
        Builder::Decimal(b, scale) => b.append_value(numeric(v, *scale)?),
        Builder::UInt64(_) => return Err("PostgreSQL has no unsigned integers".to_owned()),
    }
    Ok(())
}

/// PostgreSQL's binary `numeric` (base-10000 digits, a weight and a sign) as an integer at `scale`.
fn numeric(v: &[u8], scale: i8) -> Result<i128, String> {
    if v.len() < 8 {
        return Err("short numeric".to_owned());
    }
    let ndigits = i16_at(v, 0) as i64;
    let weight = i16_at(v, 2) as i64;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    if sign == 0xC000 {
        return Err("NaN does not fit a Decimal128".to_owned());
    }
    if sign != 0 && sign != 0x4000 {
        return Err("infinite numerics do not fit a Decimal128".to_owned());
    }
    if v.len() < 8 + 2 * ndigits as usize {
        return Err("short numeric".to_owned());
    }
    let overflow = || "numeric overflows 38 digits".to_owned();
    let mut acc: i128 = 0;
    for i in 0..ndigits as usize {
        let d = i16_at(v, 8 + 2 * i) as i128;
        acc = acc.checked_mul(10_000).and_then(|a| a.checked_add(d)).ok_or_else(overflow)?;
    }
    // acc × 10000^(weight - ndigits + 1), then × 10^scale.
    let exp10 = 4 * (weight - ndigits + 1) + i64::from(scale);
    if exp10 >= 0 {
        for _ in 0..exp10 {
            acc = acc.checked_mul(10).ok_or_else(overflow)?;
        }
    } else {
        for _ in 0..-exp10 {
            if acc % 10 != 0 {
                return Err(format!(
                    "numeric value has more than {scale} fractional digits; cast it to numeric(p,s)"
                ));
            }
            acc /= 10;
        }
    }
    Ok(if sign == 0x4000 { -acc } else { acc })
}
