"""Offline evaluation of recommenders: the protocols of docs/EVALUATION.md, their metrics, the
runner behind `aisle evaluate` and its HTML report."""

from __future__ import annotations

from aisle.evaluation.protocols import PROTOCOLS, SPLITS, Ranking, Task, Truth
from aisle.evaluation.runner import EvaluationResult, ModelResult, evaluate

__all__ = [
    "PROTOCOLS",
    "SPLITS",
    "EvaluationResult",
    "ModelResult",
    "Ranking",
    "Task",
    "Truth",
    "evaluate",
]
