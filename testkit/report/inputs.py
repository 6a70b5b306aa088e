"""What a report is drawn from: one or more validated results documents, and optionally a regression comparison.

Inputs arrive in every shape a caller has at hand (a :class:`~testkit.results.RunResults`, its dict, a path to
its JSON file) and are validated by :mod:`testkit.results` itself, so an old or malformed file fails with the
same :class:`~testkit.results.ResultsSchemaError` everywhere. Several files merge into one report: a chaos run
and a perf run read as one page.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from testkit.regression import Baseline, Comparison, compare, load_comparable
from testkit.results import ResultsSchemaError, RunResults, read_json

__all__ = ["ReportError", "ReportInput", "ResultsLike", "RunView", "TestView", "read_inputs"]

#: Anything that names one run's results.
ResultsLike = Union[RunResults, Mapping[str, Any], str, "os.PathLike[str]"]

#: The store this project builds; when it is among the systems under test it is "ours", the others are peers.
PREFERRED_SUT = "lighthouse"

_PARAMS = re.compile(r"\[.*\]$")


class ReportError(ValueError):
    """The report cannot be built from what was given (nothing to report, unusable options)."""


@dataclass(frozen=True, slots=True)
class RunView:
    """One results document, validated; ``label`` tells runs apart on the page (the file name when known)."""

    label: str
    document: Mapping[str, Any]

    @property
    def run(self) -> Mapping[str, Any]:
        return self.document["run"]

    @property
    def environment(self) -> Mapping[str, Any]:
        return self.document["environment"]

    @property
    def tests(self) -> Sequence[Mapping[str, Any]]:
        return self.document["tests"]


@dataclass(frozen=True, slots=True)
class TestView:
    """One test of one run."""

    __test__ = False  # not a pytest test class

    run: RunView
    test: Mapping[str, Any]

    @property
    def nodeid(self) -> str:
        return str(self.test["nodeid"])

    @property
    def seed(self) -> int | None:
        """The test's own seed (derived from the run's), else the run's."""
        seed = self.test.get("seed")
        return seed if seed is not None else self.run.run.get("seed")

    @property
    def rerun_seed(self) -> int | None:
        """The seed to pass to ``--testkit-seed`` to replay this test: the run's, from which the plugin derives
        the test's own seed again (passing the test's seed would derive a different one)."""
        seed = self.run.run.get("seed")
        return seed if seed is not None else self.test.get("seed")

    @property
    def family(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """What a test measures regardless of which store it ran on: the test function and its parameters
        other than the store. Tests of one family with different ``sut`` are compared side by side."""
        sut = self.test.get("sut")
        params = tuple(sorted((str(k), str(v)) for k, v in (self.test.get("parameters") or {}).items()
                              if str(v) != str(sut)))
        return _PARAMS.sub("", self.nodeid), params


@dataclass(frozen=True, slots=True)
class ReportInput:
    """Everything the sections read."""

    runs: tuple[RunView, ...]
    comparison: Mapping[str, Any] | None = None
    baseline: Baseline | None = None

    def tests(self) -> Iterator[TestView]:
        for run in self.runs:
            for test in run.tests:
                yield TestView(run, test)

    @property
    def test_count(self) -> int:
        return sum(len(run.tests) for run in self.runs)

    @property
    def primary_sut(self) -> str | None:
        """The system the report is about: lighthouse when present, else the one most tests measured."""
        suts = Counter(str(t.test["sut"]) for t in self.tests() if t.test.get("sut"))
        if not suts:
            return None
        return PREFERRED_SUT if PREFERRED_SUT in suts else suts.most_common(1)[0][0]

    def extra(self, key: str) -> list[tuple[RunView, Any]]:
        """A top-level field the schema does not define yet (e.g. ``skipped_mechanisms``), per run that has it."""
        return [(run, run.document[key]) for run in self.runs if run.document.get(key) is not None]


def read_inputs(
    results: ResultsLike | Sequence[ResultsLike],
    *,
    comparison: Comparison | Mapping[str, Any] | None = None,
    baseline: Baseline | str | os.PathLike[str] | None = None,
) -> ReportInput:
    """Validate and merge the inputs. With a ``baseline`` but no ``comparison``, compare every run against it
    with :func:`testkit.regression.compare` (the report shows the result; it never judges on its own)."""
    items: Sequence[ResultsLike]
    if isinstance(results, (RunResults, Mapping, str, os.PathLike)):
        items = [results]
    else:
        items = list(results)
    if not items:
        raise ReportError("no results to report: pass at least one results document or file")
    runs: list[RunView] = []
    validated: list[RunResults] = []
    for index, item in enumerate(items, start=1):
        label, parsed, document = _read_one(item, index)
        runs.append(RunView(label, document))
        validated.append(parsed)
    loaded_baseline = _read_baseline(baseline)
    comparison_doc: Mapping[str, Any] | None
    if isinstance(comparison, Comparison):
        comparison_doc = {**comparison.to_dict(), "warnings": comparison.warnings()}
    elif comparison is not None:
        if not isinstance(comparison, Mapping) or not isinstance(comparison.get("rows"), list):
            raise ReportError("comparison must be a testkit.regression.Comparison or its to_dict() document")
        comparison_doc = comparison
    elif loaded_baseline is not None:
        comparison_doc = _merge_comparisons([compare(loaded_baseline, run) for run in validated])
    else:
        comparison_doc = None
    return ReportInput(tuple(runs), comparison_doc, loaded_baseline)


def _read_one(item: ResultsLike, index: int) -> tuple[str, RunResults, Mapping[str, Any]]:
    """Validate one input through :class:`RunResults`, then keep the document as given: writers may add
    fields the schema does not define yet (the plugin's chaos counts, skipped mechanisms, rerun command)."""
    label = f"run {index}"
    raw: Any
    if isinstance(item, RunResults):
        return label, item, item.to_dict()
    if isinstance(item, (str, os.PathLike)):
        label = Path(item).name
        raw = read_json(item)
    elif isinstance(item, Mapping):
        raw = item
    else:
        raise ReportError(f"cannot read results from {type(item).__name__}: expected RunResults, a dict or a path")
    try:
        parsed = RunResults.from_dict(raw)
    except ResultsSchemaError as error:
        where = label if isinstance(item, (str, os.PathLike)) else f"results #{index}"
        raise type(error)(f"{where}: {error}") from error
    return label, parsed, raw


def _read_baseline(baseline: Baseline | str | os.PathLike[str] | None) -> Baseline | None:
    if baseline is None or isinstance(baseline, Baseline):
        return baseline
    return load_comparable(baseline)


def _merge_comparisons(comparisons: Sequence[Comparison]) -> Mapping[str, Any]:
    """One comparison document for several runs: rows concatenated, warnings kept."""
    documents = [c.to_dict() for c in comparisons]
    if len(documents) == 1:
        merged = dict(documents[0])
    else:
        merged = dict(documents[0])
        merged["rows"] = [row for document in documents for row in document["rows"]]
        merged["blocking"] = any(document["blocking"] for document in documents)
        merged["fingerprint_mismatch"] = any(document["fingerprint_mismatch"] for document in documents)
    merged["warnings"] = [message for c in comparisons for message in c.warnings()]
    return merged
