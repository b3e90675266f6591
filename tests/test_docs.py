"""The numbers in the README and the package docstring are what the code prints: their examples run
as doctests (a changed number fails here, not in a reader's hands)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import harness

ROOT = Path(__file__).resolve().parent.parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("page", ["README.md", "docs/python.md"])
def test_page_examples_print_what_they_say(page):
    result = doctest.testfile(str(ROOT / page), module_relative=False, optionflags=FLAGS)
    assert result.attempted >= 5 and result.failed == 0, result


def test_package_docstring_example_prints_what_it_says():
    result = doctest.testmod(harness, optionflags=FLAGS)
    assert result.attempted >= 4 and result.failed == 0, result
