"""`mpc run`: the coordinator submits a use case to the federation and receives the release."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mpc.audit.log import AuditLog
from mpc.config.federation import Federation
from mpc.config.spec import UseCaseSpec
from mpc.errors import JobFailed, JobInterrupted, MpcError

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports an interrupted command


def run(
    spec: Path = typer.Argument(..., help="The use case spec (TOML)."),
    federation: Path = typer.Option(..., "--federation", help="Who is where (TOML)."),
    out: Path = typer.Option(Path("results"), "--out", help="Where result files go."),
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds before the job is aborted."),
) -> None:
    """Run a use case across the parties; write OUT/<name>/result.csv and result.json."""
    from mpc.cli.display import say
    from mpc.config.federation import load_federation
    from mpc.config.spec import load_spec

    console = Console()
    try:
        fed = load_federation(federation)
        use_case = load_spec(spec)
    except MpcError as exc:
        say(console, "error:", str(exc))
        raise typer.Exit(2) from None
    if not run_job(fed, use_case, out, console, timeout):
        raise typer.Exit(1)


def coordinator_audit(fed: Federation, console: Console) -> AuditLog | None:
    """The coordinator's audit log, if its copy of the federation names a signing key."""
    from mpc.cli.display import say

    if fed.own.signing_key is None:
        say(console, "warning:", f"{fed.source}: [coordinator] has no signing_key, so this "
                                 "coordinator keeps no audit log", style="yellow")
        return None
    path = fed.own.audit_log or Path(fed.source).parent / "logs" / f"{fed.coordinator.name}.jsonl"
    return AuditLog.open(path, fed.own.signing_key, fed.coordinator.name, "coordinator")


def run_job(fed: Federation, use_case: UseCaseSpec, out: Path, console: Console,
            timeout: float = 900.0) -> bool:
    """Run one job with progress and print the outcome; True if it released its result."""
    from mpc.cli.display import print_released, say
    from mpc.report.html import write_report
    from mpc.report.table import write_result
    from mpc.runner.coordinator import Coordinator
    from mpc.runner.progress import Progress
    from mpc.transport.tls import TlsIdentity

    if fed.coordinator_tls is None:
        say(console, "error:", f"{fed.source}: [coordinator] needs cert and key: the "
                               "coordinator's own TLS identity")
        return False
    try:
        identity = TlsIdentity.load(fed.coordinator_tls, expected_name=fed.coordinator.name,
                                    source=fed.source)
        audit = coordinator_audit(fed, console)
        with Progress(use_case.parties, title=f"job {use_case.name}") as progress:
            outcome = Coordinator(fed, identity, progress, timeout_s=timeout,
                                  audit=audit).run(use_case)
    except JobInterrupted:
        say(console, "Job interrupted:", "interrupted; aborted everywhere, nothing was "
                                         "released", style="bold red")
        raise typer.Exit(INTERRUPTED_EXIT) from None
    except JobFailed as exc:
        where = f" at {exc.party}" if exc.party else ""
        say(console, f"Job failed{where}:", exc.cause, style="bold red")
        console.print("The job was aborted at every party; nothing was released.")
        return False
    except MpcError as exc:
        say(console, "error:", str(exc))
        return False
    if outcome.table is None:
        console.print(f"Released to {', '.join(use_case.recipients)} "
                      f"(the coordinator is not a recipient).", markup=False)
        return True
    folder = write_result(outcome.table, out)
    write_report(outcome.table, folder, job_seconds=outcome.seconds)
    print_released(outcome.table, console)
    console.print(f"Job {outcome.job_id[:12]} finished in {outcome.seconds:.1f} s; "
                  f"results in {folder}/ (result.csv, result.json, report.html)", markup=False)
    return True
