"""Helpers for contributors' tests: run CrypTen programs over the project's transport
(run_local_parties: processes, mutual TLS, a gRPC dealer) or as threads of this process
(run_in_threads: the same engine over queues, for fast protocol tests)."""

from mpc.testing.inprocess import run_in_threads, run_threads
from mpc.testing.local_parties import LocalPartiesError, run_local_parties

__all__ = ["LocalPartiesError", "run_in_threads", "run_local_parties", "run_threads"]
