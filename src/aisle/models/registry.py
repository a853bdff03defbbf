"""The model registry: every trained model is a version with its artifacts under
``home/registry/NAME/vN`` (arrays + ids + a JSON manifest) and a row in ``model_versions``.

One version per model name is in production; promoting another retires nothing but the old
production flag, so ``rollback`` can return to the previous one. Erasing a customer removes
them from every version at once and schedules the retrain that removes their influence on
item-side state.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from aisle.errors import AisleError, NotFoundError
from aisle.models import model_class
from aisle.models.base import MANIFEST, BaseRecommender
from aisle.storage import Store

REGISTRY = Path("registry")


def register(store: Store, model: BaseRecommender, metrics: dict[str, Any] | None = None) -> int:
    """Save a fitted model as the next version of its name (a candidate); returns the version."""
    with store.transaction():
        version = int(
            store.scalar(
                "SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE name = ?",
                [model.name],
            )
        )
        relative = REGISTRY / model.name / f"v{version}"
        folder = store.home / relative
        if folder.exists():
            shutil.rmtree(folder)  # left by a registration that did not commit
        model.save(folder)
        store.execute(
            "INSERT INTO model_versions VALUES (?, ?, ?, 'candidate', ?, ?, ?, ?, NULL)",
            [model.name, version, str(relative), datetime.now(UTC), model.report.data_hash,
             json.dumps(model.params, default=str), json.dumps(metrics or {}, default=str)],
        )  # fmt: skip
        store.execute(
            "UPDATE model_retrains SET done_at = ? WHERE name = ? AND done_at IS NULL",
            [datetime.now(UTC), model.name],
        )
    return version


def versions(store: Store, name: str | None = None) -> pl.DataFrame:
    """Every version (of one model, or all), newest first."""
    return store.query(
        "SELECT name, version, status, created_at, promoted_at, data_hash, params, metrics, path "
        "FROM model_versions WHERE ? IS NULL OR name = ? ORDER BY name, version DESC",
        [name, name],
    )


def _row(store: Store, name: str, version: int | None) -> dict[str, Any]:
    """One version's row: the given one, else production, else the newest."""
    rows = versions(store, name)
    if rows.height == 0:
        raise NotFoundError(f"no trained {name!r} model (run `aisle train --model {name}`)")
    if version is not None:
        rows = rows.filter(pl.col("version") == version)
        if rows.height == 0:
            raise NotFoundError(f"{name} has no version {version}")
        return rows.row(0, named=True)
    live = rows.filter(pl.col("status") == "production")
    return (live if live.height else rows).row(0, named=True)


def show(store: Store, name: str, version: int | None = None) -> dict[str, Any]:
    """A version's row and its manifest."""
    row = _row(store, name, version)
    manifest = json.loads((store.home / row["path"] / MANIFEST).read_text())
    return {**row, "params": json.loads(row["params"]), "metrics": json.loads(row["metrics"]),
            "manifest": manifest}  # fmt: skip


def load(store: Store, name: str, version: int | None = None) -> BaseRecommender:
    """A registered model (production unless a version is given; else the newest)."""
    row = _row(store, name, version)
    return model_class(name).load(store.home / row["path"])


def promote(store: Store, name: str, version: int) -> None:
    """Put a version in production; the previous one goes back to candidate."""
    _row(store, name, version)
    with store.transaction():
        store.execute(
            "UPDATE model_versions SET status = 'candidate' "
            "WHERE name = ? AND status = 'production'",
            [name],
        )
        store.execute(
            "UPDATE model_versions SET status = 'production', promoted_at = ? "
            "WHERE name = ? AND version = ?",
            [datetime.now(UTC), name, version],
        )


def rollback(store: Store, name: str) -> int:
    """Return to the version that was in production before the current one."""
    promoted = store.query(
        "SELECT version, status FROM model_versions WHERE name = ? AND promoted_at IS NOT NULL "
        "ORDER BY promoted_at DESC",
        [name],
    )
    earlier = promoted.filter(pl.col("status") != "production")
    if promoted.height == 0 or promoted["status"][0] != "production" or earlier.height == 0:
        raise AisleError(f"{name}: no earlier production version to roll back to")
    version = int(earlier["version"][0])
    promote(store, name, version)
    return version


def forget_user(store: Store, user_id: str, *, reason: str = "erasure") -> list[str]:
    """Remove a customer from every registered version at once (ids, training items, per-user
    state) and schedule a retrain of each model that knew them; returns those models' names."""
    touched: set[str] = set()
    for row in versions(store).iter_rows(named=True):
        folder = store.home / row["path"]
        model = model_class(row["name"]).load(folder)
        if not model.forget_user(user_id):
            continue
        staging = folder.with_name(folder.name + ".forgetting")
        if staging.exists():
            shutil.rmtree(staging)
        model.save(staging)
        shutil.rmtree(folder)
        staging.rename(folder)
        touched.add(row["name"])
    now = datetime.now(UTC)
    for name in sorted(touched):
        store.execute("INSERT INTO model_retrains VALUES (?, ?, ?, NULL)", [name, reason, now])
    return sorted(touched)


def retrains_due(store: Store) -> pl.DataFrame:
    """Retrains scheduled and not yet done."""
    return store.query(
        "SELECT name, reason, min(requested_at) AS since, count(*) AS requests "
        "FROM model_retrains WHERE done_at IS NULL GROUP BY name, reason ORDER BY name"
    )
