"""`mpc demo`: every role on loopback, real processes, on generated data or the user's files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mpc.errors import MpcError

DEFAULT_USECASE = Path(__file__).resolve().parents[2] / "usecases" / "oncology-product-use.toml"
GENERATED = ("certs", "logs", "services", "parties", "dealer", "results", "federation.toml")


def find_dataset(data: Path, party: str, dataset: str) -> dict[str, str]:
    """The dataset entry of a party's config: DATA/<party>/<dataset>.csv or .parquet, or
    for `treatments`, a folder DATA/<party>/omop of OMOP CDM tables."""
    for suffix in (".csv", ".parquet"):
        path = data / party / f"{dataset}{suffix}"
        if path.exists():
            return {"path": str(path.resolve())}
    if dataset == "treatments" and (data / party / "omop").is_dir():
        return {"omop": str((data / party / "omop").resolve())}
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


def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for everything the demo "
                             "makes: certificates, configs, logs, data and results."),
    data: Path | None = typer.Option(None, "--data", help="Your files: DATA/<party>/<dataset>"
                                     ".csv or .parquet for every party the spec names."),
    usecase: Path | None = typer.Option(None, "--usecase", help="The use case spec (TOML); "
                                        "default: usecases/oncology-product-use.toml."),
    bounds: Path | None = typer.Option(None, "--bounds", help="What every party allows a spec "
                                       "to ask of a dataset: a TOML file with a [<dataset>] "
                                       "table of the fields of [datasets.<name>.bounds]; "
                                       "default: the bounds of the shipped party configs."),
    patients: int = typer.Option(6000, help="Generated oncology patients in all."),
    seed: int = typer.Option(7, help="Seed of the generated data."),
) -> None:
    """Run a use case end to end: certificates, dealer, one worker per party, coordinator."""
    from mpc.audit.verify import verify
    from mpc.cli.run import run_job
    from mpc.config.federation import load_federation
    from mpc.config.spec import load_spec
    from mpc.demo import LocalFederation, PartySetup, demo_bounds
    from mpc.synth import generate_federation

    console = Console()
    try:
        spec = load_spec(usecase or DEFAULT_USECASE)
        chosen = load_bounds(bounds) if bounds is not None else {}
    except MpcError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
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
                      f"insurers, dispensing at pharmacies) in {data}/")
        generate_federation(data, patients=patients, seed=seed)
    # Each party bounds what a spec may ask of its dataset as the shipped configs do.
    setups = {p: PartySetup(
        datasets={spec.dataset_of(p): find_dataset(data, p, spec.dataset_of(p))},
        usecases=[spec.name],
        bounds={spec.dataset_of(p): chosen.get(spec.dataset_of(p),
                                               demo_bounds(spec.dataset_of(p)))})
        for p in spec.parties}
    federation = LocalFederation(out, setups)
    console.print(f"Starting the dealer and {len(spec.parties)} workers on loopback "
                  f"(mutual TLS; service logs in {federation.service_logs}/)")
    try:
        with federation:
            ok = run_job(load_federation(federation.federation_file), spec, out, console)
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] could not start the federation: {exc}",
                      highlight=False)
        raise typer.Exit(2) from None
    logs = sorted(federation.logs.glob("*.jsonl"))
    report = verify(load_federation(federation.federation_file), logs)
    verdict = "[green]PASS[/green]" if report.ok else "[bold red]FAIL[/bold red]"
    console.print(f"Audit of {len(logs)} signed logs: {verdict} "
                  f"({len(report.findings)} findings). An auditor runs:\n"
                  f"  mpc audit verify --federation {federation.federation_file} "
                  f"{federation.logs}/*.jsonl")
    if not report.ok:
        console.print(report.as_text(), highlight=False, markup=False)
    if not ok or not report.ok:
        raise typer.Exit(1)
