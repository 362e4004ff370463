"""`mpc synth`: reproducible synthetic demo data."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write <party>/treatments.csv into."),
    parties: str = typer.Option("hospital_a,hospital_b,hospital_c", help="Comma-separated."),
    patients: int = typer.Option(2000, "--patients", help="Patients at the largest hospital."),
    seed: int = typer.Option(7, "--seed", help="Same seed, same files."),
) -> None:
    """Generate synthetic oncology treatment rows for each hospital."""
    from mpc.synth import generate_treatments

    written = generate_treatments(out, [p.strip() for p in parties.split(",") if p.strip()],
                                  patients_per_party=patients, seed=seed)
    for party, path in written.items():
        typer.echo(f"{party}: {path}")
