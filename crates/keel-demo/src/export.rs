//! `keel-demo export`: a query (or a whole table) written as Parquet, Arrow IPC, CSV, JSON
//! Lines or an aligned text table, to a file or stdout, with a progress bar on stderr (rows,
//! rows/s, bytes written). The work is keel-frames'; this is the command line around it.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt as _;
use keel_frames::{Format, Options};
use keel_pool::{Config, Pool};
use keel_repo::raw::{Params, Value};

/// Arguments of `keel-demo export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// The SQL to export, with `:name` parameters (`--param name=value`).
    #[arg(long, required_unless_present = "table", conflicts_with = "table")]
    pub query: Option<String>,
    /// Export a whole table (shortcut for `--query 'SELECT * FROM <table>'`).
    #[arg(long)]
    pub table: Option<String>,
    /// A parameter as NAME=VALUE; integers, decimals-as-floats and true/false are typed, anything
    /// else is text. Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// parquet, arrow (IPC file), arrows (IPC stream), csv, jsonl, table (aligned text), or
    /// memory: every batch collected in memory, as a data-frame user holds a result, then a
    /// JSON summary (rows, Arrow bytes held, rows/s) on stdout and nothing written.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Output file, or `-` for stdout.
    #[arg(long, default_value = "-")]
    pub output: String,
    /// Rows `--format table` prints at most.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Rows per Arrow batch.
    #[arg(long, default_value_t = keel_frames::DEFAULT_BATCH_ROWS)]
    pub batch_rows: usize,
}

/// `NAME=VALUE` pairs as parameters, naming the one that is malformed.
pub fn parse_params(pairs: &[String]) -> Result<Params> {
    let mut params = Params::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--param {pair:?}: expected NAME=VALUE (e.g. --param min=50000)");
        };
        let ok_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_name {
            bail!("--param {pair:?}: {name:?} is not a parameter name (letters, digits, _)");
        }
        let value = if let Ok(i) = value.parse::<i64>() {
            Value::Int(i)
        } else if let Ok(f) =
            value.parse::<f64>().map_err(|_| ()).and_then(|f| if f.is_finite() { Ok(f) } else { Err(()) })
        {
            Value::Float(f)
        } else if value == "true" || value == "false" {
            Value::Bool(value == "true")
        } else {
            Value::Text(value.to_owned())
        };
        params = params.set(name, value);
    }
    Ok(params)
}

/// The SQL the arguments ask for (`--table` checked to be a plain identifier).
pub fn sql_of(args: &ExportArgs) -> Result<String> {
    match (&args.query, &args.table) {
        (Some(q), _) => Ok(q.clone()),
        (None, Some(t)) => {
            if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                bail!("--table {t:?}: not a table name (letters, digits, _ and .)");
            }
            Ok(format!("SELECT * FROM {t}"))
        }
        (None, None) => bail!("give --query or --table"),
    }
}

/// A writer that counts the bytes through it.
struct Counting<W> {
    inner: W,
    bytes: Arc<AtomicU64>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `keel-demo export`.
pub async fn command(config: Config, args: &ExportArgs) -> Result<()> {
    let pool = crate::open(config).await?;
    run(&pool, args).await
}

/// Runs the export on `pool` (see [`ExportArgs`]).
pub async fn run(pool: &Pool, args: &ExportArgs) -> Result<()> {
    let sql = sql_of(args)?;
    let params = parse_params(&args.params)?;
    let options = Options::new().batch_rows(args.batch_rows);
    let format = match args.format.as_str() {
        "table" | "memory" => None,
        name => Some(Format::parse(name).with_context(|| {
            format!("--format {name:?}: expected parquet, arrow, arrows, csv, jsonl, table or memory")
        })?),
    };
    let started = std::time::Instant::now();
    let batches =
        keel_frames::query(pool, &sql, &params, &options).await.context("running the export query")?;
    let Some(format) = format else {
        if args.format == "memory" {
            return collect(batches, started).await;
        }
        return print_table(batches, args.limit).await;
    };
    let out: Box<dyn Write + Send> = if args.output == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        let file =
            std::fs::File::create(&args.output).with_context(|| format!("creating {}", args.output))?;
        Box::new(std::io::BufWriter::new(file))
    };
    let bytes = Arc::new(AtomicU64::new(0));
    let out = Counting { inner: out, bytes: bytes.clone() };
    let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {human_pos} rows  {per_sec}  {msg}  {elapsed}")
            .context("the progress bar's template")?,
    );
    let (written, mut out) = keel_frames::write::write_with(batches, format, out, |w| {
        bar.set_position(w.rows);
        bar.set_message(format!("{} written", indicatif::HumanBytes(bytes.load(Ordering::Relaxed))));
    })
    .await
    .with_context(|| format!("exporting to {}", args.output))?;
    out.flush().with_context(|| format!("flushing {}", args.output))?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let summary = serde_json::json!({
        "rows": written.rows,
        "bytes": bytes.load(Ordering::Relaxed),
        "format": format.extension(),
        "output": args.output,
        "seconds": elapsed.as_secs_f64(),
        "rows_per_second": written.rows as f64 / elapsed.as_secs_f64().max(1e-9),
    });
    if args.output == "-" {
        // stdout holds the data: the summary goes to stderr.
        eprintln!("{summary}");
        Ok(())
    } else {
        crate::print_json(&summary)
    }
}

/// Holds every batch in memory, then prints rows, Arrow bytes held and rows/s (timed from
/// `started`, before the query ran) as JSON.
async fn collect(batches: keel_frames::Batches, started: std::time::Instant) -> Result<()> {
    let held: Vec<keel_frames::RecordBatch> = batches.try_collect().await.context("reading the query")?;
    let elapsed = started.elapsed();
    let rows: usize = held.iter().map(|b| b.num_rows()).sum();
    let bytes: usize = held.iter().map(|b| b.get_array_memory_size()).sum();
    crate::print_json(&serde_json::json!({
        "rows": rows,
        "batches": held.len(),
        "arrow_bytes": bytes,
        "format": "memory",
        "seconds": elapsed.as_secs_f64(),
        "rows_per_second": rows as f64 / elapsed.as_secs_f64().max(1e-9),
    }))
}

/// Prints up to `limit` rows as an aligned text table, then stops the query.
async fn print_table(mut batches: keel_frames::Batches, limit: usize) -> Result<()> {
    use arrow_cast::display::{ArrayFormatter, FormatOptions};
    let schema = batches.schema();
    let headers: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let options = FormatOptions::default().with_null("NULL");
    while rows.len() < limit {
        let Some(batch) = batches.try_next().await.context("reading the query")? else { break };
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .context("formatting a batch")?;
        for i in 0..batch.num_rows().min(limit - rows.len()) {
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    drop(batches);
    crate::table::print(&headers, &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_typed_and_bad_ones_named() {
        let p = parse_params(&["min=50000".into(), "name=Ada".into()]).unwrap();
        assert_eq!(p, Params::new().set("min", 50_000).set("name", "Ada"));
        let err = parse_params(&["min".into()]).unwrap_err().to_string();
        assert!(err.contains("--param \"min\""), "{err}");
        let err = parse_params(&["m-in=1".into()]).unwrap_err().to_string();
        assert!(err.contains("not a parameter name"), "{err}");
    }
}
