"""Typed, checked access to a parsed TOML table, with errors that name file and field."""

from __future__ import annotations

import builtins
import tomllib
from pathlib import Path
from typing import Any, overload

from mpc.errors import ConfigError

_MISSING: Any = object()


def load_toml(path: Path) -> tuple[dict[str, Any], bytes]:
    """Read a TOML file; return its table and its exact bytes (for hashing)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read file ({exc.strerror})") from None
    return parse_toml(raw, str(path)), raw


def parse_toml(raw: bytes, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(source, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"invalid TOML: {exc}") from None


class Fields:
    """A TOML table read field by field; `done()` refuses fields nobody asked for."""

    def __init__(self, data: dict[str, Any], source: str, prefix: str = "",
                 base_dir: Path | None = None) -> None:
        self._data = data
        self._source = source
        self._prefix = prefix
        self._seen: set[str] = set()
        self.base_dir = base_dir

    def _name(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self._source, message, field=self._name(key))

    def has(self, key: str) -> bool:
        return key in self._data

    def _get(self, key: str, default: Any) -> Any:
        self._seen.add(key)
        if key in self._data:
            return self._data[key]
        if default is _MISSING:
            raise self.error(key, "required field is missing")
        return default

    def str(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        if isinstance(value, str) and not value.strip():
            raise self.error(key, "must not be empty")
        return value

    def int(self, key: builtins.str, default: Any = _MISSING, minimum: int | None = None) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def float(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {type(value).__name__}")
        return float(value)

    def bool(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def str_list(self, key: builtins.str, default: Any = _MISSING, *,
                 as_text: builtins.bool = False, non_empty: builtins.bool = True,
                 unique: builtins.bool = True) -> Any:
        """A list of strings; `as_text` also takes numbers and turns them into strings."""
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {type(value).__name__}")
        out = []
        for item in value:
            if as_text and isinstance(item, int | float) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str) or not item:
                raise self.error(key, f"expected non-empty strings, got {item!r}")
            out.append(item)
        if non_empty and not out:
            raise self.error(key, "must not be empty")
        if unique and len(set(out)) != len(out):
            dup = sorted({x for x in out if out.count(x) > 1})
            raise self.error(key, f"duplicate entries: {', '.join(dup)}")
        return tuple(out)

    def path(self, key: builtins.str, default: Any = _MISSING) -> Any:
        """A file path; relative paths are taken from the config file's folder."""
        value = self.str(key, default)
        if value is default or value is None:
            return value
        p = Path(value).expanduser()
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        return p

    @overload
    def table(self, key: builtins.str) -> Fields: ...

    @overload
    def table(self, key: builtins.str, default: None) -> Fields | None: ...

    def table(self, key: builtins.str, default: Any = _MISSING) -> Fields | None:
        """The sub-table `key`: required without a default (a missing one is an error), None
        when it is absent and the default is None."""
        value = self._get(key, default)
        if value is default:
            return None if value is None else Fields({}, self._source, self._name(key) + ".",
                                                      self.base_dir)
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, got {type(value).__name__}")
        return Fields(value, self._source, self._name(key) + ".", self.base_dir)

    def names(self) -> list[builtins.str]:
        return list(self._data)

    def raw(self, key: builtins.str, default: Any = _MISSING) -> Any:
        """The value as TOML gave it (required unless a default is given)."""
        return self._get(key, default)

    def done(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown field (misspelt?)")


def host_port(fields: Fields, key: str, default: Any = _MISSING) -> Any:
    """A 'host:port' address."""
    value = fields.str(key, default)
    if value is default:
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise fields.error(key, f"expected host:port, got {value!r}")
    return value
