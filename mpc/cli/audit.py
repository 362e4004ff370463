"""`mpc audit verify`: an auditor checks the members' signed logs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mpc.cli.usage import Command, example

EXAMPLE = "mpc audit verify --federation out/demo/federation.toml out/demo/logs/*.jsonl"

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,  # plain text, as in app.py
                  help="Check the signed protocol logs of a federation.",
                  epilog=example(EXAMPLE))


@app.command("verify", cls=Command, epilog=example(EXAMPLE))
def verify(
    logs: list[Path] = typer.Argument(..., metavar="LOG...",
                                      help="The members' audit logs (JSON Lines)."),
    federation: Path = typer.Option(..., "--federation", metavar="FILE",
                                    help="The federation file: the members' audit keys and "
                                         "certificate fingerprints."),
    as_json: bool = typer.Option(False, "--json", help="A report for programs."),
) -> None:
    """Verify chains, signatures and every job's process.

    Exit status: 0 every check holds; 3 every check holds, but aborted jobs left logs
    incomplete (incidents: a member down, killed or unreachable); 1 a check failed (logs
    altered or the process not followed); 2 the federation file cannot be read.
    """
    from mpc.audit.verify import verify as run_verify
    from mpc.config.federation import load_federation
    from mpc.errors import MpcError

    try:
        fed = load_federation(federation)
    except MpcError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    report = run_verify(fed, list(logs))
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else report.as_text())
    raise typer.Exit(report.verdict.exit_code)
