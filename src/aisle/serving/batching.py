"""Group commit for event batches: POSTs that arrive while an import runs go in together.

An import has a fixed cost (~0.1 s here: the ledger, the store's round trips, profiling and
drift) whatever its size, so senders posting at once would each pay it in turn behind the
store's lock. Instead the first to arrive imports its batch; those that arrive meanwhile wait,
and the next of them imports all the waiting batches as one, up to ``max_records``. Each
sender still gets its own answer: counts, reasons and rejected records by their position in
its own body. Senders answered together post again together, so when several were posting
at once the next group lingers a moment for all of their next batches. A lone sender sees no
difference and no delay.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

Batch = TypeVar("Batch")
Answer = TypeVar("Answer")


@dataclass
class _Waiting(Generic[Batch, Answer]):
    batch: Batch
    size: int
    answer: Future[Answer]


class GroupCommit(Generic[Batch, Answer]):
    """Runs ``commit`` over the batches waiting together; one commit at a time.

    ``commit`` takes the batches in arrival order and returns one answer per batch (an
    exception stands for that batch's failure). If it raises, the batches of that group are
    committed one by one, so that one sender's bad batch fails only that sender.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[Batch]], Sequence[Answer | BaseException]],
        *,
        max_records: int,
        linger_seconds: float = 0.05,
    ) -> None:
        self._commit = commit
        self.max_records = max_records
        self.linger_seconds = linger_seconds
        self._waiting: list[_Waiting[Batch, Answer]] = []
        self._waiting_lock = threading.Lock()
        self._arrived = threading.Condition(self._waiting_lock)
        self._committing = threading.Lock()
        self._in_flight = 0  # submits under way
        self._peak = 0  # the most under way at once since the last group was taken

    def submit(self, batch: Batch, size: int) -> Answer:
        """Commit ``batch`` (of ``size`` records), alone or with others; its answer."""
        mine: _Waiting[Batch, Answer] = _Waiting(batch, size, Future())
        with self._arrived:
            self._waiting.append(mine)
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            self._arrived.notify_all()
        try:
            while not mine.answer.done():
                with self._committing:
                    if mine.answer.done():  # a commit that ran while this one waited took it
                        break
                    self._linger()
                    self._run(self._take())
        finally:
            with self._arrived:
                self._in_flight -= 1
        return mine.answer.result()

    def _linger(self) -> None:
        """When several senders were posting at once since the last group was taken, the
        others' next batches are on their way (answered together, they post again together):
        wait until as many batches wait, ``linger_seconds`` at most. A lone sender never
        waits."""
        expected = self._peak
        if expected < 2:
            return
        deadline = time.monotonic() + self.linger_seconds
        with self._arrived:
            while len(self._waiting) < expected and (
                sum(w.size for w in self._waiting) < self.max_records
            ):
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    return

    def _take(self) -> list[_Waiting[Batch, Answer]]:
        """The longest run of waiting batches, oldest first, within ``max_records`` (at least
        one)."""
        with self._waiting_lock:
            total, count = 0, 0
            for waiting in self._waiting:
                if count and total + waiting.size > self.max_records:
                    break
                total += waiting.size
                count += 1
            group, self._waiting = self._waiting[:count], self._waiting[count:]
            self._peak = self._in_flight
        return group

    def _run(self, group: list[_Waiting[Batch, Answer]]) -> None:
        if not group:
            return
        try:
            answers = list(self._commit([w.batch for w in group]))
        except BaseException as error:
            if len(group) == 1:
                group[0].answer.set_exception(error)
                return
            for waiting in group:  # the group failed as a whole: each on its own
                self._run([waiting])
            return
        for waiting, answer in zip(group, answers, strict=True):
            if isinstance(answer, BaseException):
                waiting.answer.set_exception(answer)
            else:
                waiting.answer.set_result(answer)
