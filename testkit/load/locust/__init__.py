"""Distributed load on Locust with the kit's data, intended-time latency and results.

``locustfile.py`` holds the users (one simulated agent each, from ``testkit.data`` sessions) and the
master/worker plumbing; start it with ``python -m testkit.load.locust`` and Locust's own options plus
the ``--testkit-*`` ones (the same on master and every worker)::

    python -m testkit.load.locust --master --headless -u 100 -r 100 --testkit-run-time 10m --expect-workers 2 \\
        --host http://127.0.0.1:8080 --testkit-tokens tokens.txt --testkit-out run/ --testkit-user-rate 100
    python -m testkit.load.locust --worker --master-host MASTER --testkit-tokens tokens.txt --testkit-out run/ ...
    python -m testkit.load.locust.verify --out run/ --host http://127.0.0.1:8080 --token-file reader.token

The master writes ``run/results.json`` (the kit's schema: the HTML report and regression gate read it);
``verify`` adds the history verdict (every acknowledged write found by id). This package itself does
not import Locust (Locust monkey-patches the process with gevent on import): only the locustfile does.
"""

from testkit.load.locust.agents import AgentTraffic, Request
from testkit.load.locust.plan import LocustPlan, PlanError
from testkit.load.locust.recording import RunAggregate, WorkerRecorder
from testkit.load.locust.run_results import ADR_004_TARGETS_MS, RESULTS_FILE, build_results

__all__ = [
    "ADR_004_TARGETS_MS",
    "RESULTS_FILE",
    "AgentTraffic",
    "LocustPlan",
    "PlanError",
    "Request",
    "RunAggregate",
    "WorkerRecorder",
    "build_results",
]
