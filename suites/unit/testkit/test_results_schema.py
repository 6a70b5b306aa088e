"""The results schema: what every suite writes must load back identically, and bad files must fail clearly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

from testkit.environment import FingerprintError, MachineFingerprint, machine_fingerprint
from testkit.results import (
    SCHEMA_VERSION,
    ChaosMatrix,
    FaultRecord,
    MemoryRecord,
    Metric,
    ResultsSchemaError,
    RunResults,
    Target,
    TestRecord,
    Timeline,
    VerdictRecord,
    load_results,
)


def _latency_histogram(values: range) -> HdrHistogram:
    histogram = HdrHistogram(1, 60_000_000_000, 3)
    for value in values:
        histogram.record_value(value)
    return histogram


def _full_run(tmp_path: Path) -> RunResults:
    results = RunResults.start(["pytest", "suites/perf"], seed=1234, data_path=tmp_path)
    histogram = _latency_histogram(range(1_000, 101_000, 7))
    results.add(TestRecord(
        nodeid="suites/perf/test_append.py::test_single_appender[sqlite]",
        outcome="passed",
        duration=2.5,
        sut="sqlite",
        parameters={"events": 10_000, "durability": "fsync"},
        seed=1234,
        metrics={
            "append_latency": Metric(value=histogram.get_value_at_percentile(99) / 1e6, unit="ms", direction="lower",
                                     histogram=histogram.encode().decode("ascii"), histogram_unit="ns",
                                     target=Target("<=", 10.0)),
            "throughput": Metric(value=7_500.0, unit="events/s", direction="higher", samples=[7_400.0, 7_600.0]),
        },
        timelines=[Timeline("load", t=[0.0, 1.0, 2.0], series={"completed": [100, 98, None], "p99": [1.0, 2.0, 3.0]},
                            units={"p99": "ms"})],
        faults=[FaultRecord("sigkill", proven=True, detail="killed pid 42 after 500 acks", window=(1.0, 1.2))],
        verdicts=[VerdictRecord("durability", ok=False, counts={"acknowledged": 500, "lost": 1},
                                violations=[{"event_id": "e-17", "problem": "lost"}])],
    ))
    results.add(TestRecord("suites/chaos/test_enospc.py::test_fill", "skipped", 0.0,
                           skipped_reason="loop devices are not available"))
    results.chaos_matrix = ChaosMatrix(faults=["sigkill"], invariants=["no_lost_ack", "prefix"],
                                       cells={"sigkill": {"no_lost_ack": "fail", "prefix": "pass"}},
                                       counts={"sigkill": {"no_lost_ack": {"cases": 3, "proven": 3, "violations": 1}}})
    results.skipped_mechanisms["loop_ext4"] = "losetup is not available"
    results.run.rerun = "pytest suites/perf --testkit-seed=1234"
    results.memory = MemoryRecord(peak_rss_bytes=50_000_000, samples=[(0.0, 40_000_000), (0.5, 50_000_000)],
                                  leak={"leaking": False})
    results.finish("failed")
    return results


def test_a_full_document_survives_save_and_load(tmp_path: Path) -> None:
    original = _full_run(tmp_path)
    path = original.save(tmp_path / "out" / "results.json")

    loaded = load_results(path)

    assert loaded.to_dict() == original.to_dict()
    document = json.loads(path.read_text())
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["run"]["fingerprint"] == document["environment"]["key"] == original.environment.key
    assert document["run"]["finished"] is not None and document["run"]["verdict"] == "failed"
    assert [p.name for p in path.parent.iterdir()] == ["results.json"], "no temporary file may be left behind"


def test_an_encoded_histogram_round_trips_to_the_same_distribution(tmp_path: Path) -> None:
    original = _full_run(tmp_path)
    loaded = load_results(original.save(tmp_path / "results.json"))
    metric = loaded.tests[0].metrics["append_latency"]

    decoded = metric.decoded_histogram()

    reference = _latency_histogram(range(1_000, 101_000, 7))
    assert decoded is not None
    assert decoded.get_total_count() == reference.get_total_count()
    assert decoded.get_value_at_percentile(99.9) == reference.get_value_at_percentile(99.9)
    assert metric.target_met is True


def test_target_operators_compare_the_measured_value() -> None:
    assert Target("<=", 10).met_by(10) and not Target("<", 10).met_by(10)
    assert Target(">=", 10_000).met_by(10_001) and not Target(">", 10_000).met_by(9_999)
    with pytest.raises(ResultsSchemaError, match=r"target\.op"):
        Target("~", 1)


@pytest.mark.parametrize(("version", "message"), [(0, "older"), (SCHEMA_VERSION + 1, "newer"),
                                                  (None, "missing or not an integer"), ("1", "not an integer")])
def test_a_schema_version_other_than_the_current_one_is_refused(tmp_path: Path, version: object,
                                                                message: str) -> None:
    document = _full_run(tmp_path).to_dict()
    document["schema_version"] = version
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))

    with pytest.raises(ResultsSchemaError, match=message):
        load_results(path)


def _mutated(tmp_path: Path, mutate: object) -> Path:
    document = _full_run(tmp_path).to_dict()
    mutate(document)  # type: ignore[operator]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["tests"][0]["metrics"]["throughput"].update(direction="up"), r"metrics\.throughput\.direction"),
    (lambda d: d["tests"][0]["metrics"]["throughput"].pop("unit"), r"throughput\.unit: required field"),
    (lambda d: d["tests"][0]["metrics"]["throughput"].update(samples=[1, "2"]), r"samples\[1\]"),
    (lambda d: d["tests"][0]["metrics"]["append_latency"].update(histogram="not-a-histogram"),
     "not a valid encoded HdrHistogram"),
    (lambda d: d["tests"][0].update(outcome="green"), "outcome"),
    (lambda d: d["tests"][0]["timelines"][0]["series"]["p99"].pop(), "has 2 points but t has 3"),
    (lambda d: d["tests"][0]["faults"][0].update(window=[2.0, 1.0]), "window ends before it starts"),
    (lambda d: d["tests"][0]["faults"][0].update(proven="yes"), r"faults\[0\]\.proven"),
    (lambda d: d["tests"][0]["verdicts"][0]["counts"].update(lost=0.5), r"counts\.lost"),
    (lambda d: d["run"].update(started="yesterday"), "ISO 8601"),
    (lambda d: d["run"].update(verdict="meh"), r"run\.verdict"),
    (lambda d: d["environment"].pop("cpu_model"), "cpu_model"),
    (lambda d: d["chaos_matrix"]["cells"]["sigkill"].update(prefix="maybe"), "chaos_matrix"),
    (lambda d: d["chaos_matrix"]["cells"].update(power_cut={}), "not listed in faults"),
    (lambda d: d["memory"]["samples"].append([1.0]), r"memory\.samples\[2\]"),
    (lambda d: d["chaos_matrix"]["counts"]["sigkill"]["no_lost_ack"].update(cases="3"), r"no_lost_ack\.cases"),
    (lambda d: d["skipped_mechanisms"].append({"mechanism": "x"}), r"skipped_mechanisms\[1\]\.reason"),
    (lambda d: d["tests"][0]["metrics"]["append_latency"].update(histogram_unit=9), "histogram_unit"),
    (lambda d: d.update(kind="testkit-baseline"), "is this a baseline file"),
    (lambda d: d.pop("tests"), r"results\.tests: required field"),
])
def test_a_malformed_document_names_the_offending_field(tmp_path: Path, mutate: object, message: str) -> None:
    with pytest.raises(ResultsSchemaError, match=message):
        load_results(_mutated(tmp_path, mutate))


def test_unreadable_and_non_json_files_raise_the_schema_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsSchemaError, match="cannot read"):
        load_results(tmp_path / "missing.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{ not json")
    with pytest.raises(ResultsSchemaError, match="not valid JSON"):
        load_results(garbage)
    garbage.write_text("[1, 2, 3]")
    with pytest.raises(ResultsSchemaError, match="must be a JSON object"):
        load_results(garbage)


def test_a_non_finite_number_is_refused_when_saving(tmp_path: Path) -> None:
    results = _full_run(tmp_path)
    results.tests[0].metrics["throughput"].samples = [1.0, float("nan")]

    with pytest.raises(ResultsSchemaError, match="NaN or infinity"):
        results.save(tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists()


def test_constructors_refuse_values_outside_the_schema() -> None:
    with pytest.raises(ResultsSchemaError, match="direction"):
        Metric(1.0, "ms", "sideways")  # type: ignore[arg-type]
    with pytest.raises(ResultsSchemaError, match="finite number"):
        Metric(float("inf"), "ms", "lower")
    with pytest.raises(ResultsSchemaError, match="outcome"):
        TestRecord("t", "flaky", 1.0)


# ------------------------------------------------------------------------------------------------ fingerprint


def test_the_fingerprint_describes_this_machine_and_its_key_is_stable(tmp_path: Path) -> None:
    first, second = machine_fingerprint(tmp_path), machine_fingerprint(tmp_path)

    assert first.key == second.key and len(first.key) == 16
    assert first.logical_cores >= 1 and first.memory_bytes > 0 and first.cpu_model
    assert first.filesystem != "unknown", "the file system of a real directory must be found"
    assert MachineFingerprint.from_dict(first.to_dict()) == first


def test_the_key_ignores_host_name_and_boot_noise_but_not_hardware(tmp_path: Path) -> None:
    here = machine_fingerprint(tmp_path)
    renamed = dataclasses.replace(here, hostname="ci-runner-7", memory_bytes=here.memory_bytes - 8 * 1024**2,
                                  kernel=here.kernel + "-patch9", filesystem_path="/elsewhere")
    other_cpu = dataclasses.replace(here, cpu_model="Some Other CPU", logical_cores=here.logical_cores * 2)
    other_fs = dataclasses.replace(here, filesystem="tmpfs" if here.filesystem != "tmpfs" else "ext4")

    assert renamed.key == here.key
    assert other_cpu.key != here.key
    assert set(here.differences(other_cpu)) == {"cpu_model", "logical_cores"}
    assert other_fs.key != here.key


def test_the_file_system_of_a_path_is_the_one_it_is_mounted_on(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("/dev/shm does not exist on this system")
    assert machine_fingerprint(shm).filesystem == "tmpfs"


def test_a_fingerprint_with_missing_or_mistyped_fields_is_refused(tmp_path: Path) -> None:
    document = machine_fingerprint(tmp_path).to_dict()
    with pytest.raises(FingerprintError, match="logical_cores"):
        MachineFingerprint.from_dict({**document, "logical_cores": "two"})
    del document["kernel"]
    with pytest.raises(FingerprintError, match="kernel"):
        MachineFingerprint.from_dict(document)
