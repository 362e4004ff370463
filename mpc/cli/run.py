"""`mpc run`: the coordinator submits a use case to the federation and receives the release."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from mpc.audit.log import AuditLog
from mpc.config.federation import Federation
from mpc.config.spec import UseCaseSpec
from mpc.errors import JobFailed, JobInterrupted, MpcError

if TYPE_CHECKING:
    from mpc.transport.tls import TlsIdentity

INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports an interrupted command
EXAMPLE = ("mpc run usecases/oncology-product-use.toml --federation federation.toml "
           "--out results/")
DEFAULT_WAIT_S = 60.0  # a worker just started takes 5-40 s to listen on a busy machine


def run(
    spec: Path = typer.Argument(..., metavar="SPEC", help="The use case spec (TOML)."),
    federation: Path = typer.Option(..., "--federation", metavar="FILE",
                                    help="Who is where (TOML)."),
    out: Path = typer.Option(Path("results"), "--out", metavar="DIR",
                             help="Where result files go."),
    timeout: float = typer.Option(900.0, "--timeout", metavar="SECONDS",
                                  help="Seconds before the job is aborted."),
    wait: float = typer.Option(DEFAULT_WAIT_S, "--wait", metavar="SECONDS",
                               help="Seconds to wait for the "
                               "parties' workers and the dealer to be reachable before "
                               "submitting (services started a moment ago take a while to "
                               "listen); 0 submits at once."),
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
    if wait < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="--wait")
    if not run_job(fed, use_case, out, console, timeout, wait_s=wait):
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
            timeout: float = 900.0, wait_s: float = 0.0) -> bool:
    """Run one job with progress and print the outcome; True if it released its result.
    wait_s: how long to wait for the workers and the dealer to be reachable first."""
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
        if wait_s > 0:
            _wait_for_services(fed, identity, use_case, console, wait_s)
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


def _wait_for_services(fed: Federation, identity: TlsIdentity, use_case: UseCaseSpec,
                       console: Console, wait_s: float) -> None:
    """Wait for the job's workers and the dealer; say so if any is not reachable yet. Who
    is still unreachable afterwards fails the job with the usual message."""
    from mpc.runner.reachable import wait_reachable

    def waiting(names: list[str]) -> None:
        console.print(f"Waiting up to {wait_s:.0f} s for {', '.join(names)} to be reachable "
                      "(mpc run --wait) ...", markup=False)

    started = time.monotonic()
    left = wait_reachable(fed, identity, use_case.parties, wait_s, waiting)
    if left:
        console.print(f"Still unreachable after {wait_s:.0f} s: {', '.join(left)}; "
                      "submitting anyway.", markup=False)
    elif time.monotonic() - started > 1:
        console.print(f"All reachable after {time.monotonic() - started:.0f} s.", markup=False)
