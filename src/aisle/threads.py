"""Torch's thread count for the span of some work (a fit, a query), restored after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch threads (None: leave torch's), then restore the previous count.

    Small sequence and tower networks gain little from more threads, and on a busy machine
    extra threads only contend, so models fit on one thread by default."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
