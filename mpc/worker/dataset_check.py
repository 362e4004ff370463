"""A party's datasets, checked where they live: at a worker's start, and by
`mpc worker --check` for the data engineer who sets one up.

The check opens each dataset as a job would (the file's layout and encoding, an OMOP
folder's tables, a database's query) and reads its columns; the dry run also counts its
rows. What it reports is shapes: column names, which are the schema, and the number of
rows as a class (100-999), never a value of the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpc.config.party import DatasetConfig, PartyConfig
from mpc.connectors.engines import open_source
from mpc.errors import DataError


@dataclass(frozen=True)
class _Probe:
    """A DatasetRequest for the party itself, outside any job."""

    party: str
    dataset: str

    def error(self, message: str, column: str | None = None) -> DataError:
        return DataError(self.party, self.dataset, message, column=column)


@dataclass(frozen=True)
class DatasetShape:
    name: str
    kind: str  # csv, parquet, omop:<view>, sql
    columns: tuple[str, ...]
    rows: str | None  # a row-count class (dry run only)


def where(config: PartyConfig, dataset: DatasetConfig) -> str:
    """The config field that says where the dataset is, e.g. `party.toml [datasets.x] path`."""
    field = ("url and query" if dataset.format == "sql" else
             "omop" if dataset.format == "omop" else "path")
    return f"{config.source} [datasets.{dataset.name}] {field}"


def _file_problem(dataset: DatasetConfig) -> str | None:
    """What is wrong with the dataset's file or folder, before any engine opens it."""
    if dataset.format == "sql":
        return None
    target = dataset.omop if dataset.format == "omop" else dataset.path
    assert target is not None  # a file or folder dataset names one (config/party.py)
    if not target.exists():
        return f"{target} does not exist"
    if dataset.format == "omop":
        if not target.is_dir():
            return f"{target} is not a folder (omop names a folder of OMOP CDM tables)"
    elif not target.is_file():
        return f"{target} is not a file"
    try:
        if target.is_file():
            with target.open("rb") as fh:
                fh.read(1)
        else:
            next(target.iterdir(), None)
    except OSError as exc:
        return f"{target} cannot be read ({exc.strerror})"
    return None


def row_class(rows: int) -> str:
    """A row count as the order of magnitude it lies in: enough to see that a dataset is
    the one meant, without its exact size."""
    if rows == 0:
        return "no rows"
    low = 10 ** (len(str(rows)) - 1)
    return f"{low:,}-{low * 10 - 1:,} rows" if low > 1 else "1-9 rows"


def check_dataset(config: PartyConfig, dataset: DatasetConfig, *, count: bool = False
                  ) -> DatasetShape:
    """Open the dataset as a job would; DataError naming the config field if it cannot be."""
    problem = _file_problem(dataset)
    probe = _Probe(config.name, dataset.name)
    if problem is not None:
        raise probe.error(f"{problem} ({where(config, dataset)})")
    kind = f"omop:{dataset.view}" if dataset.format == "omop" else dataset.format
    try:
        with open_source(dataset, probe) as source:
            rows = None
            if count:
                rows = row_class(int(source.run(f"SELECT COUNT(*) FROM {source.relation}")
                                     [0][0]))
            return DatasetShape(dataset.name, kind, tuple(source.columns), rows)
    except DataError as exc:
        raise probe.error(f"{str(exc).split(': ', 2)[-1]} ({where(config, dataset)})") from None


def check_datasets(config: PartyConfig, *, dry_run: bool = False
                   ) -> tuple[list[DatasetShape], list[DataError]]:
    """Every dataset of the party: the shapes of those that open, the errors of the rest.
    At a worker's start (dry_run False) databases are not dialled: one that is down for a
    while must not keep the worker from serving the rest; each job checks it. The dry run
    dials them and counts every dataset's rows."""
    shapes, errors = [], []
    for dataset in config.datasets.values():
        if dataset.format == "sql" and not dry_run:
            continue
        try:
            shapes.append(check_dataset(config, dataset, count=dry_run))
        except DataError as exc:
            errors.append(exc)
    return shapes, errors
