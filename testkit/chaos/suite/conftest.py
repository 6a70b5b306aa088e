"""Fixtures of the shipped chaos suite (the kit's own)."""

from testkit.chaos.fixtures import case_seed, require, scaled

__all__ = ["case_seed", "require", "scaled"]
