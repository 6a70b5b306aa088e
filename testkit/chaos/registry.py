"""Where systems under test come from: ``--testkit-adapter``, the ``testkit.adapters`` entry points, a pytest hook.

``--testkit-adapter PKG.MODULE:FACTORY`` (or the NAME of an entry point; with ``--testkit-option
key=value``) names one explicitly and wins over the others; otherwise every entry point of the group
``testkit.adapters`` that another distribution declares and every answer of the
``pytest_testkit_adapters(config)`` hook are registered; with none of them, the adapters this
installation ships (lighthouse when importable, SQLite) are. The kit's own entry points (its
third-party adapters) run only when named: installing the kit must not turn every suite into a
PostgreSQL run.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any

from testkit.adapters.factory import available_adapters
from testkit.adapters.shipped import SHIPPED
from testkit.chaos.capabilities import capabilities_of
from testkit.chaos.sut import SystemUnderTest, load_factory

__all__ = ["ENTRY_POINT_GROUP", "EXPECTED_LOSS_OPTION", "entry_point_systems", "parse_options", "registered_systems",
           "system_from_arguments"]

ENTRY_POINT_GROUP = "testkit.adapters"
#: The distribution this kit ships in: its entry points are available by name, never registered implicitly.
KIT_DISTRIBUTION = "lighthouse-testkit"
#: The ``--option`` that declares an expectation instead of configuring the factory.
EXPECTED_LOSS_OPTION = "expected_loss"


def _value(text: str) -> Any:
    """A Python literal (``4096``, ``False``), else JSON (``false``, ``null``), else the text itself (``OFF``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_options(pairs: Iterable[str]) -> tuple[dict[str, Any], frozenset[str]]:
    """``["sync=False", "expected_loss=power_cut,posix_crash"]`` -> (factory options, expected losses)."""
    options: dict[str, Any] = {}
    expected: frozenset[str] = frozenset()
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"option {pair!r}: expected KEY=VALUE with an identifier KEY")
        if key == EXPECTED_LOSS_OPTION:
            value = _value(raw)
            names = value if isinstance(value, (set, frozenset, list, tuple)) else str(value).split(",")
            expected = expected | frozenset(str(n).strip() for n in names if str(n).strip())
        else:
            options[key] = _value(raw)
    return options, expected


def system_from_arguments(reference: str, pairs: Sequence[str] = ()) -> SystemUnderTest:
    """``PKG.MODULE:FACTORY``, an entry-point name of ``testkit.adapters`` or a shipped configuration's name
    (``postgres``, ``lmdb-nosync``... even where the kit is not installed with its entry points), plus options."""
    options, expected = parse_options(pairs)
    if ":" in reference:
        return SystemUnderTest.from_reference(reference, options, expected_loss=expected)
    found = [ep.value.replace(" ", "") for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == reference]
    if not found and reference in SHIPPED:
        missing = SHIPPED[reference].missing()
        if missing:
            raise ValueError(f"adapter {reference!r}: {missing}")
        found = [SHIPPED[reference].factory]
    if not found:
        known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(SHIPPED))
        raise ValueError(f"adapter {reference!r}: expected PKG.MODULE:FACTORY or one of the registered names {known}")
    return SystemUnderTest.from_reference(found[0], options, name=reference if not options else None,
                                          expected_loss=expected)


def _as_systems(name: str, loaded: Any) -> list[SystemUnderTest]:
    if isinstance(loaded, SystemUnderTest):
        return [loaded]
    if isinstance(loaded, (list, tuple)):
        return [s for item in loaded for s in _as_systems(name, item)]
    if callable(loaded):
        reference = f"{loaded.__module__}:{loaded.__qualname__}"
        return [SystemUnderTest.from_reference(reference, name=name)]
    raise TypeError(f"entry point {name!r} of {ENTRY_POINT_GROUP}: expected a factory or SystemUnderTest")


def entry_point_systems() -> list[SystemUnderTest]:
    """Every adapter another installed distribution registers under ``[project.entry-points."testkit.adapters"]``."""
    return [s for ep in entry_points(group=ENTRY_POINT_GROUP)
            if not (ep.dist and _normalised(ep.dist.name) == KIT_DISTRIBUTION)
            for s in _as_systems(ep.name, ep.load())]


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def shipped_systems() -> list[SystemUnderTest]:
    return [SystemUnderTest(spec, capabilities_of(load_factory(spec.factory))) for spec in available_adapters()]


def registered_systems(config: Any) -> list[SystemUnderTest]:
    """The systems a pytest run tests (see the module doc for the order of precedence)."""
    references: list[str] = config.getoption("testkit_adapter") or []
    pairs: list[str] = config.getoption("testkit_option") or []
    if references:
        return [system_from_arguments(reference, pairs) for reference in references]
    found = entry_point_systems()
    for answer in config.hook.pytest_testkit_adapters(config=config):
        found.extend(_as_systems("hook", answer))
    return found or shipped_systems()
