"""`mpc demo`: every role on loopback, real processes, on generated data or the user's files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from mpc.config.party import DEMO_OPTIONS, Limits, raised_by
from mpc.demo import FederationStartError, LocalFederation, PartySetup, demo_bounds
from mpc.demo.federation import JOB_TIMEOUT_S, START_TIMEOUT_S
from mpc.errors import MpcError

if TYPE_CHECKING:
    from mpc.config.spec import UseCaseSpec

DEFAULT_USECASE = Path(__file__).resolve().parents[2] / "usecases" / "oncology-product-use.toml"
GENERATED = ("certs", "logs", "services", "parties", "dealer", "results", "federation.toml")
# The coordinator outwaits the parties' job time limit, so the party's message, which
# names the option that raises it, is the one shown.
COORDINATOR_MARGIN_S = 10.0
EXAMPLE = "mpc demo --out out/demo"


def find_dataset(data: Path, party: str, dataset: str) -> dict[str, str]:
    """The dataset entry of a party's config: DATA/<party>/<dataset>.csv or .parquet, or
    for `treatments` and `treatment_episodes`, that view of a folder DATA/<party>/omop of
    OMOP CDM tables."""
    from mpc.config.party import OMOP_VIEWS

    for suffix in (".csv", ".parquet"):
        path = data / party / f"{dataset}{suffix}"
        if path.exists():
            return {"path": str(path.resolve())}
    if dataset in OMOP_VIEWS and (data / party / "omop").is_dir():
        return {"omop": str((data / party / "omop").resolve()), "omop_view": dataset}
    raise typer.BadParameter(
        f"no {data / party / dataset}.csv or .parquet for party {party}", param_hint="--data")


def load_bounds(path: Path) -> dict[str, dict[str, Any]]:
    """Dataset bounds for every party of the demo, checked as a party config checks them."""
    from mpc.config.bounds import DatasetBounds
    from mpc.config.fields import Fields, load_toml

    data, _ = load_toml(path)
    f = Fields(data, str(path))
    for dataset in f.names():
        DatasetBounds.parse(f.table(dataset))
    return data


def demo_federation(out: Path, spec: UseCaseSpec, data: Path,
                    bounds: dict[str, dict[str, Any]], *, parties_limit: int,
                    start_timeout: float, job_timeout: float) -> LocalFederation:
    """The demo's federation, its certificates and configs written, nothing started: one
    party per party of the spec, bounding what a spec may ask of its dataset as the shipped
    configs do (or as `bounds` says), with the demo's limits."""
    setups = {p: PartySetup(
        datasets={spec.dataset_of(p): find_dataset(data, p, spec.dataset_of(p))},
        usecases=[spec.name],
        job_timeout_s=job_timeout,
        bounds={spec.dataset_of(p): bounds.get(spec.dataset_of(p),
                                               demo_bounds(spec.dataset_of(p)))},
        extra={"limits": {"max_parties": parties_limit}})
        for p in spec.parties}
    return LocalFederation(out, setups, start_timeout_s=start_timeout)


def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", metavar="DIR",
                             help="Folder for everything the demo makes: certificates, "
                                  "configs, logs, data and results."),
    data: Path | None = typer.Option(None, "--data", metavar="DIR",
                                     help="Your files: DATA/<party>/<dataset>.csv or .parquet "
                                          "for every party the spec names."),
    usecase: Path | None = typer.Option(None, "--usecase", metavar="FILE",
                                        help="The use case spec (TOML); default: "
                                             "usecases/oncology-product-use.toml."),
    bounds: Path | None = typer.Option(None, "--bounds", metavar="FILE",
                                       help="What every party allows a spec to ask of a "
                                            "dataset: a TOML file with a [<dataset>] table of "
                                            "the fields of [datasets.<name>.bounds]; default: "
                                            "the bounds of the shipped party configs."),
    patients: int = typer.Option(6000, metavar="N", help="Generated oncology patients in all."),
    seed: int = typer.Option(7, metavar="N", help="Seed of the generated data."),
    parties_limit: int = typer.Option(Limits.max_parties, DEMO_OPTIONS["max_parties"], min=2,
                                      metavar="N",
                                      help="The most parties every party takes a job of "
                                           "([limits] max_parties of the generated configs)."),
    start_timeout: float = typer.Option(START_TIMEOUT_S, "--start-timeout",
                                        metavar="SECONDS",
                                        help="Seconds each service (dealer, workers) may "
                                             "take to start listening."),
    job_timeout: float = typer.Option(JOB_TIMEOUT_S, DEMO_OPTIONS["job_timeout_s"],
                                      metavar="SECONDS",
                                      help="Seconds a job may take at every party "
                                           "(job_timeout_s of the generated configs)."),
) -> None:
    """Run a use case end to end: certificates, dealer, one worker per party, coordinator."""
    from mpc.audit.verify import verify
    from mpc.cli.display import say
    from mpc.cli.run import run_job
    from mpc.config.federation import load_federation
    from mpc.config.spec import load_spec
    from mpc.synth import generate_federation

    for value, option in ((start_timeout, "--start-timeout"),
                          (job_timeout, DEMO_OPTIONS["job_timeout_s"])):
        if value <= 0:
            raise typer.BadParameter("must be positive", param_hint=option)
    console = Console()
    try:
        spec = load_spec(usecase or DEFAULT_USECASE)
        chosen = load_bounds(bounds) if bounds is not None else {}
    except MpcError as exc:
        say(console, "error:", str(exc))
        raise typer.Exit(2) from None
    if len(spec.parties) > parties_limit:  # every party would refuse it: start none
        say(console, "error:", f"the use case has {len(spec.parties)} parties; the demo's "
                               f"parties take jobs of at most {parties_limit} "
                               f"{raised_by('max_parties')}")
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    for name in GENERATED:  # a fresh federation each run: new keys, new logs
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if data is None:
        data = out / "data"
        console.print(f"Generating synthetic data (OMOP tables at hospitals, claims at "
                      f"insurers, dispensing at pharmacies) in {data}/", markup=False)
        generate_federation(data, patients=patients, seed=seed)
    federation = demo_federation(out, spec, data, chosen, parties_limit=parties_limit,
                                 start_timeout=start_timeout, job_timeout=job_timeout)
    console.print(f"Starting the dealer and {len(spec.parties)} workers on loopback "
                  f"(mutual TLS; service logs in {federation.service_logs}/)", markup=False)
    try:
        with federation:
            ok = run_job(load_federation(federation.federation_file), spec, out, console,
                         timeout=job_timeout + COORDINATOR_MARGIN_S)
    except FederationStartError as exc:
        hint = " (wait longer with --start-timeout)" if exc.timed_out else ""
        say(console, "error:", f"could not start the federation: {exc}{hint}")
        raise typer.Exit(2) from None
    logs = sorted(federation.logs.glob("*.jsonl"))
    report = verify(load_federation(federation.federation_file), logs)
    verdict = "[green]PASS[/green]" if report.ok else "[bold red]FAIL[/bold red]"
    console.print(f"Audit of {len(logs)} signed logs: {verdict} "
                  f"({len(report.findings)} findings). An auditor runs:\n"
                  f"  mpc audit verify --federation {escape(str(federation.federation_file))} "
                  f"{escape(str(federation.logs))}/*.jsonl")
    if not report.ok:
        console.print(report.as_text(), highlight=False, markup=False)
    if not ok or not report.ok:
        raise typer.Exit(1)
