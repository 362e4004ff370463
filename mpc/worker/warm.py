"""Job processes that start warm: forked from a server that imported the engine already.

A job process used to be spawned fresh and spend 2-8 s importing torch and CrypTen before
it could read its local table. A forkserver (multiprocessing's) is started once per
worker, imports the job's modules, and forks one process per job from that state: each
job still runs in a process of its own and shares no state with another job, only the
modules' code. The forkserver is started by exec, like spawn, so nothing is ever forked
from the worker, whose gRPC threads must not be forked.

What a fork would copy that must differ per job is drawn afresh when the job starts
(job_process.run_job): the global generators of torch and numpy, should anything use
them; Python's `random` is reseeded after a fork by the interpreter. The job's own
randomness never came from these: it is drawn from the OS and the dealer's streams.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

# What the forkserver imports once: the job process's entry point and the engine it loads
# (torch, CrypTen and the adapter), and the job kinds.
PRELOAD = ("mpc.worker.job_process", "mpc.engine.session", "mpc.engine.communicator",
           "mpc.kinds")


def job_context() -> ForkServerContext:
    """The multiprocessing context that starts job processes warm."""
    context = mp.get_context("forkserver")
    assert isinstance(context, ForkServerContext)
    context.set_forkserver_preload(list(PRELOAD))
    return context


def warm_up() -> None:
    """Start the forkserver now (it imports PRELOAD), so the first job starts warm too."""
    forkserver.ensure_running()


def stop() -> None:
    """End the forkserver with the worker. Left alone it would notice the worker is gone
    only once it has finished importing PRELOAD, seconds later, so it is told to stop
    (SIGTERM ends it even mid-import), then reaped. multiprocessing has no public way to
    stop it; `_stop` is what its own tests use."""
    server = forkserver._forkserver  # noqa: SLF001
    pid = getattr(server, "_forkserver_pid", None)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    server._stop()  # type: ignore[attr-defined]  # noqa: SLF001
