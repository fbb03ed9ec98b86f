"""Feast repository operations used by the CLI, training and tests.

The folder ``features/`` is a plain Feast repository: ``feast apply`` and
``feast materialize`` work there as usual. These helpers do the same through
Feast's Python API, and can lay out a copy of the repository elsewhere (a
workspace) so that tests and demos never touch the checked-in folder's data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from feast import FeatureStore
from feast.repo_config import load_repo_config
from feast.repo_operations import apply_total

from couponrank.clock import utc_now

REPO_DIR = Path(__file__).resolve().parent
REPO_FILES = ("definitions.py", "feature_store.yaml", "feature_store.redis.yaml", ".feastignore")
ONLINE_STORES = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}


def yaml_for(repo: Path, online: str = "sqlite") -> Path:
    if online not in ONLINE_STORES:
        raise ValueError(f"unknown online store {online!r}; choose one of {', '.join(ONLINE_STORES)}")
    return Path(repo) / ONLINE_STORES[online]


def init_workspace(dest: Path) -> Path:
    """Copy the repository definitions (not its data) into ``dest``; return it."""
    dest = Path(dest)
    (dest / "data").mkdir(parents=True, exist_ok=True)
    if dest.resolve() != REPO_DIR:
        for name in REPO_FILES:
            shutil.copy2(REPO_DIR / name, dest / name)
    return dest


def store(repo: Path, online: str = "sqlite") -> FeatureStore:
    return FeatureStore(repo_path=str(repo), fs_yaml_file=yaml_for(repo, online))


@contextlib.contextmanager
def _inside(repo: Path):
    """Feast imports repo files by their path relative to the working directory,
    as its CLI runs inside the repo: do the same, and forget a previously imported
    definitions module so that one process can apply several workspaces."""
    cwd, path = os.getcwd(), list(sys.path)
    sys.modules.pop("definitions", None)
    os.chdir(repo)
    sys.path.insert(0, str(repo))
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        sys.modules.pop("definitions", None)


def apply(repo: Path, online: str = "sqlite") -> None:
    """What `feast apply` does: register every object in definitions.py."""
    repo = Path(repo).resolve()
    config = load_repo_config(repo, yaml_for(repo, online))
    with _inside(repo):
        apply_total(config, repo, skip_source_validation=False)


# Our views have no TTL, so a full materialization must start before any source row.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def materialize(repo: Path, end: datetime | None = None, online: str = "sqlite",
                start: datetime = EPOCH) -> None:
    """Push the latest feature row per entity in [start, end] into the online store."""
    fs = store(repo, online)
    fs.materialize(start_date=start, end_date=end or utc_now())


def last_snapshot(repo: Path):
    """The latest row stamp over the snapshot sources under ``<repo>/data`` (a
    pandas Timestamp, UTC): a request at or after it sees every feature. The
    coupon_attributes source is left out: its rows are stamped with each coupon's
    valid_from, which may lie in the future."""
    import pandas as pd

    return max(pd.read_parquet(p, columns=["event_timestamp"]).event_timestamp.max()
               for p in (Path(repo) / "data").glob("*.parquet") if p.stem != "coupon_attributes")
