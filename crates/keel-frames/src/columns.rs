//! Arrow builders for one result column each, and the batch they make. Every backend appends
//! into the same builders; only how a wire value is read differs.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, FixedSizeBinaryBuilder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::Error;

/// Precision and scale given to decimals whose column declares none (PostgreSQL's plain
/// `numeric`, `SUM(numeric)`): a value with more fractional digits is an error naming the column.
pub const UNCONSTRAINED_DECIMAL: (u8, i8) = (38, 10);

/// The Arrow type a column is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    UInt64,
    Float32,
    Float64,
    Text,
    Binary,
    /// Fixed-width binary (MySQL `BINARY(n)`).
    FixedBinary(i32),
    /// A UUID: `FixedSizeBinary(16)` tagged with the `arrow.uuid` extension.
    Uuid,
    /// Microseconds; `true` for UTC (timestamptz, keel's UTC `DATETIME`), `false` for no zone.
    Timestamp(bool),
    Date,
    Time,
    Decimal(u8, i8),
}

impl Kind {
    fn field(self, name: &str) -> Field {
        let dt = match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int16 => DataType::Int16,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::UInt64 => DataType::UInt64,
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Binary => DataType::Binary,
            Kind::FixedBinary(n) => DataType::FixedSizeBinary(n),
            Kind::Uuid => DataType::FixedSizeBinary(16),
            Kind::Timestamp(true) => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            Kind::Timestamp(false) => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Date => DataType::Date32,
            Kind::Time => DataType::Time64(TimeUnit::Microsecond),
            Kind::Decimal(p, s) => DataType::Decimal128(p, s),
        };
        let field = Field::new(name, dt, true);
        if self == Kind::Uuid {
            let meta = HashMap::from([
                ("ARROW:extension:name".to_owned(), "arrow.uuid".to_owned()),
                ("ARROW:extension:metadata".to_owned(), String::new()),
            ]);
            return field.with_metadata(meta);
        }
        field
    }
}

/// One column's builder.
pub(crate) enum Builder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Fixed(FixedSizeBinaryBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    Time(Time64MicrosecondBuilder),
    Decimal(Decimal128Builder, i8),
}

impl Builder {
    fn new(kind: Kind, cap: usize) -> Result<Self, Error> {
        Ok(match kind {
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            Kind::Int16 => Builder::Int16(Int16Builder::with_capacity(cap)),
            Kind::Int32 => Builder::Int32(Int32Builder::with_capacity(cap)),
            Kind::Int64 => Builder::Int64(Int64Builder::with_capacity(cap)),
            Kind::UInt64 => Builder::UInt64(UInt64Builder::with_capacity(cap)),
            Kind::Float32 => Builder::Float32(Float32Builder::with_capacity(cap)),
            Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(cap)),
            Kind::Text => Builder::Text(StringBuilder::with_capacity(cap, cap * 16)),
            Kind::Binary => Builder::Binary(BinaryBuilder::with_capacity(cap, cap * 16)),
            Kind::FixedBinary(n) => Builder::Fixed(FixedSizeBinaryBuilder::with_capacity(cap, n)),
            Kind::Uuid => Builder::Fixed(FixedSizeBinaryBuilder::with_capacity(cap, 16)),
            Kind::Timestamp(utc) => {
                let b = TimestampMicrosecondBuilder::with_capacity(cap);
                Builder::Timestamp(if utc { b.with_timezone("+00:00") } else { b })
            }
            Kind::Date => Builder::Date(Date32Builder::with_capacity(cap)),
            Kind::Time => Builder::Time(Time64MicrosecondBuilder::with_capacity(cap)),
            Kind::Decimal(p, s) => {
                Builder::Decimal(Decimal128Builder::with_capacity(cap).with_precision_and_scale(p, s)?, s)
            }
        })
    }

    /// Appends a NULL.
    pub(crate) fn append_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::UInt64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Text(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Fixed(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
            Builder::Decimal(b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::UInt64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Fixed(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Decimal(b, _) => Arc::new(b.finish()),
        }
    }
}

/// The columns of a result being built into batches.
pub(crate) struct Columns {
    pub(crate) schema: SchemaRef,
    pub(crate) names: Vec<String>,
    pub(crate) builders: Vec<Builder>,
    pub(crate) rows: usize,
}

impl Columns {
    pub(crate) fn new(columns: &[(String, Kind)], batch_rows: usize) -> Result<Self, Error> {
        let fields: Vec<Field> = columns.iter().map(|(n, k)| k.field(n)).collect();
        let builders = columns.iter().map(|(_, k)| Builder::new(*k, batch_rows)).collect::<Result<_, _>>()?;
        let names = columns.iter().map(|(n, _)| n.clone()).collect();
        Ok(Columns { schema: Arc::new(Schema::new(fields)), names, builders, rows: 0 })
    }

    /// The rows appended so far as a batch; the builders start again empty.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, Error> {
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)?)
    }
}

/// Decimal text (`-12.50`, `3`) as an integer at `scale`; fails when it has more fractional
/// digits than `scale` (other than trailing zeros) or does not fit 38 digits.
pub(crate) fn decimal_text(text: &str, scale: i8) -> Result<i128, String> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = usize::try_from(scale).map_err(|_| "negative scales are not supported".to_owned())?;
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    if !dropped.chars().all(|c| c == '0') {
        return Err(format!("decimal {text} has more than {scale} fractional digits"));
    }
    let mut v: i128 = 0;
    let push = |v: i128, c: char| -> Result<i128, String> {
        let d = c.to_digit(10).ok_or_else(|| format!("{text:?} is not a decimal"))?;
        v.checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(d)))
            .ok_or_else(|| format!("decimal {text} overflows 38 digits"))
    };
    for c in int.chars().chain(kept.chars()) {
        v = push(v, c)?;
    }
    for _ in kept.len()..scale {
        v = push(v, '0')?;
    }
    Ok(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_scales_and_refuses_lost_digits() {
        assert_eq!(decimal_text("-12.5", 2), Ok(-1250));
        assert_eq!(decimal_text("3", 2), Ok(300));
        assert_eq!(decimal_text("1.2300", 2), Ok(123));
        assert!(decimal_text("1.234", 2).is_err());
        assert!(decimal_text("1e3", 2).is_err());
    }
}
