"""A system under test: an adapter spec (picklable, so children rebuild it) plus what it offers and promises."""

from __future__ import annotations

import dataclasses
import importlib
import tempfile
from dataclasses import dataclass, field
from typing import Any

from testkit.adapters import AdapterSpec
from testkit.chaos.capabilities import Capabilities, capabilities_of

__all__ = ["SystemUnderTest", "declared_expected_loss", "load_factory"]


def load_factory(reference: str) -> Any:
    """``"pkg.module:factory"`` (or ``"pkg.module:Class.method"``) -> the callable; a clear error naming what is wrong."""
    module_name, sep, attr = reference.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"adapter {reference!r}: expected PKG.MODULE:FACTORY "
                         f"(for example testkit.adapters.sqlite:SqliteAdapter)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"adapter {reference!r}: cannot import {module_name}: {exc}") from exc
    target: Any = module
    try:
        for part in attr.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise ValueError(f"adapter {reference!r}: {module_name} has no {attr!r}") from None
    if not callable(target):
        raise ValueError(f"adapter {reference!r}: a {type(target).__name__}, not a callable factory")
    return target


def declared_expected_loss(spec: AdapterSpec) -> frozenset[str]:
    """The ``expected_loss`` an adapter instance declares for its configuration (built, never opened).

    Depends on options (SQLite ``synchronous=OFF`` expects power-cut losses, ``FULL`` none), so it is
    read from an instance over a throwaway directory; an adapter that cannot even be built declares nothing
    here and fails its first campaign with the reason.
    """
    with tempfile.TemporaryDirectory(prefix="testkit-sut-") as directory:
        try:
            adapter = spec.create(directory)
        except Exception:  # reported where it matters: the first campaign that builds it
            return frozenset()
        return frozenset(getattr(adapter, "expected_loss", None) or ())


@dataclass(frozen=True)
class SystemUnderTest:
    """Jepsen's *system under test*: which store, configured how, and which faults it is expected to fail."""

    spec: AdapterSpec
    capabilities: Capabilities = field(default_factory=Capabilities)

    @property
    def name(self) -> str:
        return self.spec.name

    @classmethod
    def from_reference(cls, reference: str, options: dict[str, Any] | None = None, *, name: str | None = None,
                       expected_loss: frozenset[str] = frozenset()) -> SystemUnderTest:
        """Build from ``"pkg.module:factory"``; the factory's ``testkit_capabilities`` say what applies."""
        options = dict(options or {})
        factory = load_factory(reference)
        capabilities = capabilities_of(factory).expecting_loss(expected_loss)
        declared = getattr(factory, "testkit_name", None) or getattr(factory, "name", None)
        label = name or (declared if isinstance(declared, str) else reference.rpartition(":")[2])
        if options and not name:
            label += "[" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + "]"
        spec = AdapterSpec(label, reference, options)
        return cls(spec, capabilities.expecting_loss(declared_expected_loss(spec)))

    def expects_loss(self, fault: str) -> bool:
        return self.capabilities.expects_loss(fault)

    def with_options(self, name: str | None = None, **options: Any) -> SystemUnderTest:
        """The same store with more factory options (a smaller segment size for a rotation-heavy case)."""
        spec = AdapterSpec(name or self.spec.name, self.spec.factory, {**self.spec.options, **options})
        return dataclasses.replace(self, spec=spec)

    def crash_point_spec(self) -> AdapterSpec | None:
        factory = self.capabilities.crash_point_factory
        if not self.capabilities.crash_points or not factory:
            return None
        return AdapterSpec(f"{self.spec.name}[crash points]", factory, dict(self.spec.options))
