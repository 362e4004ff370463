"""Helpers for contributors' tests: run CrypTen programs over the project's transport."""

from mpc.testing.local_parties import LocalPartiesError, run_local_parties

__all__ = ["LocalPartiesError", "run_local_parties"]
