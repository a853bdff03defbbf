"""Group commit: batches that wait together are committed together, each answered alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import polars as pl
import pytest

from aisle.domain import Fate
from aisle.ingest.readers import RawBatch
from aisle.serving.batching import GroupCommit
from aisle.serving.ingesting import Span, answer_for, batch_size, merge
from aisle.storage.ledger import ImportResult


class Recorder:
    """A commit that takes its time and remembers each group it was given."""

    def __init__(self, seconds: float = 0.2, fail_on: str | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.groups: list[list[str]] = []
        self.running = threading.Event()

    def __call__(self, batches: Sequence[str]) -> list[str]:
        self.running.set()
        self.groups.append(list(batches))
        time.sleep(self.seconds)
        if self.fail_on is not None and self.fail_on in batches:
            raise ValueError(f"cannot commit {self.fail_on}")
        return [batch.upper() for batch in batches]


def _submit_all(
    commit: GroupCommit[str, str], recorder: Recorder, batches: list[str]
) -> dict[str, str | BaseException]:
    """The first batch alone, then the rest while it commits."""
    answers: dict[str, str | BaseException] = {}

    def send(batch: str) -> None:
        try:
            answers[batch] = commit.submit(batch, len(batch))
        except Exception as error:
            answers[batch] = error

    first = threading.Thread(target=send, args=(batches[0],))
    first.start()
    assert recorder.running.wait(5)
    others = [threading.Thread(target=send, args=(b,)) for b in batches[1:]]
    for thread in others:
        thread.start()
    time.sleep(0.05)  # all of them waiting behind the first commit
    for thread in [first, *others]:
        thread.join(10)
    return answers


def test_batches_waiting_behind_a_commit_go_in_one_group_and_each_gets_its_answer() -> None:
    recorder = Recorder()
    commit = GroupCommit(recorder, max_records=1_000)
    answers = _submit_all(commit, recorder, ["a", "bb", "ccc", "dddd"])
    assert answers == {"a": "A", "bb": "BB", "ccc": "CCC", "dddd": "DDDD"}
    assert recorder.groups[0] == ["a"]
    assert sorted(recorder.groups[1]) == ["bb", "ccc", "dddd"] and len(recorder.groups) == 2


def test_a_group_holds_no_more_records_than_allowed() -> None:
    recorder = Recorder(seconds=0.1)
    commit = GroupCommit(recorder, max_records=5)
    answers = _submit_all(commit, recorder, ["x", "aaa", "bbb", "cc"])
    assert answers == {"x": "X", "aaa": "AAA", "bbb": "BBB", "cc": "CC"}
    assert all(sum(len(b) for b in group) <= 5 for group in recorder.groups[1:])
    assert sorted(b for group in recorder.groups for b in group) == ["aaa", "bbb", "cc", "x"]


def test_a_failing_batch_fails_its_own_sender_only() -> None:
    recorder = Recorder(seconds=0.1, fail_on="bad")
    commit = GroupCommit(recorder, max_records=1_000)
    answers = _submit_all(commit, recorder, ["first", "good", "bad", "fine"])
    assert answers["first"] == "FIRST" and answers["good"] == "GOOD" and answers["fine"] == "FINE"
    assert isinstance(answers["bad"], ValueError)
    # the group failed as a whole, then each of its batches was committed alone
    assert ["bad"] in recorder.groups and ["good"] in recorder.groups


def test_a_lone_sender_commits_at_once() -> None:
    recorder = Recorder(seconds=0.0)
    commit = GroupCommit(recorder, max_records=10)
    assert [commit.submit(b, 1) for b in "xyz"] == ["X", "Y", "Z"]
    assert recorder.groups == [["x"], ["y"], ["z"]]


def _raw(lines: list[int], values: list[str], malformed: list[int] = ()) -> RawBatch:  # type: ignore[assignment]
    frame = pl.DataFrame({"item_id": values, "_line": lines}, schema_overrides={"_line": pl.Int64})
    bad = pl.DataFrame(
        {
            "_line": list(malformed),
            "error": ["not an object"] * len(malformed),
            "text": ["5"] * len(malformed),
        },
        schema={"_line": pl.Int64, "error": pl.String, "text": pl.String},
    )
    return RawBatch(frame, "POST /v1/events", "", "json", bad)


def test_merged_requests_keep_their_records_apart() -> None:
    first = _raw([1, 3], ["a", "b"], malformed=[2])
    second = _raw([1, 2], ["c", "d"])
    merged, spans = merge([first, second])
    assert [batch_size(first), batch_size(second)] == [3, 2]
    assert spans == [Span(0, 3), Span(3, 2)]
    assert merged.frame["_line"].to_list() == [1, 3, 4, 5]
    assert merged.frame["item_id"].to_list() == ["a", "b", "c", "d"]
    assert merged.malformed["_line"].to_list() == [2]


def test_each_request_is_answered_from_its_own_records() -> None:
    result = ImportResult(7, "events", "POST /v1/events", "canonical")
    result.records = pl.DataFrame(
        {
            "line": [1, 2, 3, 4, 5, 6],
            "fate": [
                Fate.ACCEPTED.value,
                Fate.QUARANTINED.value,
                Fate.DUPLICATE.value,
                Fate.QUARANTINED.value,
                Fate.ACCEPTED.value,
                Fate.QUARANTINED.value,
            ],
            "reasons": [
                None,
                ["malformed_row"],
                None,
                ["unknown_item"],
                None,
                ["unknown_item", "bad_timestamp"],
            ],
            "detail": [None, "not an object", None, "field 'item_id'", None, "two"],
        }
    )
    first, second = answer_for(result, Span(0, 3)), answer_for(result, Span(3, 3))
    assert (first.input, first.accepted, first.quarantined, first.duplicates) == (3, 1, 1, 1)
    assert first.reasons == {"malformed_row": 1}
    assert first.rejected == [{"index": 2, "reasons": ["malformed_row"], "detail": "not an object"}]
    assert (second.input, second.accepted, second.quarantined, second.duplicates) == (3, 1, 2, 0)
    assert second.reasons == {"unknown_item": 2, "bad_timestamp": 1}
    assert [r["index"] for r in second.rejected] == [1, 3]


@pytest.mark.parametrize("size", [0, 4])
def test_an_answer_counts_every_record_of_its_request(size: int) -> None:
    result = ImportResult(1, "events", "POST /v1/events", "canonical")
    result.records = pl.DataFrame(
        {
            "line": list(range(1, size + 1)),
            "fate": [Fate.ACCEPTED.value] * size,
            "reasons": [None] * size,
            "detail": [None] * size,
        },
        schema={
            "line": pl.Int64,
            "fate": pl.String,
            "reasons": pl.List(pl.String),
            "detail": pl.String,
        },
    )
    answer = answer_for(result, Span(0, size))
    assert answer.input == answer.accepted == size and answer.rejected == []


def test_after_a_group_the_next_lingers_for_senders_posting_again() -> None:
    recorder = Recorder(seconds=0.3)  # long enough for threads started late on a busy machine
    commit = GroupCommit(recorder, max_records=1_000, linger_seconds=0.5)
    _submit_all(commit, recorder, ["a", "b", "c", "d"])  # a alone, then b, c, d together
    assert len(recorder.groups[-1]) == 3
    answers: dict[str, str] = {}

    def send(batch: str, delay: float) -> None:
        time.sleep(delay)
        answers[batch] = commit.submit(batch, 1)

    threads = [
        threading.Thread(target=send, args=(b, d)) for b, d in [("e", 0), ("f", 0.05), ("g", 0.1)]
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {"e": "E", "f": "F", "g": "G"}
    assert sorted(recorder.groups[-1]) == ["e", "f", "g"]  # one group, not e alone
    assert time.monotonic() - started < 0.75  # it stopped waiting once the three were in
