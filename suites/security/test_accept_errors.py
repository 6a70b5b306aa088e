"""Descriptor exhaustion at accept(): one warning per interval with a count, never a traceback per attempt."""

from __future__ import annotations

import asyncio
import errno
import logging

import pytest

from lighthouse.server.limits import ConnectionLimits, throttle_accept_errors

pytestmark = [pytest.mark.smoke, pytest.mark.ci]


def test_accept_failures_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        throttle_accept_errors(loop, interval_seconds=3600)
        with caplog.at_level(logging.DEBUG):
            for _ in range(1000):  # what asyncio reports for every failed accept() under EMFILE
                loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                             "exception": OSError(errno.EMFILE, "Too many open files")})
            loop.call_exception_handler({"message": "something else entirely"})
    finally:
        loop.close()
    accept = [r for r in caplog.records if "accept()" in r.getMessage()]
    assert len(accept) == 1 and accept[0].levelno == logging.WARNING and accept[0].exc_info is None
    assert "Too many open files" in accept[0].getMessage()
    assert any("something else entirely" in r.getMessage() for r in caplog.records), "other errors still reach the log"


def test_the_connection_cap_leaves_descriptors_for_the_store() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = ConnectionLimits(max_connections=10**6).effective_max_connections()
    assert cap < soft or soft == resource.RLIM_INFINITY
    with pytest.raises(ValueError):
        ConnectionLimits(header_timeout_seconds=0)
