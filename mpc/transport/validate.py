"""Checks every RPC applies to its inputs before acting on them.

Every pattern is matched against the whole string (`fullmatch`): `^...$` with `match`
lets a trailing newline through.
"""

from __future__ import annotations

import re

JOB_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
# A member of the federation (party, dealer, coordinator), as specs, configs, the
# federation file, certificates and RPCs name it: what logs and file names may hold.
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9.\-\[\]:_]{1,253}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{86}==")  # an Ed25519 signature in base64
USECASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # a use case: a file name, never a path
MAX_REASON = 500
MAX_SEQ = 2**63 - 1


def job_id_problem(job_id: str) -> str | None:
    if not JOB_ID.fullmatch(job_id):
        return "malformed job id (8 to 64 letters, digits, '-' or '_')"
    return None


def usecase_problem(name: str) -> str | None:
    """None if `name` is a well-formed use case name (it names the coordinator's result
    folder); else why not."""
    if not USECASE.fullmatch(name):
        shown = repr(name[:40]) + ("…" if len(name) > 40 else "")
        return (f"malformed use case name {shown}: 1 to 128 letters, digits, '_', '.' or "
                "'-', starting with a letter or digit")
    return None


def name_problem(name: str) -> str | None:
    """None if `name` is a well-formed member name; else why not (without echoing more
    than a safe prefix of it)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        shown = repr(name[:40]) + ("…" if len(name) > 40 else "") if isinstance(name, str) \
            else type(name).__name__
        return (f"malformed name {shown}: a member name is 1 to 63 lower-case letters, "
                "digits, '_', '.' or '-', starting with a letter or digit")
    return None


def address_problem(address: str) -> str | None:
    """None if `address` is a plausible host:port."""
    host, sep, port = address.rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not (port.isascii() and port.isdigit()) or \
            not 0 < int(port) < 65536:
        return f"malformed address {address[:80]!r} (expected host:port)"
    return None


def sha256_problem(digest: str, what: str = "SHA-256") -> str | None:
    if not _SHA256.fullmatch(digest):
        return f"malformed {what} (64 lower-case hex digits)"
    return None


def head_problem(member: str, seq: int, digest: str, sig: str) -> str | None:
    """None if these are the parts of a well-formed audit log head."""
    return (name_problem(member) or
            (None if 0 <= seq <= MAX_SEQ else f"log head sequence number {seq} out of range")
            or sha256_problem(digest, "log head hash")
            or (None if _SIGNATURE.fullmatch(sig) else "malformed log head signature"))
