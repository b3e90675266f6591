"""A YAML file that expands past any config's size (an anchor-and-alias "billion laughs" bomb) refused
before Hydra loads it: Hydra expands every alias, which takes minutes and gigabytes before its error.

yaml.compose builds the file's node graph without expanding aliases (an alias is the anchored node
itself, shared), so counting the nodes of its expansion, each shared node's count computed once, takes
time linear in the file.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.core.errors import ConfigError

MAX_NODES = 10**6  # a config of the harness has a few hundred


def expanded_nodes(path: Path, limit: float = float("inf")) -> float:
    """The number of YAML nodes in the file once its aliases are expanded (inf for an alias inside its
    own anchor, which never ends), counting stopped past `limit`; 0 for a file that is not YAML (Hydra
    reports that itself, naming the line)."""
    try:
        root = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError, ValueError):
        return 0
    if root is None:
        return 0
    counts: dict[int, float] = {}  # id(node) -> nodes in its expansion
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # post-order without recursion: a deep file must not overflow Python's stack
        node, children_done = stack.pop()
        key = id(node)
        if key in counts:
            continue
        children = (
            node.value
            if isinstance(node, yaml.SequenceNode)
            else [item for pair in node.value for item in pair]
            if isinstance(node, yaml.MappingNode)
            else []
        )
        if children_done:
            counts[key] = min(1 + sum(counts[id(child)] for child in children), limit + 1)
            if counts[key] > limit:
                return counts[key]
            continue
        if key in entered:  # reached again while its own children are being counted: a cycle
            return float("inf")
        entered.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) not in counts:
                if id(child) in entered:
                    return float("inf")
                stack.append((child, False))
    return counts[id(root)]


def shown(path: Path) -> str:
    """The path as the user names it: relative to the folder they run in, where it is under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def check_expansion(path: Path, limit: int = MAX_NODES) -> None:
    """Raise ConfigError if the YAML file expands to more than `limit` nodes."""
    if expanded_nodes(path, limit) > limit:
        raise ConfigError(
            f"{shown(path)}: expands to more than {limit} YAML nodes (anchors and aliases); "
            "expected a plain config file"
        )
