"""The Python side of `cargo xtask bench`'s frames section (xtask/src/bench/frames.rs runs it in
the virtual environment it creates under target/bench/venv).

    frames.py read --tool TOOL --backend BACKEND --url URL --query SQL --to memory|parquet
                   [--output FILE] [--partition-on COLUMN --partitions N]
        Reads the query with TOOL (connectorx, adbc, pandas) into memory (a pyarrow Table; a
        pandas DataFrame for pandas) or to a Parquet file; prints one JSON line:
        {"rows": n, "seconds": s} where s runs from just before connecting to the end of the
        read (or of the Parquet write), so the interpreter's start and imports are not counted.

    frames.py readback FILE
        Reads a Parquet (.parquet) or Arrow IPC file (.arrow) with pyarrow and prints its schema,
        then one JSON line: {"rows": n, "columns": [[name, type], ...]}.
"""

import argparse
import json
import sys
import time


def urls(backend, url):
    """(ConnectorX/ADBC URL, SQLAlchemy URL) for keel's URL."""
    if backend == "postgres":
        rest = url.split("://", 1)[1]
        return "postgresql://" + rest, "postgresql+psycopg2://" + rest
    if backend == "mysql":
        rest = url.split("://", 1)[1]
        return "mysql://" + rest, "mysql+pymysql://" + rest
    if backend == "sqlite":
        path = url.split("://", 1)[1]
        # keel's sqlite:///abs/path is ConnectorX's form; SQLAlchemy wants sqlite:////abs/path.
        return "sqlite://" + path, "sqlite:///" + path
    raise SystemExit(f"unknown backend {backend!r}")


def read(args):
    cx_url, sa_url = urls(args.backend, args.url)
    started = time.perf_counter()
    if args.tool == "connectorx":
        import connectorx as cx

        kwargs = {}
        if args.partition_on:
            kwargs = {"partition_on": args.partition_on, "partition_num": args.partitions}
        table = cx.read_sql(cx_url, args.query, return_type="arrow", **kwargs)
        rows = table.num_rows
    elif args.tool == "adbc":
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(cx_url) as conn, conn.cursor() as cur:
            cur.execute(args.query)
            table = cur.fetch_arrow_table()
        rows = table.num_rows
    elif args.tool == "pandas":
        import pandas as pd
        import sqlalchemy

        engine = sqlalchemy.create_engine(sa_url)
        with engine.connect() as conn:
            table = pd.read_sql(sqlalchemy.text(args.query), conn)
        engine.dispose()
        rows = len(table)
    else:
        raise SystemExit(f"unknown tool {args.tool!r}")
    if args.to == "parquet":
        import pyarrow.parquet as pq

        if args.tool == "pandas":
            table.to_parquet(args.output, engine="pyarrow", compression="snappy")
        else:
            pq.write_table(table, args.output, compression="snappy")
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds}))


def readback(args):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if args.file.endswith(".parquet"):
        table = pq.read_table(args.file)
    else:
        with pa.memory_map(args.file) as source:
            table = pa.ipc.open_file(source).read_all()
    print(table.schema, file=sys.stderr)
    columns = [[f.name, str(f.type)] for f in table.schema]
    print(json.dumps({"rows": table.num_rows, "columns": columns}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("read")
    r.add_argument("--tool", required=True, choices=["connectorx", "adbc", "pandas"])
    r.add_argument("--backend", required=True, choices=["postgres", "mysql", "sqlite"])
    r.add_argument("--url", required=True)
    r.add_argument("--query", required=True)
    r.add_argument("--to", required=True, choices=["memory", "parquet"])
    r.add_argument("--output")
    r.add_argument("--partition-on")
    r.add_argument("--partitions", type=int, default=1)
    b = sub.add_parser("readback")
    b.add_argument("file")
    args = parser.parse_args()
    if args.command == "read":
        if args.to == "parquet" and not args.output:
            parser.error("--to parquet needs --output")
        read(args)
    else:
        readback(args)


if __name__ == "__main__":
    main()
