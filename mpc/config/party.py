"""Party (worker) and dealer configs: TOML read into frozen dataclasses in one place."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpc.config.bounds import DatasetBounds
from mpc.config.fields import Fields, host_port, load_toml
from mpc.errors import ConfigError


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def parse(cls, f: Fields) -> TlsFiles:
        tls = cls(ca=f.path("ca"), cert=f.path("cert"), key=f.path("key"))
        f.done()
        return tls


# The views an OMOP folder can be read as (connectors/omop.py builds them).
OMOP_VIEWS = ("treatments", "treatment_episodes")


def default_omop_view(dataset: str) -> str:
    """The view of an OMOP dataset without `omop_view`: the one its name names, else
    `treatments`."""
    return dataset if dataset in OMOP_VIEWS else OMOP_VIEWS[0]


# The text encodings a CSV file may be in: each accepted spelling, and the one name the
# config keeps (also a Python codec name).
CSV_ENCODINGS = {
    "utf-8": "utf-8", "utf8": "utf-8",
    "windows-1252": "windows-1252", "cp1252": "windows-1252",
    "latin-1": "latin-1", "latin1": "latin-1", "iso-8859-1": "latin-1",
    "utf-16": "utf-16", "utf16": "utf-16",
}
CSV_DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "|": "|"}
CSV_OPTIONS = ("encoding", "delimiter", "decimal", "header", "columns")


@dataclass(frozen=True)
class DatasetConfig:
    """Where one named dataset lives: a CSV/Parquet file, a SQL query on a database, or a
    folder of OMOP CDM tables read as one of OMOP_VIEWS (see connectors/omop.py).

    A CSV file's layout: its text encoding, delimiter (None: the one of , ; tab | its
    first line has most of), decimal separator, and whether its first line names the
    columns (else `columns` does, in order)."""

    name: str
    path: Path | None = None
    url: str | None = None
    query: str | None = None
    omop: Path | None = None
    bounds: DatasetBounds = field(default_factory=DatasetBounds)
    omop_view: str | None = None  # None: default_omop_view(name); only with `omop`
    encoding: str = "utf-8"  # a value of CSV_ENCODINGS
    delimiter: str | None = None
    decimal: str = "."
    header: bool = True
    columns: tuple[str, ...] | None = None  # only with header=False

    @property
    def view(self) -> str:
        """The OMOP view this dataset is (meaningful for OMOP datasets only)."""
        return self.omop_view or default_omop_view(self.name)

    @property
    def format(self) -> str:
        if self.url is not None:
            return "sql"
        if self.omop is not None:
            return "omop"
        assert self.path is not None
        return "parquet" if self.path.suffix.lower() in (".parquet", ".pq") else "csv"

    def csv_options(self) -> dict[str, Any]:
        """The CSV options that differ from their defaults, as party.toml spells them."""
        options: dict[str, Any] = {}
        if self.encoding != "utf-8":
            options["encoding"] = self.encoding
        if self.delimiter is not None:
            options["delimiter"] = self.delimiter
        if self.decimal != ".":
            options["decimal"] = self.decimal
        if not self.header:
            options["header"] = False
        if self.columns is not None:
            options["columns"] = list(self.columns)
        return options

    def definition(self) -> str:
        """What the dataset is, in one line (the party commits to it in its audit log)."""
        if self.query is not None:
            return self.query
        if self.omop is None:
            # Only options that differ from the defaults: a dataset that sets none keeps
            # the definition it had before the options existed.
            options = self.csv_options()
            return str(self.path) + "".join(f" {k}={json.dumps(v, ensure_ascii=False)}"
                                            for k, v in options.items())
        # The treatments view keeps its earlier definition text.
        return f"omop:{self.omop}" + ("" if self.view == "treatments" else f" view={self.view}")

    @classmethod
    def parse(cls, name: str, f: Fields) -> DatasetConfig:
        path = f.path("path", None)
        url = f.str("url", None)
        query = f.str("query", None)
        omop = f.path("omop", None)
        omop_view = f.str("omop_view", None)
        bounds = DatasetBounds.parse(f.table("bounds", None))
        encoding = f.str("encoding", "utf-8")
        delimiter = f.raw("delimiter", None)  # not f.str: a tab is blank to it
        decimal = f.str("decimal", ".")
        header = f.bool("header", True)
        columns = f.str_list("columns", None)
        f.done()
        if sum(x is not None for x in (path, url, omop)) != 1:
            raise f.error("path", "give one of path (a CSV/Parquet file), url plus query (a "
                                  "database), or omop (a folder of OMOP CDM tables)")
        if url is not None and query is None:
            raise f.error("query", "a database dataset needs the SQL query that selects its rows")
        if path is not None and query is not None:
            raise f.error("query", "query is only for database datasets (url)")
        if path is not None and path.suffix.lower() not in (".csv", ".parquet", ".pq"):
            raise f.error("path", f"expected a .csv or .parquet file, got {path.name!r}")
        if omop_view is not None and omop is None:
            raise f.error("omop_view", "omop_view is only for a folder of OMOP CDM tables "
                                       "(omop)")
        if omop_view is not None and omop_view not in OMOP_VIEWS:
            raise f.error("omop_view", f"expected one of {', '.join(OMOP_VIEWS)}, got "
                                       f"{omop_view!r}")
        csv = path is not None and path.suffix.lower() == ".csv"
        for key in CSV_OPTIONS:
            if f.has(key) and not csv:
                raise f.error(key, f"{key} is only for CSV files (path = \"....csv\"): "
                                   "Parquet files, databases and OMOP folders carry their own "
                                   "layout")
        canonical = CSV_ENCODINGS.get(encoding.strip().lower())
        if canonical is None:
            raise f.error("encoding", f"expected one of utf-8, windows-1252 (cp1252), latin-1 "
                                      f"(iso-8859-1) or utf-16, got {encoding!r}")
        if delimiter is not None:
            if not isinstance(delimiter, str) or delimiter not in CSV_DELIMITERS:
                raise f.error("delimiter", f"expected one of \",\", \";\", \"\\t\" (tab) or "
                                           f"\"|\", got {delimiter!r}")
            delimiter = CSV_DELIMITERS[delimiter]
        if decimal not in (".", ","):
            raise f.error("decimal", f"expected \".\" or \",\", got {decimal!r}")
        if decimal == "," and delimiter in (None, ","):
            raise f.error("decimal", "decimal = \",\" needs a delimiter other than a comma: "
                                     "set delimiter (e.g. \";\")")
        if not header and columns is None:
            raise f.error("columns", "header = false needs columns = [...], naming the file's "
                                     "columns in order")
        if header and columns is not None:
            raise f.error("columns", "columns is only for header = false: a file with a header "
                                     "line names its own columns")
        return cls(name=name, path=path, url=url, query=query, omop=omop, bounds=bounds,
                   omop_view=omop_view, encoding=canonical, delimiter=delimiter,
                   decimal=decimal, header=header, columns=columns)


@dataclass(frozen=True)
class Policy:
    """What this party agrees to compute, and for whom."""

    coordinators: tuple[str, ...]
    usecases: tuple[str, ...]
    pinned: dict[str, str] = field(default_factory=dict)  # use case name -> spec SHA-256
    min_cell_floor: int = 1
    min_contributors_floor: int = 1

    @classmethod
    def parse(cls, f: Fields) -> Policy:
        coordinators = f.str_list("coordinators")
        usecases = f.str_list("usecases")
        pinned: dict[str, str] = {}
        pins = f.table("pinned", None)
        if pins is not None:
            for name in pins.names():
                digest = pins.str(name).lower()
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise pins.error(name, "expected a SHA-256 in hex (64 characters)")
                if name not in usecases:
                    raise pins.error(name, "pinned use case is not in policy.usecases")
                pinned[name] = digest
            pins.done()
        if f.has("budget"):
            raise f.error("budget", "privacy budgets are set per dataset now: "
                                    "[datasets.<name>.bounds] epsilon_budget")
        policy = cls(
            coordinators=coordinators,
            usecases=usecases,
            pinned=pinned,
            min_cell_floor=f.int("min_cell_floor", 1, minimum=1),
            min_contributors_floor=f.int("min_contributors_floor", 1, minimum=1),
        )
        f.done()
        return policy


@dataclass(frozen=True)
class Limits:
    """What one job or message may ask of this party; larger ones get a clear refusal."""

    max_spec_bytes: int = 1024 * 1024
    max_cells: int = 1_000_000  # cells of one table
    max_parties: int = 16
    max_message_bytes: int = 256 * 1024 * 1024  # one peer message, reassembled
    max_concurrent_jobs: int = 8
    peer_timeout_s: float = 120.0  # the longest wait for one message from a peer

    @classmethod
    def parse(cls, f: Fields | None) -> Limits:
        if f is None:
            return cls()
        d = cls()
        limits = cls(
            max_spec_bytes=f.int("max_spec_bytes", d.max_spec_bytes, minimum=1024),
            max_cells=f.int("max_cells", d.max_cells, minimum=1),
            max_parties=f.int("max_parties", d.max_parties, minimum=2),
            max_message_bytes=f.int("max_message_bytes", d.max_message_bytes,
                                    minimum=1024 * 1024),
            max_concurrent_jobs=f.int("max_concurrent_jobs", d.max_concurrent_jobs, minimum=1),
            peer_timeout_s=f.float("peer_timeout_s", d.peer_timeout_s),
        )
        if limits.peer_timeout_s <= 0:
            raise f.error("peer_timeout_s", "must be positive")
        f.done()
        return limits


# Where a member raises each limit it refuses a job for, and the `mpc demo` option that
# writes it into the demo's generated configs (cli/demo.py names its options from here):
# a refusal names both, so whoever meets a limit knows what to change.
RAISED_BY: dict[str, str] = {
    "max_parties": "[limits] max_parties in party.toml",
    "max_cells": "[limits] max_cells in party.toml",
    "max_spec_bytes": "[limits] max_spec_bytes in party.toml",
    "max_concurrent_jobs": "[limits] max_concurrent_jobs in party.toml",
    "job_timeout_s": "job_timeout_s in party.toml",
    "max_jobs": "max_jobs in dealer.toml",
}
DEMO_OPTIONS: dict[str, str] = {"max_parties": "--parties-limit",
                                "job_timeout_s": "--job-timeout"}


def raised_by(limit: str) -> str:
    """What a message that refuses for `limit` ends with, e.g. `([limits] max_parties in
    party.toml; `mpc demo --parties-limit`)`."""
    option = DEMO_OPTIONS.get(limit)
    return f"({RAISED_BY[limit]}" + (f"; `mpc demo {option}`)" if option else ")")


@dataclass(frozen=True)
class PartyConfig:
    name: str
    listen: str  # host:port of the worker: coordinators and the peers of its jobs dial it
    peer_advertise: str  # host peers dial to reach it, with listen's port (NAT, proxies)
    dealer: str  # identity (certificate name) of the dealer this party trusts
    tls: TlsFiles
    signing_key: Path
    audit_log: Path
    openings: Path  # salts that open this party's commitments; its own, never shared
    datasets: dict[str, DatasetConfig]
    policy: Policy
    job_timeout_s: float = 900.0
    connect_timeout_s: float = 30.0
    results_dir: Path | None = None
    limits: Limits = field(default_factory=Limits)
    source: str = "<party>"

    @property
    def peer_host(self) -> str:
        """The host peer links arrive on: the worker's own, since its jobs listen on none."""
        return self.listen.rpartition(":")[0]


def load_party_config(path: Path) -> PartyConfig:
    data, _ = load_toml(path)
    f = Fields(data, str(path), base_dir=path.parent)
    name = f.str("name")
    listen = host_port(f, "listen")
    tls = TlsFiles.parse(f.table("tls"))
    signing = f.table("signing")
    assert signing is not None
    signing_key = signing.path("key")
    signing.done()
    audit = f.table("audit")
    assert audit is not None
    audit_log = audit.path("log")
    openings = audit.path("openings", path.parent / f"{name}.openings.jsonl")
    audit.done()
    datasets_table = f.table("datasets")
    assert datasets_table is not None
    datasets = {}
    for ds_name in datasets_table.names():
        sub = datasets_table.table(ds_name)
        assert sub is not None
        datasets[ds_name] = DatasetConfig.parse(ds_name, sub)
    if not datasets:
        raise f.error("datasets", "a party needs at least one dataset")
    policy = Policy.parse(f.table("policy"))
    if f.has("peer_host"):
        raise f.error("peer_host", "removed: job processes no longer listen on a host or port "
                                   "of their own; their peers reach them through `listen` "
                                   "(set `peer_advertise` if peers dial another host)")
    config = PartyConfig(
        name=name,
        listen=listen,
        peer_advertise=f.str("peer_advertise", listen.rpartition(":")[0]),
        dealer=f.str("dealer", "dealer"),
        tls=tls,
        signing_key=signing_key,
        audit_log=audit_log,
        openings=openings,
        datasets=datasets,
        policy=policy,
        job_timeout_s=f.float("job_timeout_s", 900.0),
        connect_timeout_s=f.float("connect_timeout_s", 30.0),
        results_dir=f.path("results_dir", None),
        limits=Limits.parse(f.table("limits", None)),
        source=str(path),
    )
    f.done()
    for name in ("job_timeout_s", "connect_timeout_s"):
        if getattr(config, name) <= 0:
            raise ConfigError(str(path), "must be positive", field=name)
    return config


@dataclass(frozen=True)
class DealerConfig:
    name: str
    listen: str
    tls: TlsFiles
    signing_key: Path
    audit_log: Path
    parties: tuple[str, ...] | None  # identities allowed to request; None: any party cert
    job_ttl_s: float = 3600.0
    max_jobs: int = 256  # jobs held at once (each holds its parties' seeds)
    source: str = "<dealer>"


def load_dealer_config(path: Path) -> DealerConfig:
    data, _ = load_toml(path)
    f = Fields(data, str(path), base_dir=path.parent)
    signing = f.table("signing")
    audit = f.table("audit")
    assert signing is not None and audit is not None
    config = DealerConfig(
        name=f.str("name"),
        listen=host_port(f, "listen"),
        tls=TlsFiles.parse(f.table("tls")),
        signing_key=signing.path("key"),
        audit_log=audit.path("log"),
        parties=f.str_list("parties", None),
        job_ttl_s=f.float("job_ttl_s", 3600.0),
        max_jobs=f.int("max_jobs", 256, minimum=1),
        source=str(path),
    )
    signing.done()
    audit.done()
    f.done()
    return config
