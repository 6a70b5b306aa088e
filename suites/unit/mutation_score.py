"""Mutation score of the durability-critical modules with mutmut, driven by the unit suite (not in CI).

``python -m suites.unit.mutation_score`` (or ``make mutation-score``) copies a git revision of the
project into a work directory (the working tree is never mutated) and, for each durability-critical
module in turn, lets mutmut mutate that module alone and run, for each mutant, only the unit tests
mapped to the module (``MODULES``) that mutmut saw calling the mutated function. Each mutant has a
wall-clock limit (``--timeout-multiplier`` times the tests' measured time, plus a constant); a timeout
counts as killed. Tests write to a tmpfs temporary directory when there is one, because a mutant
changes the store's logic, not the disk, and an fsync on tmpfs costs nothing.

Large modules are sampled: every mutant name is ranked by a keyed hash (``--seed``) and the lowest
``--sample`` ranks are run, so two revisions run the same mutants wherever the mutated function is
unchanged. The printed score says when it is a sample, of how many, and with which seed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import tokenize
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODULES", "kind_of", "main"]


@dataclass(frozen=True)
class Target:
    """A module to mutate and the unit test files whose tests may kill its mutants."""

    module: str
    tests: tuple[str, ...]


#: The durability-critical modules and the unit tests that cover each (files absent at a revision are skipped).
MODULES: dict[str, Target] = {t.module: t for t in (
    Target("lighthouse/framing.py", ("test_framing.py", "test_recovery.py", "test_batches.py")),
    Target("lighthouse/segments.py", ("test_recovery.py", "test_recovery_path.py", "test_corruption_while_open.py",
                                      "test_queries.py", "test_store_appends.py")),
    Target("lighthouse/recovery.py", ("test_recovery.py", "test_recovery_path.py", "test_batches.py",
                                      "test_corruption_while_open.py")),
    Target("lighthouse/store_recovery.py", ("test_recovery.py", "test_recovery_path.py", "test_checkpoints.py",
                                            "test_corruption_while_open.py", "test_batches.py")),
    Target("lighthouse/store_writer.py", ("test_store_appends.py", "test_write_path.py", "test_batches.py",
                                          "test_degradation.py", "test_concurrency.py")),
    Target("lighthouse/snapshots.py", ("test_snapshots.py", "test_snapshot_files.py")),
)}
UNIT_TESTS = "suites/unit/lighthouse"
_CONFIG = """[mutmut]
source_paths=lighthouse/
only_mutate={module}
also_copy=testkit/
    suites/
    conftest.py
pytest_add_cli_args_test_selection={tests}
pytest_add_cli_args=-p no:cacheprovider -q -x
timeout_multiplier={multiplier}
timeout_constant={constant}
"""
_KILLED = ("killed", "timeout")
_KEYWORDS = {"and", "or", "not", "is", "in", "True", "False", "break", "continue"}


def _mutmut(workdir: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=workdir, capture_output=True, text=True,
                          check=False, env=env)
    with open(workdir / "mutmut-calls.log", "a", encoding="utf-8") as log:
        log.write(f"$ mutmut {' '.join(args[:6])}{' ...' if len(args) > 6 else ''} -> {done.returncode}\n"
                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n")
    return done.stdout


def _prepare(repo: Path, rev: str, workdir: Path, target: Target, multiplier: float, constant: float) -> bool:
    """Unpack ``rev`` into ``workdir`` with a mutmut config for ``target``; False if the module is absent there."""
    if (workdir / "setup.cfg").exists():
        return True  # an earlier run's copy: mutmut keeps its results there and resumes
    workdir.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive, check=True)
    if not (workdir / target.module).exists():
        return False
    tests = [f"{UNIT_TESTS}/{t}" for t in target.tests if (workdir / UNIT_TESTS / t).exists()]
    (workdir / "setup.cfg").write_text(_CONFIG.format(
        module=target.module, tests="\n    ".join(tests), multiplier=multiplier, constant=constant))
    return True


def _statuses(workdir: Path, env: dict[str, str]) -> dict[str, str]:
    out = {}
    for line in _mutmut(workdir, env, "results", "--all", "true").splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            out[name] = status
    return out


def _sample(names: list[str], seed: int, size: int | None) -> list[str]:
    """The ``size`` names with the lowest keyed hash: a stable sample, the same for unchanged functions."""
    if size is None or size >= len(names):
        return sorted(names)
    rank = {n: hashlib.sha256(f"{seed}:{n}".encode()).digest() for n in names}
    return sorted(sorted(names, key=rank.__getitem__)[:size])


def _tokens(line: str) -> list[tuple[int, str]]:
    try:
        return [(t.type, t.string) for t in tokenize.generate_tokens(io.StringIO(line.strip()).readline)
                if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT)]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []


def kind_of(diff: str) -> str:
    """A first sorting of a surviving mutant by what mutmut changed (equivalence still needs a reader)."""
    removed = [line[1:] for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    before, after = _tokens(" ".join(removed)), _tokens(" ".join(added))
    changed = [(b, a) for b, a in zip(before, after) if b != a]
    if len(before) == len(after) and changed and all(b[0] == a[0] == tokenize.STRING for b, a in changed):
        return "string literal"
    if len(before) == len(after) and changed and all(b[0] == a[0] == tokenize.OP for b, a in changed):
        return "operator"
    if len(before) == len(after) and changed and all(b[0] == a[0] == tokenize.NUMBER for b, a in changed):
        return "number"
    if len(before) == len(after) and changed and all(b[1] in _KEYWORDS and a[1] in _KEYWORDS for b, a in changed):
        return "keyword (and/or, True/False, break/continue)"
    if (tokenize.NAME, "None") in after and after.count((tokenize.NAME, "None")) > before.count((tokenize.NAME, "None")):
        return "value replaced by None"
    if len(after) < len(before):
        return "argument or operand dropped"
    return "other"


def _test_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=".")
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        env["TMPDIR"] = tempfile.mkdtemp(prefix="lighthouse-mutants-tmp-", dir=shm)
    return env


def _score(target: Target, options: argparse.Namespace, workdir: Path, repo: Path) -> dict[str, object]:
    started = time.monotonic()
    if not _prepare(repo, options.rev, workdir, target, options.timeout_multiplier, options.timeout_constant):
        return {"module": target.module, "absent": True}
    env = _test_env()
    _mutmut(workdir, env, "run", "--max-children", str(options.max_children), "no-such-mutant")  # generate only
    prefix = target.module.removesuffix(".py").replace("/", ".") + "."
    names = [n for n in _statuses(workdir, env) if n.startswith(prefix)]
    chosen = _sample(names, options.seed, options.sample)
    _mutmut(workdir, env, "run", "--max-children", str(options.max_children), *chosen)
    statuses = _statuses(workdir, env)
    counts = Counter(statuses.get(n, "not checked") for n in chosen)
    survivors = [n for n in chosen if statuses.get(n) == "survived"]
    diffs = {n: _mutmut(workdir, env, "show", n) for n in survivors} if options.diffs else {}
    return {"module": target.module, "mutants": len(names), "run": len(chosen), "counts": dict(counts),
            "survivors": survivors, "diffs": diffs, "seconds": round(time.monotonic() - started),
            "workdir": str(workdir)}


def _print(result: dict[str, object], options: argparse.Namespace) -> None:
    module = result["module"]
    if result.get("absent"):
        print(f"  {module:28} absent at {options.rev}")
        return
    counts: dict[str, int] = result["counts"]  # type: ignore[assignment]
    killed = sum(counts.get(k, 0) for k in _KILLED)
    judged = killed + counts.get("survived", 0)
    score = f"{killed / judged:.0%}" if judged else "n/a"
    scope = "all" if result["run"] == result["mutants"] else f"sample (seed {options.seed})"
    print(f"  {module:28} {score:>5} killed {killed}/{judged}  {result['run']} of {result['mutants']} mutants, "
          f"{scope}, {result['seconds']}s  {counts}")
    diffs: dict[str, str] = result["diffs"]  # type: ignore[assignment]
    if counts and set(counts) == {"not checked"}:
        print(f"    no mutant ran: the mapped tests failed on the unmutated copy? see {result['workdir']}/mutmut-calls.log")
    for name in result["survivors"]:  # type: ignore[attr-defined]
        kind = f" [{kind_of(diffs[name])}]" if name in diffs else ""
        print(f"    survived {name}{kind}")
        for line in diffs.get(name, "").splitlines():
            if line.startswith(("-", "+")) and not line.startswith(("---", "+++")):
                print(f"      {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="git revision to mutate (default HEAD)")
    parser.add_argument("--workdir", type=Path, default=None, help="reuse this directory (results resume)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--sample", type=int, default=30, help="mutants per module, 0 for all (default 30)")
    parser.add_argument("--seed", type=int, default=15, help="key of the sample's hash (default 15)")
    parser.add_argument("--timeout-multiplier", type=float, default=4.0, help="wall limit = tests' time x this")
    parser.add_argument("--timeout-constant", type=float, default=5.0, help="... plus this many seconds")
    parser.add_argument("--diffs", action="store_true", help="print each surviving mutant's changed lines")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--modules", nargs="*", default=None, help=f"a subset of {list(MODULES)}")
    options = parser.parse_args(argv)
    options.sample = options.sample or None
    repo = Path(__file__).resolve().parents[2]
    root = options.workdir or Path(tempfile.mkdtemp(prefix="lighthouse-mutants-"))
    print(f"mutation score of {options.rev} (work dir {root}, {options.max_children} worker(s)):", flush=True)
    results = []
    for module in options.modules or MODULES:
        result = _score(MODULES[module], options, root / Path(module).stem, repo)
        _print(result, options)
        sys.stdout.flush()
        results.append(result)
    if options.json:
        options.json.write_text(json.dumps({"rev": options.rev, "seed": options.seed, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
