"""docs/adding-a-feature.md, followed step by step on the tiny data set.

The code the page shows is what runs here: builders.py, the definitions.py addition, the
training config's line and every `couponrank` command are read out of the page's marked
blocks, so the page cannot drift from what is tested. Then: the model uses the new
feature, the server serves it with ranker_v7, the value it serves is the online store's,
and changing that value online moves that user's scores and no one else's."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from couponrank.cli import build_parser, main
from couponrank.features import repo
from couponrank.training.artifact import load_artifact
from couponrank.training.ranker import CONFIG_PATH

pytestmark = pytest.mark.slow
pytest_plugins = ["server_fixtures"]  # built, callers_file

DOC = Path(__file__).resolve().parent.parent / "docs" / "adding-a-feature.md"
VIEW, FEATURE = "user_distinct_items", "user_distinct_items_60d"


def block(name: str) -> str:
    """The code block the page marks ``<!-- adding-a-feature: NAME -->``."""
    found = re.findall(rf"<!-- adding-a-feature: {re.escape(name)} -->\n```\w*\n(.*?)```", DOC.read_text(), re.S)
    assert len(found) == 1, f"{DOC}: expected one code block marked {name!r}, found {len(found)}"
    return found[0]


def commands(name: str) -> list[list[str]]:
    lines = [line for line in block(name).splitlines() if line.strip()]
    assert lines and all(line.startswith("couponrank ") for line in lines), lines
    return [shlex.split(line)[1:] for line in lines]


def run(args: list[str]) -> tuple[str, str]:
    """One `couponrank` command of the page (quietly); its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--quiet"])
    assert code == 0, f"couponrank {' '.join(args)}: exit {code}\n{err.getvalue()[-3000:]}"
    return out.getvalue(), err.getvalue()


@dataclass
class Followed:
    root: Path
    ws: Path
    models: Path
    before: str  # the ranker_v4 model served before
    after: str  # the ranker_v7 model trained by the page
    end: pd.Timestamp  # materialized up to
    build_out: str
    old_server_swapped: bool  # a server running on the old model swapped in the new one
    old_server_version: str


@pytest.fixture(scope="module")
def followed(built, tmp_path_factory) -> Followed:
    """A folder laid out as the page assumes (data/raw, features/, artifacts/models
    holding the ranker_v4 model served so far), then the page's steps, in order."""
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    root = tmp_path_factory.mktemp("adding-a-feature")
    shutil.copytree(built.raw, root / "data" / "raw")
    repo.init_workspace(root / "features")
    shutil.copytree(built.models, root / "artifacts" / "models")
    before = load_artifact(root / "artifacts" / "models").version
    end = built.last_snapshot + pd.Timedelta(seconds=1)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        # 1. the builder; 2. the view and the service
        Path("features/builders.py").write_text(block("builders.py"))
        definitions = Path("features/definitions.py")
        definitions.write_text(definitions.read_text() + "\n\n" + block("definitions.py"))
        # 3. build, apply, materialize (up to a pinned time, not the wall clock's now)
        build_out = ""
        for args in commands("build"):
            if args[0] == "materialize":
                args += ["--end", end.isoformat()]
            out, err = run(args)
            if args[0] == "build-features":
                build_out = out + err
        # a server already running on the ranker_v4 model
        old = serve(root / "features", root / "artifacts" / "models", port=0, host="127.0.0.1",
                    config=ServerConfig(model_refresh_seconds=0), clock=UNIX_CLOCK)
        try:
            # 4. the config: training/ranker.yaml with the page's feature_service line
            shipped = CONFIG_PATH.read_text()
            assert len(re.findall(r"(?m)^feature_service: ", shipped)) == 1
            Path("ranker_v7.yaml").write_text(re.sub(r"(?m)^feature_service: .*$", block("ranker_v7.yaml").strip(),
                                                     shipped))
            for args in commands("train"):
                run(args)
            swapped = old.reloader.check()
            old_version = old.ranker.model.version
        finally:
            old.stop(0).wait(5)
    finally:
        os.chdir(cwd)
    after = load_artifact(root / "artifacts" / "models").version
    return Followed(root, root / "features", root / "artifacts" / "models", before, after, end, build_out,
                    swapped, old_version)


@pytest.fixture(scope="module")
def served(followed, callers_file):
    """5. serve, as the page's command says (in process: a free port, a pinned clock,
    every non-zero contribution in explanations for the trusted caller)."""
    from couponrank.server.main import serve
    from couponrank.server.service import ServerConfig
    from pinned import UNIX_CLOCK

    (args,) = commands("serve")
    assert args[0] == "serve"
    opts = build_parser().parse_args(args)
    running = serve(followed.root / opts.repo, followed.root / opts.model, port=0, host="127.0.0.1",
                    online=opts.online, clock=UNIX_CLOCK,
                    config=ServerConfig(max_reasons=0, model_refresh_seconds=0, callers_file=str(callers_file)))
    yield running
    running.stop(0).wait(5)


@pytest.fixture(scope="module")
def trusted(served):
    from couponrank.client import CouponRankClient
    from server_fixtures import TRUSTED_TOKEN

    with CouponRankClient(f"127.0.0.1:{served.port}", timeout=10.0, token=TRUSTED_TOKEN) as c:
        yield c


def _in_force(df: pd.DataFrame, at: pd.Timestamp) -> pd.Series:
    """Each user's value at ``at``: the latest row stamped at or before it (Feast's rule)."""
    rows = df[df.event_timestamp <= at].sort_values("event_timestamp", kind="stable")
    return rows.groupby("user_id")[FEATURE].last()


def test_build_features_runs_the_builder_and_its_source_keeps_the_snapshot_rule(built, followed):
    from couponrank.features.cleaning import clean_raw

    assert re.search(rf"^  {VIEW}: [\d,]+ rows \(builders.py\)$", followed.build_out, re.M), followed.build_out
    assert "not rebuilt" not in followed.build_out
    path = followed.ws / "data" / f"{VIEW}.parquet"
    schema = pq.read_schema(path)
    assert schema.field("user_id").type == pa.string()
    assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("created_timestamp").type == pa.timestamp("us", tz="UTC")
    df = pd.read_parquet(path)
    # the row in force at a midnight T counts the distinct items viewed or ordered in [T - 60 d, T)
    ev = clean_raw(built.raw).behaviour_events
    ev = ev[ev.event_type.isin(["view", "order"])].astype({"user_id": str, "item_id": str})
    origin = ev.event_ts.min().floor("D")
    for T in (origin + pd.Timedelta(days=1), origin + pd.Timedelta(days=12), built.last_snapshot):
        window = ev[(ev.event_ts < T) & (ev.event_ts >= T - pd.Timedelta(days=60))]
        expected = window.groupby("user_id").item_id.nunique().astype(float)
        got = _in_force(df, T)
        got = got[got > 0]  # a user whose window drained reads 0, one never seen has no row
        pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    assert (df.event_timestamp == df.event_timestamp.dt.floor("D")).all()  # midnight snapshots


def test_the_new_model_is_trained_on_ranker_v7_and_uses_the_feature(followed):
    art = load_artifact(followed.models)
    assert art.version == followed.after != followed.before
    assert art.metadata["feature_service"] == "ranker_v7"
    assert FEATURE in art.features
    booster = lgb.Booster(model_file=str(art.path / "model.txt"))
    gain = dict(zip(booster.feature_name(), booster.feature_importance(importance_type="gain")))
    assert gain[FEATURE] > 0, "the model never splits on the new feature: the scores could not move"
    table = pd.read_csv(art.path / "features.csv").set_index("feature")
    assert table.loc[FEATURE, "source"] == VIEW and table.loc[FEATURE, "splits"] > 0
    # the version served before is still there to roll back to
    assert (followed.models / "HISTORY").read_text().split()[-2:] == [followed.before, followed.after]


def test_a_server_started_before_keeps_its_model_until_restarted(followed):
    """As the page says: a running server does not swap in the ranker_v7 model."""
    assert not followed.old_server_swapped
    assert followed.old_server_version == followed.before


def _thresholds(model_path: Path) -> list[float]:
    trees = lgb.Booster(model_file=str(model_path)).trees_to_dataframe()
    return sorted(set(trees.loc[trees.split_feature == FEATURE, "threshold"].astype(float)))


def test_the_served_value_is_the_online_stores_and_moving_it_moves_that_users_scores(followed, served, trusted):
    from pinned import NOW

    assert served.ranker.model.feature_service == "ranker_v7"
    assert served.ranker.model.version == followed.after
    store = repo.store(followed.ws)

    def online(user):
        return store.get_online_features(features=[f"{VIEW}:{FEATURE}"],
                                         entity_rows=[{"user_id": user}]).to_dict()[FEATURE][0]

    compared = 0

    def rank(user, value=None):
        """{coupon: score} served for ``user`` at the pinned time; checks that every value
        the explanations show for the feature is the online store's."""
        nonlocal compared
        res = trusted.rank_coupons(user, placement="home", explain=True, request_time=NOW)
        assert not res.degraded and not res.cold_start, res
        shown = [r.value for c in res.ranked for r in c.reasons if r.feature == FEATURE]
        want = online(user)
        assert want is not None and (value is None or want == value)
        assert all(v == want for v in shown), (user, shown, want)
        compared += len(shown)
        return {c.coupon_id: c.score for c in res.ranked}

    source = pd.read_parquet(followed.ws / "data" / f"{VIEW}.parquet")
    in_force = _in_force(source, followed.end)
    users = []
    for user in sorted(in_force.index):  # the first users with coupons to rank at home
        if rank(user):
            users.append(user)
        if len(users) == 8:
            break
    assert len(users) >= 2
    for user in users:  # materialized: the online value is the source's latest row
        assert online(user) == in_force[user]
    b = users[-1]  # never touched: its scores must not move
    scores_b = rank(b)

    # every side of every split the model makes on the feature, written online for one
    # user after another until one's scores move (a user's coupons need not reach any
    # split on it: that is tried, not assumed)
    thresholds = _thresholds(followed.models / followed.after / "model.txt")
    ts = followed.end + pd.Timedelta(minutes=10)

    def put(user, value):
        nonlocal ts
        ts += pd.Timedelta(seconds=1)
        store.write_to_online_store(VIEW, pd.DataFrame({"user_id": [user], "event_timestamp": [ts],
                                                        "created_timestamp": [ts], FEATURE: [value]}))

    for a in users[:-1]:
        scores_a = rank(a)
        candidates = sorted({v for t in thresholds for v in (max(0.0, math.floor(t)), math.floor(t) + 1.0)}
                            | {in_force[a]})
        served_for = {}
        for value in candidates:
            put(a, value)
            served_for[value] = rank(a, value)
            assert rank(b) == scores_b  # another user's scores do not move
        assert served_for[in_force[a]] == scores_a
        moved = [v for v in candidates if served_for[v] != scores_a]
        put(a, in_force[a])  # as materialized
        if moved:
            break
    assert moved, f"no value of {FEATURE} in {candidates} moved the scores of any of {users[:-1]}"
    assert compared > 0, "no explanation showed the feature: the served value was never compared"

    # the page's way: a new row in the source, a later stamp, materialize again
    new = moved[-1]
    ts = followed.end + pd.Timedelta(hours=1)
    table = pq.read_table(followed.ws / "data" / f"{VIEW}.parquet")
    row = pa.Table.from_pandas(pd.DataFrame({"user_id": [a], "event_timestamp": [ts], FEATURE: [new],
                                             "created_timestamp": [ts]}), preserve_index=False)
    pq.write_table(pa.concat_tables([table, row.select(table.schema.names).cast(table.schema)]),
                   followed.ws / "data" / f"{VIEW}.parquet")
    run(["materialize", "--repo", str(followed.ws), "--end", (ts + pd.Timedelta(hours=1)).isoformat()])
    assert online(a) == new
    assert rank(a, new) == served_for[new] != scores_a
    assert rank(b) == scores_b


def test_rollback_serves_the_ranker_v4_model_with_its_own_service(followed, served, trusted):
    from pinned import NOW

    run(["rollback", "--models", str(followed.models)])
    assert served.reloader.check()
    assert served.ranker.model.version == followed.before
    assert served.ranker.model.feature_service == "ranker_v4"
    res = trusted.rank_coupons("u000001", placement="home", explain=True, request_time=NOW)
    assert not res.degraded and res.ranked and res.model_version == followed.before
    assert not any(r.feature == FEATURE for c in res.ranked for r in c.reasons)
