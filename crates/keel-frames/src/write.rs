//! Writers: [`write`] streams [`Batches`] into Arrow IPC (file or stream), Parquet, CSV with a
//! header, or JSON Lines, one batch at a time (memory: the batch being written, plus Parquet's
//! current row group, at most [`PARQUET_ROW_GROUP_ROWS`] rows).

use std::io::Write;

use futures_util::StreamExt as _;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::{Batches, Error, RecordBatch, SchemaRef};

/// Rows per Parquet row group: the writer holds one row group's encoded pages in memory.
pub const PARQUET_ROW_GROUP_ROWS: usize = 131_072;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Parquet, Snappy-compressed, row groups of [`PARQUET_ROW_GROUP_ROWS`].
    Parquet,
    /// The Arrow IPC file format (`.arrow`, Feather v2): seekable, with a footer.
    ArrowFile,
    /// The Arrow IPC stream format (`application/vnd.apache.arrow.stream`): no footer, so it
    /// can go down a pipe or an HTTP body.
    ArrowStream,
    /// CSV with a header line; timestamps RFC 3339, binary as hex.
    Csv,
    /// JSON Lines: one object per row, NULLs kept as `null`.
    JsonLines,
}

impl Format {
    /// The format named `name`: `parquet`, `arrow` (IPC file), `arrows` or `arrow-stream`,
    /// `csv`, `jsonl` or `ndjson`.
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name {
            "parquet" => Format::Parquet,
            "arrow" | "feather" | "ipc" => Format::ArrowFile,
            "arrows" | "arrow-stream" => Format::ArrowStream,
            "csv" => Format::Csv,
            "jsonl" | "ndjson" => Format::JsonLines,
            _ => return None,
        })
    }

    /// The HTTP content type of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Parquet => "application/vnd.apache.parquet",
            Format::ArrowFile => "application/vnd.apache.arrow.file",
            Format::ArrowStream => "application/vnd.apache.arrow.stream",
            Format::Csv => "text/csv; charset=utf-8",
            Format::JsonLines => "application/x-ndjson",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::ArrowFile => "arrow",
            Format::ArrowStream => "arrows",
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
        }
    }
}

/// What [`write`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Written {
    /// Rows written.
    pub rows: u64,
    /// Batches written.
    pub batches: u64,
}

/// A writer of one format, fed a batch at a time.
#[expect(clippy::large_enum_variant, reason = "one per export, never moved in a loop")]
pub enum Sink<W: Write + Send> {
    /// Parquet.
    Parquet(ArrowWriter<W>),
    /// Arrow IPC file.
    ArrowFile(arrow_ipc::writer::FileWriter<W>),
    /// Arrow IPC stream.
    ArrowStream(arrow_ipc::writer::StreamWriter<W>),
    /// CSV.
    Csv(arrow_csv::Writer<W>),
    /// JSON Lines.
    JsonLines(arrow_json::LineDelimitedWriter<W>),
}

impl<W: Write + Send> Sink<W> {
    /// A writer of `format` for batches of `schema` into `out` (IPC writes its header now).
    pub fn new(format: Format, schema: &SchemaRef, out: W) -> Result<Self, Error> {
        Ok(match format {
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_size(PARQUET_ROW_GROUP_ROWS)
                    .build();
                Sink::Parquet(ArrowWriter::try_new(out, schema.clone(), Some(props))?)
            }
            Format::ArrowFile => Sink::ArrowFile(arrow_ipc::writer::FileWriter::try_new(out, schema)?),
            Format::ArrowStream => Sink::ArrowStream(arrow_ipc::writer::StreamWriter::try_new(out, schema)?),
            Format::Csv => Sink::Csv(arrow_csv::WriterBuilder::new().with_header(true).build(out)),
            Format::JsonLines => Sink::JsonLines(
                arrow_json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow_json::writer::LineDelimited>(out),
            ),
        })
    }

    /// Writes one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        match self {
            Sink::Parquet(w) => w.write(batch)?,
            Sink::ArrowFile(w) => w.write(batch)?,
            Sink::ArrowStream(w) => w.write(batch)?,
            Sink::Csv(w) => w.write(batch)?,
            Sink::JsonLines(w) => w.write(batch)?,
        }
        Ok(())
    }

    /// Writes the footer (Parquet, IPC file, IPC stream end marker) and flushes.
    pub fn finish(self) -> Result<W, Error> {
        Ok(match self {
            Sink::Parquet(w) => w.into_inner()?,
            Sink::ArrowFile(mut w) => {
                w.finish()?;
                w.into_inner()?
            }
            Sink::ArrowStream(mut w) => {
                w.finish()?;
                w.into_inner()?
            }
            Sink::Csv(w) => w.into_inner(),
            Sink::JsonLines(mut w) => {
                w.finish()?;
                w.into_inner()
            }
        })
    }
}

/// Writes every batch of `batches` to `out` in `format`, one at a time, and finishes the
/// format (footer, flush). The first error (reading or writing) stops the query and is
/// returned; `out` may then hold a partial file.
///
/// `out` is written from the calling task: give it a buffered file (`BufWriter`) or a
/// `Vec<u8>`, not a slow blocking sink, on a busy runtime.
pub async fn write<W: Write + Send>(batches: Batches, format: Format, out: W) -> Result<Written, Error> {
    write_with(batches, format, out, |_| {}).await.map(|(written, _)| written)
}

/// [`write`], calling `progress` after each batch with the totals so far, and giving `out`
/// back.
pub async fn write_with<W: Write + Send>(
    mut batches: Batches,
    format: Format,
    out: W,
    mut progress: impl FnMut(&Written),
) -> Result<(Written, W), Error> {
    let mut sink = Sink::new(format, &batches.schema(), out)?;
    let mut written = Written::default();
    while let Some(batch) = batches.next().await {
        let batch = batch?;
        sink.write(&batch)?;
        written.rows += batch.num_rows() as u64;
        written.batches += 1;
        progress(&written);
    }
    let out = sink.finish()?;
    Ok((written, out))
}

/// A `Write` whose bytes are taken out after each batch.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Shared {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `batches` in `format` as a stream of byte chunks (about one per batch), for an HTTP body:
/// nothing is buffered beyond a batch (Parquet: a row group), and dropping the stream (a client
/// that went away) stops the query.
pub fn chunks(
    mut batches: Batches,
    format: Format,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, Error>>(crate::QUEUED_BATCHES);
    tokio::spawn(async move {
        let buf = Shared::default();
        let result: Result<(), Error> = async {
            let mut sink = Sink::new(format, &batches.schema(), buf.clone())?;
            while let Some(batch) = batches.next().await {
                sink.write(&batch?)?;
                let bytes = buf.take();
                if !bytes.is_empty() && tx.send(Ok(bytes.into())).await.is_err() {
                    return Ok(()); // the reader went away: dropping `batches` stops the query
                }
            }
            sink.finish()?;
            let bytes = buf.take();
            if !bytes.is_empty() {
                let _ = tx.send(Ok(bytes.into())).await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
