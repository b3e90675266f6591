"""Command-line overrides checked against the run specification before Hydra composes anything, so
a bad value is one line, not Hydra's multi-line message or a run that fails half-way."""
from __future__ import annotations

from harness.cli.paths import options
from harness.core.errors import ConfigError
from harness.core.spec import VALIDATORS, Validator, one_of, scalars


def checkers(extra_paths: bool) -> dict[str, Validator]:
    """VALIDATORS, with the groups' names checked against their config files (packaged and the
    user's; anything goes for the experiment when the user adds search paths of their own)."""
    found = {group: options(group) for group in ("cell", "remedy", "experiment")}
    return {**VALIDATORS, "cell": one_of(found["cell"]), "remedy": one_of(found["remedy"]),
            "experiment": (lambda k, v: v) if extra_paths else one_of(found["experiment"])}


def checker(table: dict[str, Validator], key: str) -> Validator | None:
    if key.startswith("cell.kwargs."):  # a user cell's own arguments: any scalar
        return lambda k, v: scalars(k, {k: v})[k]
    return table.get(key)


def check_overrides(overrides: list[str]) -> None:
    """Validate Hydra override strings (sweeps expanded) against VALIDATORS; raise ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, parsed = OverridesParser.create(), []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except Exception as error:  # Hydra's grammar errors span lines; keep the first
            reason = str(error).strip().splitlines()[0]
            raise ConfigError(f"{text}: not a Hydra override ({reason}); quote values with '=' or spaces") from None
    # Experiments are the packaged and the user's files, unless the user adds search paths of their own.
    extra_paths = any(o.key_or_group == "hydra.searchpath" for o in parsed)
    table = checkers(extra_paths)
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete():
            continue
        check = checker(table, key)
        if check is None:
            raise ConfigError(f"{key}={override.get_value_element_as_str()}: unknown key; "
                              f"expected one of {', '.join(table)}")
        if not override.is_sweep_override():
            values = [override.value()]
        elif override.is_discrete_sweep():
            values = list(override.sweep_iterator())
        else:  # an interval sweep: the sweeper picks the points, each checked in its run
            continue
        for value in values:
            check(key, value)
