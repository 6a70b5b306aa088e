"""Test ids that do not depend on pytest's rootdir or on how pytest was invoked.

Results and baselines key metrics by test. pytest's node id is relative to its rootdir, and the rootdir moves
with the command line (a plugin option's value given as a separate word, ``--testkit-baseline /tmp/b.json``, is
taken for a path while pytest picks its rootdir, before plugins are loaded). A regression gate whose keys move
compares nothing. So the id here is the test file's path relative to its *project* (the nearest directory
above it holding a project or VCS marker) plus the node id's part after the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["PROJECT_MARKERS", "project_root", "stable_test_id"]

PROJECT_MARKERS: tuple[str, ...] = ("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini", ".git")


def project_root(path: Path) -> Path | None:
    """The nearest directory at or above ``path`` holding one of :data:`PROJECT_MARKERS`."""
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None


def stable_test_id(item: pytest.Item) -> str:
    """``<file relative to its project>::<test name and parameters>``; pytest's node id when there is no file."""
    path = Path(item.path).resolve()
    root = project_root(path)
    _, sep, rest = item.nodeid.partition("::")
    if root is None or not sep:
        return item.nodeid
    return f"{path.relative_to(root).as_posix()}::{rest}"
