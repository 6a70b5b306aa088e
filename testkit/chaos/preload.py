"""Which modules a crash-cycle zygote must import so that its forked workers can build the adapter."""

from __future__ import annotations

from testkit.adapters import AdapterSpec

__all__ = ["modules_of"]


def modules_of(adapter: AdapterSpec) -> list[str]:
    """The factory's module and the module of every class or function passed as an option (a store variant)."""
    modules = [adapter.factory.partition(":")[0]]
    for value in adapter.options.values():
        module = getattr(value, "__module__", None)
        if callable(value) and module and module not in modules:
            modules.append(module)
    return modules
