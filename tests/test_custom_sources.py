"""A feature engineer's own offline sources (features/custom.py): the builders of a
workspace's builders.py run by build-features and checked there; stale Parquet files
reported; and `couponrank apply` refusing sources the offline store cannot read (the
failure it used to leave to materialize: ConversionException ... TIMESTAMPTZ_NS)."""

from __future__ import annotations

import os
import shutil
import textwrap
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from couponrank.cli import main
from couponrank.features import repo
from couponrank.features.cleaning import clean_raw

END = datetime(2026, 8, 1, tzinfo=timezone.utc)  # after every row of the hand-made data

HEADER = '''
import pandas as pd

from couponrank.features.custom import offline_source
'''

# A per-user count of behaviour events, as daily snapshots; its timestamps in nanoseconds
# and in another zone, its keys categorical, no created_timestamp: all normalized.
GOOD = HEADER + '''

@offline_source("user_event_count")
def build(data):
    ev = data.behaviour_events
    day = ev["event_ts"].dt.floor("D") + pd.Timedelta(days=1)
    df = ev.assign(event_timestamp=day).groupby(["user_id", "event_timestamp"], observed=True).size()
    df = df.rename("events").reset_index()
    df["event_timestamp"] = df["event_timestamp"].astype("datetime64[ns, UTC]").dt.tz_convert("Europe/Berlin")
    df["events"] = df["events"].astype(float)
    return df
'''


def _workspace(tmp_path, builders: str | None = None, name="ws"):
    ws = repo.init_workspace(tmp_path / name)
    if builders is not None:
        (ws / "builders.py").write_text(textwrap.dedent(builders))
    return ws


def _build(raw, ws, capsys):
    code = main(["build-features", "--raw", str(raw), "--repo", str(ws), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_builder_writes_its_source_as_an_offline_source_must_be(handmade_raw, tmp_path, capsys):
    ws = _workspace(tmp_path, GOOD)
    code, out, err = _build(handmade_raw, ws, capsys)
    assert code == 0, err
    assert "user_event_count: " in out and "(builders.py)" in out
    path = ws / "data" / "user_event_count.parquet"
    schema = pq.read_schema(path)
    assert schema.field("user_id").type == pa.string()
    assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("created_timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("events").type == pa.float64()
    df = pd.read_parquet(path)
    # the same instants, now in UTC: midnights UTC, as the builder computed them
    assert (df.event_timestamp == df.event_timestamp.dt.floor("D")).all()
    assert (df.created_timestamp == df.event_timestamp).all()  # as the built-in views stamp theirs
    assert df.events.sum() == len(clean_raw(handmade_raw).behaviour_events)  # every cleaned event, once
    # nothing that is not a source is reported stale, the built-in sources are all there
    assert "stale" not in err
    assert {p.stem for p in (ws / "data").glob("*.parquet")} >= {"user_activity", "coupon_stats", "user_event_count"}


def test_keys_in_the_frames_index_are_kept_and_integer_keys_become_strings(handmade_raw, tmp_path, capsys):
    ws = _workspace(tmp_path, HEADER + '''

@offline_source("indexed")
def indexed(data):
    ts = pd.Timestamp("2026-06-02", tz="UTC")
    return pd.DataFrame({"user_id": ["u1", "u2"], "coupon_id": [7, 8], "event_timestamp": [ts, ts],
                         "x": [1.0, 2.0]}).set_index(["user_id", "coupon_id"])
''')
    assert _build(handmade_raw, ws, capsys)[0] == 0
    df = pd.read_parquet(ws / "data" / "indexed.parquet")
    assert list(df.user_id) == ["u1", "u2"] and list(df.coupon_id) == ["7", "8"]
    assert pq.read_schema(ws / "data" / "indexed.parquet").field("coupon_id").type == pa.string()


def test_the_written_source_applies_and_materializes(handmade_raw, tmp_path, capsys):
    """The builder's source is one Feast reads: a view over it applies, materializes and
    is read back online."""
    ws = _workspace(tmp_path, GOOD)
    (ws / "definitions.py").write_text((ws / "definitions.py").read_text() + textwrap.dedent('''

        user_event_count = FeatureView(name="user_event_count", entities=[user], ttl=NO_TTL,
                                       schema=[Field(name="events", dtype=Float64)],
                                       source=_source("user_event_count"))
        '''))
    assert _build(handmade_raw, ws, capsys)[0] == 0
    assert "user_event_count = FeatureView" in (ws / "definitions.py").read_text()  # build kept the workspace's own
    assert main(["apply", "--repo", str(ws)]) == 0
    assert main(["materialize", "--repo", str(ws), "--end", END.isoformat()]) == 0
    df = pd.read_parquet(ws / "data" / "user_event_count.parquet")
    last = df.sort_values("event_timestamp").groupby("user_id").events.last()
    online = repo.store(ws).get_online_features(features=["user_event_count:events"],
                                                entity_rows=[{"user_id": u} for u in last.index]).to_dict()
    assert online["events"] == list(last.to_numpy())


@pytest.mark.parametrize("column", ["event_timestamp", "created_timestamp"])
def test_naive_timestamps_are_refused_naming_builder_and_column(handmade_raw, tmp_path, capsys, column):
    ws = _workspace(tmp_path, HEADER + f'''

@offline_source("naive_source")
def naive(data):
    ts = pd.Timestamp("2026-06-02", tz="UTC")
    df = pd.DataFrame({{"user_id": ["u1"], "event_timestamp": [ts], "created_timestamp": [ts], "x": [1.0]}})
    df["{column}"] = df["{column}"].dt.tz_localize(None)
    return df
''')
    code, out, err = _build(handmade_raw, ws, capsys)
    assert code == 2
    assert "builder 'naive_source'" in err and f"column {column}" in err
    assert "naive timestamps: give them a zone, UTC" in err and "Traceback" not in err
    assert not (ws / "data" / "naive_source.parquet").exists()


@pytest.mark.parametrize("body, expect", [
    ("raise KeyError('item_category')", "failed: KeyError: 'item_category'"),
    ("return [1, 2]", "returned list, not a pandas DataFrame"),
    ("return pd.DataFrame({'user_id': ['u1'], 'x': [1.0]})", "no event_timestamp column"),
    ("return pd.DataFrame({'user_id': [None], 'event_timestamp': [pd.Timestamp('2026-06-02', tz='UTC')]})",
     "key column user_id has 1 null values"),
    ("return pd.DataFrame({'x': [1.0], 'event_timestamp': [pd.Timestamp('2026-06-02', tz='UTC')]})",
     "no entity key column"),
])
def test_a_failing_builder_stops_the_build_and_keeps_what_data_holds(handmade_raw, tmp_path, capsys, body, expect):
    ws = _workspace(tmp_path, GOOD)
    assert _build(handmade_raw, ws, capsys)[0] == 0
    old = (ws / "data" / "user_event_count.parquet").read_bytes()
    broken = GOOD.replace("    ev = data.behaviour_events\n", f"    {body}\n    ev = data.behaviour_events\n")
    (ws / "builders.py").write_text(broken)
    code, out, err = _build(handmade_raw, ws, capsys)
    assert code == 2
    assert "builder 'user_event_count'" in err and expect in err, err
    assert "Traceback" not in err and "kept" in err
    # the built-in sources written before it are there, its own old file is as it was
    assert all((ws / "data" / f"{name}.parquet").is_file() for name in ("user_activity", "coupon_attributes"))
    assert (ws / "data" / "user_event_count.parquet").read_bytes() == old
    assert not list((ws / "data").glob(".*.tmp"))


def test_a_builders_file_that_does_not_import_builds_nothing(handmade_raw, tmp_path, capsys):
    ws = _workspace(tmp_path, "def broken(:\n")
    code, _, err = _build(handmade_raw, ws, capsys)
    assert code == 2 and "builders.py: cannot import it (SyntaxError at line 1" in err and "Traceback" not in err
    assert not (ws / "data" / "user_activity.parquet").exists()


def test_a_builder_may_not_overwrite_a_built_in_source(handmade_raw, tmp_path, capsys):
    ws = _workspace(tmp_path, GOOD.replace('"user_event_count"', '"user_activity"'))
    code, _, err = _build(handmade_raw, ws, capsys)
    assert code == 2 and "builder 'user_activity' would overwrite the built-in view's source" in err


def test_each_workspace_runs_its_own_builders(handmade_raw, tmp_path, capsys):
    """builders.py is imported by path, afresh: another workspace's module is forgotten."""
    a = _workspace(tmp_path, GOOD, name="a")
    b = _workspace(tmp_path, GOOD.replace('"user_event_count"', '"user_event_count_b"'), name="b")
    assert _build(handmade_raw, a, capsys)[0] == 0
    assert _build(handmade_raw, b, capsys)[0] == 0
    assert (b / "data" / "user_event_count_b.parquet").is_file()
    assert not (b / "data" / "user_event_count.parquet").exists()
    c = _workspace(tmp_path, name="c")  # no builders.py: only the built-in sources
    assert _build(handmade_raw, c, capsys)[0] == 0
    assert sorted(p.stem for p in (c / "data").glob("*.parquet")) == sorted(
        ["user_activity", "user_coupon_behaviour", "user_category_affinity", "user_coupon_usage",
         "user_coupon_coverage", "coupon_stats", "coupon_attributes", "user_membership", "user_recent_activity",
         "user_category_recent_activity", "recent_behaviour_tail", "item_catalog", "coupon_today_activity"])


def test_a_parquet_file_nothing_rebuilt_is_reported_stale(handmade_raw, tmp_path, capsys):
    """A source whose builder was removed used to go stale silently."""
    ws = _workspace(tmp_path, GOOD)
    assert _build(handmade_raw, ws, capsys)[0] == 0
    (ws / "builders.py").unlink()  # the builder is gone, its source stays
    source = ws / "data" / "user_event_count.parquet"
    written = source.stat().st_mtime
    os.utime(source, (written - 3 * 86400, written - 3 * 86400))  # three days before its build
    code, out, err = _build(handmade_raw, ws, capsys)
    assert code == 0
    stale = [line for line in err.splitlines() if "not rebuilt" in line]
    assert stale == [f"warning: {source} was not rebuilt (stale: written 3 d 0 h before this build); no built-in "
                     f"view or builders.py builder writes it: add a builder (docs/adding-a-feature.md) or delete "
                     f"the file"]
    # the files build-features writes or keeps beside the sources are not sources
    assert {p.name for p in (ws / "data").iterdir() if not p.name.endswith(".parquet")} >= {"cleaning_report.json"}
    assert "cleaning_report" not in err


def _ns_source(ws, naive: bool = False):
    """Rewrite user_activity's source as pandas writes timestamps by default: nanoseconds."""
    path = ws / "data" / "user_activity.parquet"
    df = pd.read_parquet(path)
    for col in ("event_timestamp", "created_timestamp"):
        df[col] = df[col].astype("datetime64[ns, UTC]")
        if naive:
            df[col] = df[col].dt.tz_localize(None)
    df.to_parquet(path)
    return path


def test_feast_alone_fails_at_materialize_on_a_nanosecond_source(handmade_raw, tmp_path, capsys):
    """What happened before apply checked the sources: Feast's own apply takes a
    nanosecond source and materialize fails in DuckDB."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    ws = _workspace(tmp_path)
    assert _build(handmade_raw, ws, capsys)[0] == 0
    _ns_source(ws)
    with repo._inside(ws):  # `feast apply`
        apply_total(load_repo_config(ws, repo.yaml_for(ws)), ws, skip_source_validation=False)
    with pytest.raises(Exception, match=r"TIMESTAMPTZ_NS -> TIMESTAMP") as exc:
        repo.materialize(ws, end=END)
    assert type(exc.value).__name__ == "ConversionException"


@pytest.mark.parametrize("naive", [False, True])
def test_apply_refuses_a_nanosecond_or_naive_source_naming_file_and_column(handmade_raw, tmp_path, capsys, naive):
    ws = _workspace(tmp_path)
    assert _build(handmade_raw, ws, capsys)[0] == 0
    path = _ns_source(ws, naive=naive)
    code = main(["apply", "--repo", str(ws)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{path}: column event_timestamp has" in err and f"{path}: column created_timestamp has" in err
    if naive:
        assert "naive timestamps" in err and "tz_localize('UTC')" in err
    else:
        assert "nanosecond timestamps" in err and "TIMESTAMPTZ_NS -> TIMESTAMP" in err
    assert "astype('datetime64[us, UTC]')" in err and "nothing was applied" in err
    assert not (ws / "data" / "registry.db").exists()  # nothing registered
    # the fix the message gives makes it apply
    df = pd.read_parquet(path)
    for col in ("event_timestamp", "created_timestamp"):
        s = df[col].dt.tz_localize("UTC") if naive else df[col]
        df[col] = s.astype("datetime64[us, UTC]")
    df.to_parquet(path)
    assert main(["apply", "--repo", str(ws)]) == 0
    assert main(["materialize", "--repo", str(ws), "--end", END.isoformat()]) == 0


def test_apply_checks_the_sources_before_setting_a_copied_registry_aside(handmade_repo, tmp_path, capsys):
    """A refused source leaves everything as it was, the copied-registry check included."""
    ws = tmp_path / "copy"
    shutil.copytree(handmade_repo, ws)
    _ns_source(ws)
    assert main(["apply", "--repo", str(ws)]) == 2
    assert (ws / "data" / "registry.db").exists() and not list((ws / "data").glob("registry.db.copied-*"))
