"""Group commit for event batches: POSTs that arrive while an import runs go in together.

An import has a fixed cost (~0.1 s here: the ledger, the store's round trips, profiling and
drift) whatever its size, so senders posting at once would each pay it in turn behind the
store's lock. Instead the first to arrive imports its batch; those that arrive meanwhile wait,
and the next of them imports all the waiting batches as one, up to ``max_records``. Each
sender still gets its own answer: counts, reasons and rejected records by their position in
its own body. A lone sender sees no difference and no delay.
"""

from __future__ import annotations

import threading
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
    ) -> None:
        self._commit = commit
        self.max_records = max_records
        self._waiting: list[_Waiting[Batch, Answer]] = []
        self._waiting_lock = threading.Lock()
        self._committing = threading.Lock()
        self.groups = 0  # commits run, for the metrics
        self.batches = 0  # batches committed

    def submit(self, batch: Batch, size: int) -> Answer:
        """Commit ``batch`` (of ``size`` records), alone or with others; its answer."""
        mine: _Waiting[Batch, Answer] = _Waiting(batch, size, Future())
        with self._waiting_lock:
            self._waiting.append(mine)
        while not mine.answer.done():
            with self._committing:
                if mine.answer.done():  # a commit that ran while this one waited took it
                    break
                self._run(self._take())
        return mine.answer.result()

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
        return group

    def _run(self, group: list[_Waiting[Batch, Answer]]) -> None:
        if not group:
            return
        self.groups += 1
        self.batches += len(group)
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
