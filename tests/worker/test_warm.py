"""Warm job processes: forked from a forkserver that imported the engine, each job still
its own process, and none starts with another's global generator state."""

from __future__ import annotations

import multiprocessing as mp
import sys
from typing import Any

from mpc.worker.warm import PRELOAD, job_context


def draws(out: Any) -> None:
    import numpy as np
    import torch

    from mpc.worker.job_process import _fresh_global_generators

    preloaded = all(name in sys.modules for name in PRELOAD)
    _fresh_global_generators()
    out.send((preloaded, mp.current_process().pid, int(torch.randint(0, 2**62, ())),
              int(np.random.randint(0, 2**62))))
    out.close()


def test_jobs_are_separate_processes_with_fresh_generators() -> None:
    context = job_context()
    seen = []
    for _ in range(2):
        parent, child = context.Pipe()
        process = context.Process(target=draws, args=(child,))
        process.start()
        child.close()
        seen.append(parent.recv())
        process.join(timeout=60)
        assert process.exitcode == 0
    (warm_a, pid_a, torch_a, np_a), (warm_b, pid_b, torch_b, np_b) = seen
    assert warm_a and warm_b  # the engine was imported before the job began
    assert pid_a != pid_b
    assert torch_a != torch_b and np_a != np_b
