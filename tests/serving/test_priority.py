"""Background work niced below the requests: the work's thread only, results and errors back."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from aisle.serving.priority import run_niced


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_the_work_runs_nicer_and_the_caller_keeps_its_priority() -> None:
    before = _niceness()
    seen = run_niced(_niceness, increment=5)
    assert seen == min(before + 5, 19)
    assert _niceness() == before


def test_results_and_errors_come_back_to_the_caller() -> None:
    assert run_niced(lambda: 42) == 42

    def broken() -> None:
        raise ValueError("no data")

    with pytest.raises(ValueError, match="no data"):
        run_niced(broken)
