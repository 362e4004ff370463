"""The `mpc` command: one module per subcommand, wired here."""

from __future__ import annotations

import typer

from mpc.cli import audit, certs, dealer, demo, run, synth, worker

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help and errors as plain text: "[limits]" is text, not markup
    help="Secure multi-party computation job runner for health data exchange.",
)
app.command("demo")(demo.demo)
app.command("worker")(worker.worker)
app.command("dealer")(dealer.dealer)
app.command("run")(run.run)
app.command("certs")(certs.certs)
app.command("synth")(synth.synth)
app.add_typer(audit.app, name="audit")


def main() -> None:
    app()
