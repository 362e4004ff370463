"""`mpc synth`: a reproducible synthetic federation of hospitals, insurers and pharmacies."""

from __future__ import annotations

from pathlib import Path

import typer

EXAMPLE = "mpc synth --out data --patients 6000 --seed 7"


def synth(
    out: Path = typer.Option(..., "--out", metavar="DIR",
                             help="Folder to write one folder per party into."),
    patients: int = typer.Option(6000, "--patients", metavar="N",
                                 help="Oncology patients in total."),
    seed: int = typer.Option(7, "--seed", metavar="N", help="Same seed, same files."),
    fmt: str = typer.Option("csv", "--format", metavar="FORMAT", help="csv or parquet."),
) -> None:
    """Generate OMOP tables for each hospital, claims for insurers, dispensing for pharmacies."""
    from mpc.synth import generate_federation
    from mpc.synth.omop import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    if patients < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--patients")
    written = generate_federation(out, patients=patients, seed=seed, fmt=fmt)
    for party, folder in written.hospitals.items():
        tables = ", ".join(sorted(p.name for p in folder.glob(f"*.{fmt}")))
        typer.echo(f"{party}: {folder} ({tables})")
    for party, path in {**written.insurers, **written.pharmacies}.items():
        typer.echo(f"{party}: {path}")
