"""The command line that reruns a run, or one test, with the same seed: the first thing to paste after a failure."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

__all__ = ["SEED_OPTION", "reproduce_command", "single_test_command"]

#: The testkit pytest plugin's option that fixes every random choice of a run.
SEED_OPTION = "--testkit-seed"


def reproduce_command(command: Sequence[str], seed: int | str | None) -> str:
    """The run's own command, readable (``python -m pytest`` instead of a venv path) and with its seed."""
    words = _readable(list(command))
    if seed is not None and not any(w == SEED_OPTION or w.startswith(f"{SEED_OPTION}=") for w in words):
        words += [SEED_OPTION, str(seed)]
    return shlex.join(words) if words else "—"


def single_test_command(nodeid: str, seed: int | str | None) -> str:
    """Rerun one test with the seed it ran with."""
    words = ["python", "-m", "pytest", nodeid]
    if seed is not None:
        words += [SEED_OPTION, str(seed)]
    return shlex.join(words)


def _readable(words: list[str]) -> list[str]:
    if not words:
        return words
    program = words[0].replace("\\", "/")
    if program.endswith("pytest/__main__.py") or program.endswith("/py.test"):
        return ["python", "-m", "pytest", *words[1:]]
    if program.endswith("/pytest"):
        return ["pytest", *words[1:]]
    return words
