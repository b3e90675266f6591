"""The validators of run keys: each takes (key, value) and returns the value normalised (scale=1
becomes 1.0, so tables never mix ints and floats in a column) or raises ConfigError in one line that
names the key, the value and what is allowed. harness.core.spec attaches one to every key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

from harness.core.errors import ConfigError

DEVICES = ("cpu", "cuda")

Validator = Callable[[str, Any], Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def one_of(options: Collection[str] | Callable[[], Collection[str]]) -> Validator:
    """A value among options; a callable is asked for them at each check (a registry read lazily)."""

    def check(key: str, value: Any) -> Any:
        allowed = sorted(options() if callable(options) else options)
        if value not in allowed:
            raise ConfigError(f"{key}={value}: expected one of {', '.join(allowed)}")
        return value

    return check


INT64_MAX = 2**63 - 1  # the tables hold whole numbers as 64-bit integers (and torch's seeds are 64-bit)


def integer(minimum: int) -> Validator:
    def check(key: str, value: Any) -> int:
        if not (_is_number(value) and isinstance(value, int) and value >= minimum):
            raise ConfigError(f"{key}={value}: expected an integer >= {minimum}")
        if value > INT64_MAX:
            raise ConfigError(f"{key}={value}: expected an integer from {minimum} to 2**63 - 1 = {INT64_MAX}")
        return value

    return check


def finite_number(minimum: float = -math.inf) -> Validator:
    bound = "" if minimum == -math.inf else f" >= {minimum:g}"

    def check(key: str, value: Any) -> float:
        if not (_is_number(value) and math.isfinite(value) and value >= minimum):
            raise ConfigError(f"{key}={value}: expected a finite number{bound}")
        return float(value)

    return check


def optional(check: Validator) -> Validator:
    """null (off), or a value that passes check."""

    def check_or_null(key: str, value: Any) -> Any:
        return None if value is None else check(key, value)

    return check_or_null


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value}: expected true or false")
    return value


def positive_number(key: str, value: Any) -> float:
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{key}={value}: expected a finite number > 0")
    return float(value)


def device(key: str, value: Any) -> str:
    one_of(DEVICES)(key, value)
    import torch  # noqa: PLC0415  only when a device is checked (reading stored tables never does)

    if value == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}={value}: CUDA is not available on this machine; expected cpu")
    return value


def text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}={value}: expected a non-empty name")
    return value


NAME_LENGTH = 100  # characters; a folder name's limit is 255 bytes, and results/${name}/... nests under it


def folder_name(key: str, value: Any) -> str:
    """A name that names one folder under results/ (results/${name}/...): 1 to NAME_LENGTH characters,
    no path separator, not . or .. (which would escape results/)."""
    text(key, value)
    if (
        len(value) > NAME_LENGTH
        or len(value.encode("utf-8", "surrogateescape")) > 255
        or any(c in value for c in "/\\\0")
        or value in (".", "..")
    ):
        shown = value if len(value) <= 60 else f"{value[:40]}... ({len(value)} characters)"
        raise ConfigError(
            f"{key}={shown}: expected a folder name of 1 to {NAME_LENGTH} characters, "
            "without / or \\, not . or .. (it names results/${name}/)"
        )
    return value


def import_path(key: str, value: Any) -> str | None:
    """null, or a dotted import path `package.module.Name` (imported when the run builds its model)."""
    if value is None:
        return None
    if not isinstance(value, str) or "." not in value or not all(p.isidentifier() for p in value.split(".")):
        raise ConfigError(f"{key}={value}: expected an import path such as mypkg.cells.MyCell")
    return value


def scalars(key: str, value: Any) -> dict[str, Any]:
    """A mapping of names to scalars (a user cell's constructor arguments)."""
    if not isinstance(value, Mapping) or not all(
        isinstance(v, (int, float, str, bool)) or v is None for v in value.values()
    ):
        raise ConfigError(f"{key}={value}: expected a mapping of names to numbers, strings or booleans")
    return dict(value)
