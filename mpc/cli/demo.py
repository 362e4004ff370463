"""`mpc demo`: every role on loopback, real processes, on generated data or the user's files."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for everything the demo "
                             "makes: certificates, configs, logs, data and results."),
    data: Path | None = typer.Option(None, "--data", help="Your files: DATA/<party>/<dataset>"
                                     ".csv or .parquet for every party the spec names."),
    usecase: Path | None = typer.Option(None, "--usecase", help="The use case spec (TOML); "
                                        "default: usecases/oncology-product-use.toml."),
    patients: int = typer.Option(6000, help="Generated oncology patients in all."),
    seed: int = typer.Option(7, help="Seed of the generated data."),
) -> None:
    """Run a use case end to end: certificates, dealer, one worker per party, coordinator."""
    from mpc.audit.verify import verify
    from mpc.cli.run import run_job
    from mpc.config.federation import load_federation
    from mpc.config.spec import load_spec
    from mpc.demo import LocalFederation, PartySetup
    from mpc.synth import generate_federation

    console = Console()
    try:
        spec = load_spec(usecase or DEFAULT_USECASE)
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
    # A privacy budget for differentially private use cases: ten jobs at epsilon 1.
    setups = {p: PartySetup(
        datasets={spec.dataset_of(p): find_dataset(data, p, spec.dataset_of(p))},
        usecases=[spec.name], budget={spec.dataset_of(p): 10.0}) for p in spec.parties}
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
