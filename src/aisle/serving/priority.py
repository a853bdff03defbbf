"""Background work at a lower scheduling priority than the requests it shares a core with."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Final, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How much nicer a retrain's thread is than the server's (Linux: 0 normal, 19 the nicest).
RETRAIN_NICE: Final = 10


def run_niced(work: Callable[[], T], increment: int = RETRAIN_NICE, name: str = "aisle-niced") -> T:
    """``work()`` in a thread of its own whose niceness is raised by ``increment``, so that
    requests on the same core come first; its result, or its exception, returned here.

    Niceness belongs to a Linux thread and cannot be lowered again without privileges, hence
    a fresh thread rather than the caller's. Where threads cannot be niced, work runs as is."""
    outcome: dict[str, object] = {}

    def niced() -> None:
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        except (AttributeError, OSError) as error:  # not Linux, or not allowed
            log.debug("background work runs at normal priority: %s", error)
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the caller, raised there
            outcome["error"] = error

    thread = threading.Thread(target=niced, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
