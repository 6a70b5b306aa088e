"""The chaos suite's fixtures come from the kit."""

from testkit.chaos.fixtures import case_seed, require, require_fault, scaled

__all__ = ["case_seed", "require", "require_fault", "scaled"]
