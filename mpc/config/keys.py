"""Reading private keys: only from files their owner alone can read."""

from __future__ import annotations

import stat
from pathlib import Path

from mpc.errors import ConfigError


def read_private_key(path: Path, source: str, field: str) -> bytes:
    """The key file's bytes; refuses a file that group or others may read or write."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(source, f"cannot read {path} ({exc.strerror})", field=field) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(source, f"private key {path} is accessible to others (mode "
                                  f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}", field=field)
    return data
