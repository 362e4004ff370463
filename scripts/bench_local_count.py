"""Benchmark a party's local table: engine pushdown against the pandas way of doing it.

    python scripts/bench_local_count.py [--rows 10000000] [--keep] [--skip-postgres]
                                        [--pandas-sql-rows N] [--seed 7]

Generates an OMOP-like drug_exposure table (numpy, seeded), writes it as Parquet and
loads it into a private PostgreSQL server (tests/pg.py) with COPY. Then computes the
local table of product x indication x line for three measures (count,
count_distinct:person_id, sum:quantity) in four ways:

- duckdb:   mpc.connectors.compute_local_table on the Parquet file (one query per measure);
- pushdown: compute_local_table on PostgreSQL, query "SELECT * FROM drug_exposure";
- pandas:   pd.read_parquet of the same file, then one groupby for all three measures;
- pandas read_sql: pd.read_sql of the same query, then the same groupby.

rows/s is source rows divided by the wall time to get all three measures. Every method's
tables must equal the DuckDB ones, else the script exits with status 1. Reading millions
of rows through pandas from PostgreSQL is slow: --pandas-sql-rows reads only the first N
rows (by drug_exposure_id) and extrapolates rows/s from them, and the output says so.
The server and the temporary files are removed at the end, also on errors.
"""

from __future__ import annotations

import argparse
import io
import itertools
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpc.config.party import DatasetConfig  # noqa: E402
from mpc.config.spec import Measure  # noqa: E402
from mpc.connectors import LocalTable, TableRequest, compute_local_table  # noqa: E402

T = TypeVar("T")

TABLE = "drug_exposure"
PRODUCTS = ("pembrolizumab", "nivolumab", "atezolizumab")
INDICATIONS = ("NSCLC", "melanoma", "RCC", "urothelial", "HNSCC")
LINES = ("1", "2", "3+")
CATEGORIES = (("drug_source_value", PRODUCTS), ("indication", INDICATIONS), ("line", LINES))
GROUP_BY = tuple(column for column, _ in CATEGORIES)
MEASURES = (Measure("count"), Measure("count_distinct", "person_id"),
            Measure("sum", "quantity"))
ROW_GROUP_ROWS = 2_000_000
COPY_BATCH_ROWS = 500_000
EXPOSURES_PER_PERSON = 20  # so that count_distinct differs from count

DDL = f"""CREATE TABLE {TABLE} (
    drug_exposure_id bigint NOT NULL,
    person_id bigint NOT NULL,
    drug_source_value text NOT NULL,
    drug_exposure_start_date date NOT NULL,
    line text NOT NULL,
    indication text NOT NULL,
    quantity integer NOT NULL
)"""

Tables = dict[str, LocalTable]  # measure (as text) -> local table


class Mismatch(Exception):
    """A method's local table differs from the reference one."""


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def mrows(rows: int, seconds: float) -> float:
    return rows / seconds / 1e6


# --- data ---------------------------------------------------------------------------


def _text_column(rng: np.random.Generator, rows: int, values: tuple[str, ...],
                 p: list[float]) -> pa.Array:
    # Dictionary indices then cast: never 10M Python strings in memory.
    codes = rng.choice(len(values), size=rows, p=p).astype(np.int8)
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(values)).cast(pa.string())


def generate(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    persons = max(1, rows // EXPOSURES_PER_PERSON)
    start = np.datetime64("2018-01-01") + rng.integers(0, 7 * 365, size=rows)
    return pa.table({
        "drug_exposure_id": pa.array(np.arange(1, rows + 1, dtype=np.int64)),
        "person_id": pa.array(rng.integers(1, persons + 1, size=rows, dtype=np.int64)),
        "drug_source_value": _text_column(rng, rows, PRODUCTS, [0.5, 0.3, 0.2]),
        "drug_exposure_start_date": pa.array(start.astype("datetime64[D]")),
        "line": _text_column(rng, rows, LINES, [0.55, 0.3, 0.15]),
        "indication": _text_column(rng, rows, INDICATIONS, [0.4, 0.2, 0.15, 0.15, 0.1]),
        "quantity": pa.array(rng.integers(1, 29, size=rows, dtype=np.int32)),
    })


def load_postgres(url: str, table: pa.Table) -> None:
    """CREATE, COPY from a CSV stream, primary key, VACUUM ANALYZE (as a maintained table
    would be: hint bits set and statistics current, so no scan pays for them)."""
    import psycopg
    import sqlalchemy as sa

    conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(DDL)
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} FROM STDIN (FORMAT csv)") as copy:
            options = pacsv.WriteOptions(include_header=False)
            for batch in table.to_batches(max_chunksize=COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getbuffer())
        # The key makes the --pandas-sql-rows sample an index range, not a full scan.
        conn.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (drug_exposure_id)")
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")


# --- the methods ----------------------------------------------------------------------


def connector_tables(dataset: DatasetConfig) -> tuple[float, dict[str, float], Tables]:
    """One compute_local_table per measure, as a worker would run them."""
    per_measure: dict[str, float] = {}
    tables: Tables = {}
    for measure in MEASURES:
        request = TableRequest(party="bench", dataset=TABLE, group_by=GROUP_BY,
                               categories=CATEGORIES, measure=measure)
        seconds, tables[str(measure)] = timed(lambda r=request: compute_local_table(dataset, r))
        per_measure[str(measure)] = seconds
    return sum(per_measure.values()), per_measure, tables


def pandas_tables(df: pd.DataFrame) -> Tables:
    """The naive party: one groupby with all measures, then cells in the spec's order."""
    grouped = df.groupby(list(GROUP_BY), sort=False).agg(
        n_rows=("person_id", "size"),
        distinct=("person_id", "nunique"),
        total=("quantity", "sum"),
    )
    cells = pd.MultiIndex.from_tuples(
        list(itertools.product(*(values for _, values in CATEGORIES))), names=GROUP_BY)
    grouped = grouped.reindex(cells, fill_value=0)
    rows = grouped["n_rows"].to_numpy(np.int64)
    return {
        "count": LocalTable(values=rows, rows=rows),
        "count_distinct:person_id": LocalTable(values=grouped["distinct"].to_numpy(np.int64),
                                               rows=rows),
        "sum:quantity": LocalTable(values=grouped["total"].to_numpy(np.int64), rows=rows),
    }


def check_same(name: str, got: Tables, want: Tables) -> None:
    for measure, expected in want.items():
        table = got[measure]
        for field in ("values", "rows"):
            a, b = getattr(table, field), getattr(expected, field)
            if a.shape != b.shape or not np.array_equal(a, b):
                bad = np.flatnonzero(a != b)[:5].tolist() if a.shape == b.shape else []
                raise Mismatch(f"{name}, {measure}: {field} differ from the reference "
                               f"(first cells {bad})")


def ratio_text(fast: float, slow: float) -> str:
    ratio = slow / fast
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"


def measure_times(per_measure: dict[str, float]) -> str:
    return ", ".join(f"{m} {s:.2f} s" for m, s in per_measure.items())


# --- run ----------------------------------------------------------------------------


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: cleanup still runs


@contextmanager
def work_folder(keep: bool) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="bench-local-count-"))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def bench_postgres(args: argparse.Namespace, table: pa.Table, reference: Tables,
                   summary: dict[str, Any]) -> None:
    import sqlalchemy as sa

    from tests.pg import postgres_server

    rows = args.rows
    with postgres_server() as pg:
        seconds, _ = timed(lambda: load_postgres(pg.url, table))
        print(f"load postgresql: {seconds:.1f} s (CREATE, COPY csv stream, primary key, "
              f"VACUUM ANALYZE), {mrows(rows, seconds):.2f} M rows/s")

        query = f"SELECT * FROM {TABLE}"
        dataset = DatasetConfig(name=TABLE, url=pg.url, query=query)
        push_s, push_parts, push_tables = connector_tables(dataset)
        check_same("postgresql pushdown", push_tables, reference)

        sample = min(args.pandas_sql_rows or rows, rows)
        sql = query if sample == rows else f"{query} WHERE drug_exposure_id <= {sample}"
        engine = sa.create_engine(pg.url)
        try:
            def read_sql_groupby() -> Tables:
                with engine.connect() as conn:
                    df = pd.read_sql_query(sql, conn)
                return pandas_tables(df)

            pd_s, pd_tables = timed(read_sql_groupby)
        finally:
            engine.dispose()
        if sample == rows:
            check_same("pandas read_sql", pd_tables, reference)
        else:
            # The sample has its own expected tables: the pushdown over the same query.
            _, _, want = connector_tables(DatasetConfig(name=TABLE, url=pg.url, query=sql))
            check_same("pandas read_sql (sample)", pd_tables, want)

    push_rate, pd_rate = mrows(rows, push_s), mrows(sample, pd_s)
    sampled = "" if sample == rows else (f" (read {sample:,} of {rows:,} rows, rate "
                                         f"extrapolated)")
    print(f"  pushdown {push_s:.2f} s ({measure_times(push_parts)})")
    print(f"  pandas read_sql+groupby {pd_s:.2f} s for {sample:,} rows{sampled}")
    print(f"postgresql: pushdown {push_rate:.1f} M rows/s, pandas read_sql+groupby "
          f"{pd_rate:.2f} M rows/s{sampled}, ratio {ratio_text(pd_rate, push_rate)}")
    summary["postgresql"] = (push_rate, pd_rate, bool(sampled))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the Parquet folder")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--pandas-sql-rows", type=int, default=None, metavar="N",
                        help="pandas reads only the first N rows from PostgreSQL; its "
                             "rows/s is extrapolated (default: all rows)")
    args = parser.parse_args(argv)
    if args.rows < 1 or (args.pandas_sql_rows is not None and args.pandas_sql_rows < 1):
        parser.error("row counts must be positive")
    signal.signal(signal.SIGTERM, _raise_exit)

    rows = args.rows
    measures = ", ".join(str(m) for m in MEASURES)
    print(f"local table: {' x '.join(GROUP_BY)} "
          f"({len(PRODUCTS) * len(INDICATIONS) * len(LINES)} cells), measures {measures}")
    print(f"rows/s = {rows:,} source rows / wall time for all three measures "
          f"(connector: one query per measure; pandas: one read, one groupby)")
    summary: dict[str, Any] = {}
    try:
        with work_folder(args.keep) as folder:
            path = folder / f"{TABLE}.parquet"

            def make() -> pa.Table:
                table = generate(rows, args.seed)
                pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
                return table

            seconds, table = timed(make)
            groups = pq.ParquetFile(path).metadata.num_row_groups
            print(f"generate + write parquet: {seconds:.1f} s ({rows:,} rows, {groups} row "
                  f"groups, {path.stat().st_size / 2**20:.0f} MiB)")

            duck_s, duck_parts, reference = connector_tables(DatasetConfig(TABLE, path=path))

            def read_parquet_groupby() -> Tables:
                return pandas_tables(pd.read_parquet(path))

            pd_s, pd_tables = timed(read_parquet_groupby)
            check_same("pandas read_parquet", pd_tables, reference)
            duck_rate, pd_rate = mrows(rows, duck_s), mrows(rows, pd_s)
            print(f"  duckdb {duck_s:.2f} s ({measure_times(duck_parts)})")
            print(f"  pandas read_parquet+groupby {pd_s:.2f} s")
            print(f"parquet: duckdb {duck_rate:.1f} M rows/s, pandas {pd_rate:.1f} M rows/s, "
                  f"ratio {ratio_text(pd_rate, duck_rate)}")
            summary["parquet"] = (duck_rate, pd_rate, False)

            if not args.skip_postgres:
                bench_postgres(args, table, reference, summary)
    except Mismatch as exc:
        print(f"MISMATCH: {exc}", file=sys.stderr)
        return 1

    parts = []
    for source, (engine_rate, pandas_rate, sampled) in summary.items():
        engine = "duckdb" if source == "parquet" else "pushdown"
        note = " (pandas extrapolated)" if sampled else ""
        parts.append(f"{source} {engine}/pandas {ratio_text(pandas_rate, engine_rate)}{note}")
    print(f"summary: {rows:,} rows, {len(MEASURES)} measures, all local tables identical; "
          + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
