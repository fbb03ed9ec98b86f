"""A workspace copied as a whole (`cp -r ws ws2`) and applied in the copy.

The copy carries ws's data/registry.db, which records every SQLite online table with
ws's absolute database path. Plain Feast (apply_total) sees the path change as an
update and drops the recorded tables, that is the original's: the original loses its
whole online store. `couponrank apply` must leave the original alone and give the copy
its own, working store. Real Feast, the tiny generated data, explicit materialization
ends (no wall clock)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from couponrank.cli import main
from couponrank.features import repo

USER_FEATURES = ["user_activity:user_views_30d", "user_activity:user_last_event_unix"]


def _tables(ws: Path) -> list[str]:
    con = sqlite3.connect(ws / "data" / "online_store.db")
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        con.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _end(ws: Path):
    return (repo.last_snapshot(ws) + pd.Timedelta(seconds=1)).to_pydatetime()


def _online(ws: Path, user_id: str) -> dict:
    fs = repo.store(ws)
    got = fs.get_online_features(features=USER_FEATURES, entity_rows=[{"user_id": user_id}]).to_dict()
    return {k: v[0] for k, v in got.items() if k != "user_id"}


def _expected(ws: Path) -> tuple[str, dict]:
    """The smallest user id and its latest user_activity row (what materialize loads)."""
    df = pd.read_parquet(ws / "data" / "user_activity.parquet")
    uid = min(df.user_id)
    last = df[df.user_id == uid].sort_values("event_timestamp").iloc[-1]
    return uid, {"user_views_30d": float(last.user_views_30d),
                 "user_last_event_unix": float(last.user_last_event_unix)}


@pytest.fixture
def original(tmp_path, generated_features):
    """A private copy of the session's tiny workspace (definitions and Parquet
    sources only), applied and materialized: the workspace a user then copies."""
    _, session_ws = generated_features
    ws = tmp_path / "ws"
    shutil.copytree(session_ws, ws, ignore=shutil.ignore_patterns("registry.db*", "online_store.db*"))
    repo.apply(ws)
    repo.materialize(ws, end=_end(ws))
    assert len(_tables(ws)) >= 6
    return ws


def test_plain_feast_apply_in_a_copy_drops_the_originals_tables(original, tmp_path):
    """The issue, reproduced with Feast's own apply (what `feast apply` runs): this is
    the hazard `couponrank apply` guards against. Should a Feast upgrade stop dropping
    them, this test fails and the guard in features/repo.py apply() may go."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    copy = tmp_path / "ws2"
    shutil.copytree(original, copy)
    config = load_repo_config(copy, copy / "feature_store.yaml")
    with repo._inside(copy):
        apply_total(config, copy, skip_source_validation=False)
    assert _tables(original) == []


def test_couponrank_apply_in_a_copy_leaves_the_original_alone(original, tmp_path, capsys):
    uid, expected = _expected(original)
    tables = _tables(original)
    assert _online(original, uid) == expected

    copy = tmp_path / "ws2"
    shutil.copytree(original, copy)
    before = {name: _digest(original / "data" / name) for name in ("online_store.db", "registry.db")}
    capsys.readouterr()

    rc = main(["apply", "--repo", str(copy)])
    err = capsys.readouterr().err

    # the original: same tables, same values
    assert _tables(original) == tables
    assert _online(original, uid) == expected

    assert rc == 0
    assert "registry.db.copied-1" in err and str(original.resolve() / "data" / "online_store.db") in err
    assert (copy / "data" / "registry.db.copied-1").exists()

    # the copy's registry now records the copy's own store only
    fs = repo.store(copy)
    paths = {obj.sqlite_table.path for obj in fs.registry.proto().infra.infra_objects}
    assert paths == {str(copy.resolve() / "data" / "online_store.db")}
    assert _tables(copy) == tables

    # the copy reads its own store: emptied, it has nothing; materialized, it has the values
    con = sqlite3.connect(copy / "data" / "online_store.db")
    with con:
        for name in tables:
            con.execute(f"DELETE FROM {name}")
    con.close()
    assert _online(copy, uid) == {k: None for k in expected}
    repo.materialize(copy, end=_end(copy))
    assert _online(copy, uid) == expected

    # applying the copy again is an ordinary apply: nothing more is set aside
    assert main(["apply", "--repo", str(copy)]) == 0
    assert "copied" not in capsys.readouterr().err
    assert sorted(p.name for p in (copy / "data").glob("registry.db*")) == ["registry.db", "registry.db.copied-1"]

    # and not a byte of the original changed
    assert {name: _digest(original / "data" / name) for name in before} == before
    assert _online(original, uid) == expected


def test_a_shared_registry_holding_another_workspaces_tables_is_refused(original, tmp_path, capsys):
    """A registry that is not the copy's own file (here: the original's, by absolute
    path) cannot be set aside without breaking the original: exit 2, nothing applied."""
    copy = tmp_path / "ws2"
    shutil.copytree(original, copy, ignore=shutil.ignore_patterns("registry.db*", "online_store.db*"))
    shared = (original / "data" / "registry.db").resolve()
    yaml = copy / "feature_store.yaml"
    text = yaml.read_text()
    assert "registry: data/registry.db" in text
    yaml.write_text(text.replace("registry: data/registry.db", f"registry: {shared}"))
    tables, digest = _tables(original), _digest(shared)
    capsys.readouterr()

    rc = main(["apply", "--repo", str(copy)])
    err = capsys.readouterr().err
    assert _tables(original) == tables
    assert rc == 2
    assert str(shared) in err and str(original.resolve() / "data" / "online_store.db") in err
    assert _digest(shared) == digest
    assert list((original / "data").glob("registry.db.copied-*")) == []
