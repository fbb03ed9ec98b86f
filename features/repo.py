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
REPO_FILES = ("definitions.py", "feature_store.yaml", "feature_store.redis.yaml", ".feastignore", "membership.yaml")
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


class CopiedRegistryError(RuntimeError):
    """The registry records online-store tables of another repository and cannot
    be set aside safely (it is not this repository's own file)."""


def _inside_dir(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _online_of(config) -> str:
    return "sqlite" if config.online_store.type == "sqlite" else "redis"


def _own_sqlite_stores(repo: Path, config) -> set[Path]:
    """The SQLite database of each of this repository's configurations that uses one."""
    own = set()
    for name in ONLINE_STORES:
        try:
            cfg = config if name == _online_of(config) else load_repo_config(repo, yaml_for(repo, name))
        except Exception:  # e.g. the Redis one without $COUPONRANK_REDIS: not SQLite anyway
            continue
        if cfg.online_store.type == "sqlite":
            path = Path(cfg.online_store.path)
            own.add(Path(os.path.realpath(path if path.is_absolute() else repo / path)))
    return own


def _foreign_sqlite_tables(repo: Path, config) -> list[tuple[str, Path]]:
    """(table, database file) for each SQLite table of this project that the registry
    records in a file outside ``repo`` and other than this repository's configured store.

    Feast records every online table with the absolute path of its database
    (SqliteTable in the registry's ``infra``); a workspace copied with ``cp -r`` carries
    a registry whose tables live in the original. Reads the registry's proto only:
    ``registry.get_infra()`` would build SqliteTable objects, and each opens (and if
    need be creates) the database it names."""
    from feast.infra.infra_object import SQLITE_INFRA_OBJECT_CLASS_TYPE

    file = _registry_file(repo, config)
    if file is not None and not file.exists():
        return []  # nothing registered yet
    infra = FeatureStore(repo_path=str(repo), config=config).registry.proto().infra
    own = _own_sqlite_stores(repo, config)
    foreign = []
    for obj in infra.infra_objects:
        if obj.infra_object_class_type != SQLITE_INFRA_OBJECT_CLASS_TYPE:
            continue
        table = obj.sqlite_table
        if not table.name.startswith(f"{config.project}_"):
            continue  # another project's table: Feast's infra diff leaves it alone too
        path = Path(table.path)
        path = Path(os.path.realpath(path if path.is_absolute() else repo / path))
        if path not in own and not _inside_dir(path, repo):
            foreign.append((table.name, path))
    return foreign


def _registry_file(repo: Path, config) -> Path | None:
    """The registry's local file (as Feast's FileRegistryStore resolves it), or None
    for a registry that is not a local file (SQL, remote, object storage)."""
    reg = config.registry
    if reg.registry_type != "file" or "://" in str(reg.path):
        return None
    path = Path(reg.path)
    return Path(os.path.realpath(path if path.is_absolute() else repo / path))


def _set_aside_copied_registry(repo: Path, config) -> Path | None:
    """If the registry records SQLite tables of another repository, move it to
    ``<registry>.copied-<n>`` and return the new name; see apply()."""
    foreign = _foreign_sqlite_tables(repo, config)
    if not foreign:
        return None
    file = _registry_file(repo, config)
    paths = sorted({str(p) for _, p in foreign})
    if file is None or not _inside_dir(file, repo):
        where = file or config.registry.path
        raise CopiedRegistryError(
            f"the registry {where} records online-store tables of another repository "
            f"({', '.join(paths)}); applying here would drop them there. It is not this "
            f"repository's own file, so it was left as it is: give this repository its own "
            f"registry (registry: data/registry.db in {yaml_for(repo, _online_of(config)).name}) "
            f"or apply from the repository that owns those tables.")
    n = 1
    while file.with_name(f"{file.name}.copied-{n}").exists():
        n += 1
    aside = file.rename(file.with_name(f"{file.name}.copied-{n}"))
    print(f"{file} came from another workspace (its online tables are in {', '.join(paths)}): "
          f"moved it to {aside.name}, registering definitions.py afresh against this workspace's "
          f"own online store; the other workspace is not touched", file=sys.stderr)
    return aside


def apply(repo: Path, online: str = "sqlite") -> None:
    """What `feast apply` does: register every object in definitions.py, but never
    touching another workspace's online store.

    A workspace copied as a whole (``cp -r ws ws2``) carries ws's registry, which
    records each SQLite online table with ws's absolute database path. Feast's apply
    sees the path change as an update and drops the recorded tables, that is ws's
    (feast/diff/infra_diff.py InfraDiff.update tears down the current object). So
    before applying, the registry's recorded infra is read; if it holds tables of this
    project in a database outside this repository (and not the store this repository
    is configured with), the registry was copied:

    * it is this repository's own file (the usual case: ``data/registry.db``): it is
      moved aside to ``registry.db.copied-<n>`` with one line on stderr, and the apply
      registers everything from definitions.py afresh against this repository's own
      store. The copy just works (the online values copied along with
      ``data/online_store.db`` stay readable; materialize refreshes them) and the
      original is never opened. Nothing is lost: every object the registry holds
      comes from definitions.py (only Feast's log of past materialization intervals
      goes, which nothing here reads), and the old file is kept.
    * it is not (a shared registry configured by an absolute path or a URL): moving it
      would break the repositories sharing it, so CopiedRegistryError is raised
      naming the registry and the foreign database, and nothing is applied.

    Redis needs no such check: its keys are per project on the server the
    configuration names, not per registry, and Feast applies Redis stores without an
    infra diff (only views removed from definitions.py are deleted); the check still
    runs with ``online="redis"`` so that a later SQLite apply finds a clean registry.

    Before either, every local Parquet file a FileSource of the repository names is
    checked (schemas only): a timestamp column in nanoseconds (DuckDB, the offline
    store, fails at materialize with ``ConversionException ... TIMESTAMPTZ_NS ->
    TIMESTAMP``) or without a zone (ambiguous) raises OfflineSourceError naming the file
    and column, and nothing is applied or moved.
    """
    repo = Path(repo).resolve()
    config = load_repo_config(repo, yaml_for(repo, online))
    _check_offline_sources(repo)
    _set_aside_copied_registry(repo, config)
    with _inside(repo):
        apply_total(config, repo, skip_source_validation=False)


def _check_offline_sources(repo: Path) -> None:
    """OfflineSourceError for a Parquet source of the repository's definitions with a
    nanosecond or zone-less timestamp column (couponrank.features.custom)."""
    from feast.repo_operations import parse_repo

    from couponrank.features.custom import check_parquet_sources, parquet_sources

    with _inside(repo):  # relative source paths resolve against the repository, as in Feast's apply
        check_parquet_sources(parquet_sources(parse_repo(repo).data_sources))


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
    valid_from, which may lie in the future; so are files without stamps (the item
    catalogue)."""
    import pandas as pd

    import pyarrow.parquet as pq

    return max(pd.read_parquet(p, columns=["event_timestamp"]).event_timestamp.max()
               for p in (Path(repo) / "data").glob("*.parquet")
               if p.stem != "coupon_attributes" and "event_timestamp" in pq.read_schema(p).names)


def built_until(repo: Path):
    """The end of what the feature snapshots hold (a pandas Timestamp, UTC): every event
    before it. From ``<repo>/data/build.json`` (written by build-features), else the
    latest snapshot stamp (a workspace built before the file existed)."""
    import json

    import pandas as pd

    path = Path(repo) / "data" / "build.json"
    if path.is_file():
        return pd.Timestamp(json.loads(path.read_text())["end"])
    return last_snapshot(repo)
