"""The `mpc` command: one module per subcommand, wired here."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import typer

from mpc.cli import audit, ca, certs, dealer, demo, keys, run, synth, worker
from mpc.cli.usage import Command, example

DISTRIBUTION = "mpc-health"  # [project] name in pyproject.toml

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help and errors as plain text: "[limits]" is text, not markup
    help="Secure multi-party computation job runner for health data exchange.",
    epilog=example(demo.EXAMPLE),
)
for name, module in (("demo", demo), ("worker", worker), ("dealer", dealer), ("run", run),
                     ("certs", certs), ("synth", synth)):
    app.command(name, cls=Command, epilog=example(module.EXAMPLE))(getattr(module, name))
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(ca.app, name="ca")


def installed_version() -> str:
    """The version of the installed package (pyproject.toml's, once installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mpc {installed_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(False, "--version", is_eager=True,
                                      callback=_print_version,
                                      help="Print the version and exit."),
) -> None:
    pass


def main() -> None:
    app()
