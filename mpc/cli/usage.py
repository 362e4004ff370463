"""How every command's --help reads: what a value is (SPEC, FILE, N, SECONDS), never its
Python type, and one example to copy at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.core import TyperArgument, TyperCommand

if TYPE_CHECKING:
    from typer._click import Context, HelpFormatter, Parameter


def example(command_line: str) -> str:
    """A help epilog of one example, kept on one line however narrow the terminal (a
    wrapped command cannot be copied as it is)."""
    return f"\b\nExample: {command_line}"


def _shown(param: Parameter) -> str:
    """An argument as help and usage name it: its metavar, else its name in capitals."""
    name = param.metavar or (param.name or "").upper()
    return name if param.metavar or param.nargs == 1 else f"{name}..."


class Command(TyperCommand):
    """A command whose help shows a value by what it is: typer writes `<path>`,
    `<list[Path]>` or `<int range>` after an argument even when it has a metavar (and
    after an option without one: every option here names its `metavar`)."""

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((_shown(param), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(_shown(param) if param.required else f"[{_shown(param)}]")
        return pieces
