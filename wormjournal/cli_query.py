"""``wormjournal query`` and ``wormjournal stats``: SQL over the segments (DuckDB), and ready queries."""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import analytics
from .cli_common import EXIT_OK, _keystore, _store, default_key_dir, out
from .errors import ConfigError, StorageError, ValidationError
from .trust.load import read_identity

BATCH_ROWS = 65_536  # results are written a batch at a time: memory stays bounded by a batch


def _connect(args: argparse.Namespace) -> Any:
    store = _store(args)
    keystore = _keystore(args.key_dir, read_identity(store).journal_id, required=True) if args.decrypt else None
    try:
        return analytics.connect(store, keystore=keystore, endpoint_url=args.endpoint_url)
    except (OSError, pa.ArrowException) as e:  # a segment that does not read as Parquet, a store that does not answer
        raise StorageError(f"cannot read the segments of {store.url}: {e}",
                           hint="run `wormjournal verify STORE`: it names a damaged or missing segment") from e


def _json_value(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    value = _json_value(value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def write_result(reader: pa.RecordBatchReader, fmt: str, out_path: Path | None,
                 echo: Callable[[str], None]) -> int:
    """Write the result a batch at a time; returns the rows written."""
    rows = 0
    if fmt == "parquet":
        if out_path is None:
            raise ValidationError("out", "--format parquet needs --out FILE")
        try:
            writer = pq.ParquetWriter(out_path, reader.schema, compression="zstd")
        except OSError as e:  # a bad --out (no such directory, no permission): a usage error
            raise ConfigError(f"cannot write --out {out_path}: {e}") from e
        with writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    try:
        sink = open(out_path, "w", encoding="utf-8", newline="") if out_path else None  # noqa: SIM115 - closed below
    except OSError as e:
        raise ConfigError(f"cannot write --out {out_path}: {e.strerror or e}") from e
    try:
        write = sink.write if sink else (lambda text: echo(text.rstrip("\n")))
        if fmt == "csv":
            first = True
            for batch in reader:
                buf = io.BytesIO()
                pacsv.write_csv(pa.Table.from_batches([batch], reader.schema), buf,
                                pacsv.WriteOptions(include_header=first))
                first = False
                write(buf.getvalue().decode())
                rows += batch.num_rows
            if first:
                write(",".join(reader.schema.names) + "\n")
        elif fmt == "json":
            for batch in reader:
                for row in batch.to_pylist():
                    record = {k: _json_value(v) for k, v in row.items()}
                    write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                rows += batch.num_rows
        else:  # table: aligned columns, for a terminal
            names = reader.schema.names
            body = [[_text(v) for v in row.values()] for batch in reader for row in batch.to_pylist()]
            rows = len(body)
            widths = [min(60, max([len(n)] + [len(r[i]) for r in body])) for i, n in enumerate(names)]
            write("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)) + "\n")
            for r in body:
                cells = ((c if len(c) <= w else c[: w - 1] + "…").ljust(w) for c, w in zip(r, widths, strict=True))
                write("  ".join(cells) + "\n")
    finally:
        if sink:
            sink.close()
    return rows


def cmd_query(args: argparse.Namespace) -> int:
    try:
        sql = sys.stdin.read() if args.sql == "-" else args.sql
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the SQL from stdin: {e}") from e
    con = _connect(args)
    try:
        reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
        rows = write_result(reader, args.format, args.out, lambda line: out.print(line, markup=False, highlight=False))
    except duckdb.Error as e:
        raise ValidationError("sql", str(e).splitlines()[0]) from e
    if args.out:
        out.print(f"{rows} row(s) written to {args.out}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    con = _connect(args)
    results = analytics.stats(con)
    if args.json:
        out.print(json.dumps({name: [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
                              for name, table in results.items()}, indent=1, ensure_ascii=False, default=str),
                  markup=False, highlight=False)
        return EXIT_OK
    for name, table in results.items():
        out.print(f"== {analytics.STATS[name][0]}", markup=False)
        if table.num_rows == 0:
            out.print("   (none)")
            continue
        write_result(pa.RecordBatchReader.from_batches(table.schema, table.to_batches()), "table", None,
                     lambda line: out.print(f"   {line}", markup=False, highlight=False))
    if not args.decrypt:
        out.print("payloads encrypted in the journal are left out of payload-based figures (tools, tokens, cost); "
                  "pass --decrypt --key-dir DIR to include them")
    return EXIT_OK


def add_parser(sub: Any, store: Callable[[argparse.ArgumentParser], None]) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        store(p)
        p.add_argument("--decrypt", action="store_true",
                       help="decrypt encrypted payloads in payload_json (needs the key store under --key-dir)")
        p.add_argument("--key-dir", type=Path, default=default_key_dir(), help="directory of the journal's keys")

    p = sub.add_parser("query", help="run SQL (DuckDB) over every segment through the view `events`")
    common(p)
    p.add_argument("sql", help="the query, or - for stdin; the view is `events` (FORMAT.md section 5 columns, "
                   "ts as a timestamp, stream and date partitions, payload_json)")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table",
                   help="table (default), csv, json (JSON Lines) or parquet (needs --out)")
    p.add_argument("--out", type=Path, default=None, help="write the result to this file")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("stats", help="ready queries: runs per day, node durations, tool errors, tokens and cost, "
                       "executions waiting on a human")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)
