"""Mutation score of the durability-critical modules with mutmut, driven by the unit suite (not in CI).

``python -m suites.unit.mutation_score`` (or ``make mutation-score``) copies a git revision of the
project into a work directory (the working tree is never mutated), lets mutmut mutate the framing,
recovery, segment-scanning and snapshot modules, runs the unit tests that cover each mutant, and
prints the score per module and every surviving mutant with its diff. Mutation testing is CPU-heavy:
small modules are mutated fully, large ones by a seeded sample (``--seed``), one test process at a
time (``--max-children``), so that a shared machine stays usable.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

__all__ = ["MODULES", "main"]

#: Module -> how many of its mutants to run (None: all of them).
MODULES: dict[str, int | None] = {
    "lighthouse/framing.py": None,
    "lighthouse/snapshots.py": None,
    "lighthouse/recovery.py": 40,
    "lighthouse/segments.py": 40,
}
TESTS = ("test_framing.py", "test_recovery.py", "test_snapshots.py", "test_snapshot_files.py",
         "test_store_appends.py", "test_batches.py", "test_degradation.py")
_CONFIG = """[mutmut]
source_paths=lighthouse/
only_mutate={modules}
also_copy=testkit/
    suites/
    conftest.py
pytest_add_cli_args_test_selection={tests}
pytest_add_cli_args=-p no:cacheprovider -q -x
"""


def _mutmut(workdir: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=workdir, capture_output=True, text=True,
                          check=False)
    with open(workdir / "mutmut-calls.log", "a", encoding="utf-8") as log:
        log.write(f"$ mutmut {' '.join(args[:6])}{' ...' if len(args) > 6 else ''} -> {done.returncode}\n"
                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n")
    return done.stdout


def _prepare(repo: Path, rev: str, workdir: Path, modules: dict[str, int | None]) -> None:
    if (workdir / "setup.cfg").exists():
        return  # an earlier run's copy: mutmut keeps its results there and resumes
    workdir.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
    (workdir / "setup.cfg").write_text(_CONFIG.format(
        modules="\n    ".join(modules), tests="\n    ".join(f"suites/unit/lighthouse/{t}" for t in TESTS)))


def _statuses(workdir: Path) -> dict[str, str]:
    out = {}
    for line in _mutmut(workdir, "results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            out[name] = status
    return out


def _selection(names: list[str], seed: int, modules: dict[str, int | None]) -> list[str]:
    chosen = []
    for module, sample in modules.items():
        prefix = module.removesuffix(".py").replace("/", ".") + "."
        mine = sorted(n for n in names if n.startswith(prefix))
        chosen.extend(mine if sample is None or sample >= len(mine) else random.Random(seed).sample(mine, sample))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision to mutate (default HEAD)")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse this copy (results resume)")
    parser.add_argument("--max-children", default="1")
    parser.add_argument("--seed", type=int, default=15, help="seed of the sample of large modules' mutants")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--modules", nargs="*", default=None, help=f"a subset of {list(MODULES)}")
    options = parser.parse_args(argv)
    modules = {m: MODULES[m] for m in (options.modules or MODULES)}
    repo = Path(__file__).resolve().parents[2]
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="lighthouse-mutants-"))
    _prepare(repo, options.rev, workdir, modules)
    _mutmut(workdir, "run", "--max-children", options.max_children, "no-such-mutant")  # generate, no runs
    chosen = _selection(sorted(_statuses(workdir)), options.seed, modules)
    _mutmut(workdir, "run", "--max-children", options.max_children, *chosen)
    statuses = _statuses(workdir)
    report: dict[str, dict[str, int]] = {}
    survivors = []
    for name in chosen:
        module = ".".join(name.split(".")[:2])
        status = statuses.get(name, "not checked")
        report.setdefault(module, Counter())[status] += 1  # type: ignore[arg-type]
        if status == "survived":
            survivors.append(name)
    print(f"mutation score of {options.rev} (work dir {workdir}):")
    for module, counts in report.items():
        killed = counts.get("killed", 0) + counts.get("timeout", 0)
        judged = killed + counts.get("survived", 0)
        score = f"{killed / judged:.0%}" if judged else "n/a"
        print(f"  {module:24} {score:>5} killed {killed}/{judged}  {dict(counts)}")
    print(f"{len(survivors)} surviving mutants:")
    for name in survivors:
        print(f"  {name}")
    if options.json:
        options.json.write_text(json.dumps({"rev": options.rev, "modules": report, "survivors": survivors}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
