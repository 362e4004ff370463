"""Checks every RPC applies to its inputs before acting on them."""

from __future__ import annotations

import re

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:_]{1,253}$")
MAX_REASON = 500


def job_id_problem(job_id: str) -> str | None:
    if not JOB_ID.match(job_id):
        return "malformed job id (8 to 64 letters, digits, '-' or '_')"
    return None


def address_problem(address: str) -> str | None:
    """None if `address` is a plausible host:port."""
    host, sep, port = address.rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        return f"malformed address {address[:80]!r} (expected host:port)"
    return None
