"""The batch feature pipeline: hand-computed values, point-in-time safety, the
contract with the Feast definitions."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from couponrank.features import definitions
from couponrank.features.build import build_features
from couponrank.features import repo
from handmade import at

VIEWS = [definitions.user_activity, definitions.user_coupon_behaviour, definitions.user_category_affinity,
         definitions.user_coupon_usage, definitions.coupon_stats, definitions.coupon_attributes]


def _read(ws, name):
    df = pd.read_parquet(ws / "data" / f"{name}.parquet")
    # keys are stored dictionary-encoded; compare them as plain strings
    return df.astype({c: object for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)})


@pytest.fixture(scope="module")
def built(tmp_path_factory, handmade_raw):
    ws = repo.init_workspace(tmp_path_factory.mktemp("built"))
    build_features(handmade_raw, ws)
    return ws


def test_sources_match_feature_view_schemas(built):
    for view in VIEWS:
        cols = pq.read_schema(built / "data" / f"{view.name}.parquet").names
        join_keys = {e.name: e.join_key for e in (definitions.user, definitions.coupon, definitions.category)}
        expected = [*(join_keys[e] for e in view.entities), "event_timestamp", "created_timestamp", *(f.name for f in view.features)]
        assert sorted(cols) == sorted(expected), view.name


def _row(df, ts, **keys):
    """The values in force at ts: the latest row stamped at or before it (Feast's rule)."""
    mask = df["event_timestamp"] <= ts
    for k, v in keys.items():
        mask &= df[k] == v
    assert mask.any(), f"no row at or before {ts} for {keys}"
    return df.loc[mask].sort_values("event_timestamp", kind="stable").iloc[-1]


def test_user_activity_by_hand(built):
    df = _read(built, "user_activity")
    # u1 on 2026-06-02: 2 views, 1 add-to-cart, one order of two lines (80 + 40)
    r = _row(df, at(2), user_id="u1")
    assert (r.user_views_7d, r.user_carts_7d, r.user_orders_7d, r.user_spend_7d) == (2, 1, 1, 120)
    assert r.user_avg_order_value_30d == 120
    assert r.user_last_order_unix == at(1, 13).timestamp()
    # seven days later the 7-day window has drained, the 30-day one has not
    r = _row(df, at(9), user_id="u1")
    assert (r.user_views_7d, r.user_views_30d, r.user_orders_30d) == (0, 2, 1)
    # the view on 2026-06-11 09:00 shows from the next midnight, not before
    assert _row(df, at(10), user_id="u1").user_views_30d == 2
    assert _row(df, at(11), user_id="u1").user_views_30d == 3
    assert _row(df, at(11), user_id="u1").user_last_event_unix == at(10, 9).timestamp()
    # nothing is stamped before the first event's day has ended
    assert df.loc[df.user_id == "u1", "event_timestamp"].min() == at(2)


def test_coupon_features_by_hand(built):
    usage = _read(built, "user_coupon_usage")
    r = _row(usage, at(2), user_id="u1", coupon_id="c1")
    assert (r.ucp_impressions_7d, r.ucp_claims_total, r.ucp_redemptions_total) == (1, 1, 1)
    # after 7 days the fatigue window drains but the lifetime counts stay
    r = _row(usage, at(9), user_id="u1", coupon_id="c1")
    assert (r.ucp_impressions_7d, r.ucp_redemptions_total) == (0, 1)
    assert usage.loc[(usage.user_id == "u1") & (usage.coupon_id == "c1"), "event_timestamp"].max() == at(9)

    behaviour = _read(built, "user_coupon_behaviour")
    r = _row(behaviour, at(2), user_id="u1")
    # 1 redemption in 2 impressions, smoothed with 20 pseudo-impressions at the
    # global rate of the days before: also 1/2 -> (1 + 20 * 0.5) / (2 + 20) = 0.5
    assert r.user_redemption_rate_30d == pytest.approx(0.5)
    assert r.user_avg_discount_redeemed_30d == 12.0

    attrs = _read(built, "coupon_attributes").set_index("coupon_id")
    # c2 is scoped to brand b2, whose items are books; c3 is valid on anything
    assert attrs.loc["c1", "coupon_target_category"] == "shoes"
    assert attrs.loc["c2", "coupon_target_category"] == "books"
    assert attrs.loc["c3", "coupon_target_category"] == "__all__"
    stats = _read(built, "coupon_stats")
    assert _row(stats, at(2), coupon_id="c1").coupon_budget_used_frac == pytest.approx(12 / 1000)


def test_category_affinity_share(built):
    aff = _read(built, "user_category_affinity")
    # on 2026-06-12 u1 has 5 events in shoes (2 views, cart, 2 order lines) and 1 in books
    assert _row(aff, at(11), user_id="u1", category="shoes").ucat_share_30d == pytest.approx(5 / 6)
    assert _row(aff, at(11), user_id="u1", category="books").ucat_share_30d == pytest.approx(1 / 6)


def _brute_force_views(events, user, ts, days):
    e = events[(events.user_id == user) & (events.event_type == "view")]
    return int(((e.event_ts >= ts - pd.Timedelta(days=days)) & (e.event_ts < ts)).sum())


def test_windows_agree_with_brute_force_on_generated_data(generated_features):
    raw, ws = generated_features
    events = pd.read_parquet(raw / "behaviour_events.parquet")
    df = _read(ws, "user_activity").sample(200, random_state=0)
    for r in df.itertuples():
        assert r.user_views_7d == _brute_force_views(events, r.user_id, r.event_timestamp, 7)
        assert r.user_views_30d == _brute_force_views(events, r.user_id, r.event_timestamp, 30)
        past = events[(events.user_id == r.user_id) & (events.event_ts < r.event_timestamp)]
        assert r.user_last_event_unix == pytest.approx(past.event_ts.max().timestamp())


def test_features_never_see_the_future(generated_features, tmp_path):
    """Cut every event after a midnight C and rebuild: all rows stamped <= C are unchanged."""
    raw, ws = generated_features
    full = {v.name: _read(ws, v.name) for v in VIEWS if v is not definitions.coupon_attributes}
    events = pd.read_parquet(raw / "behaviour_events.parquet")
    cut = events.event_ts.min().floor("D") + pd.Timedelta(days=12)
    cut_raw = tmp_path / "raw"
    cut_raw.mkdir()
    for f in raw.glob("*.parquet"):
        df = pd.read_parquet(f)
        if "event_ts" in df:
            df = df[df.event_ts < cut]
        df.to_parquet(cut_raw / f.name, index=False)
    cut_ws = repo.init_workspace(tmp_path / "ws")
    build_features(cut_raw, cut_ws)
    for name, df in full.items():
        keys = [c for c in df.columns if c.endswith("_id") or c == "category"] + ["event_timestamp"]
        before = df[df.event_timestamp <= cut].sort_values(keys).reset_index(drop=True)
        rebuilt = _read(cut_ws, name)
        rebuilt = rebuilt[rebuilt.event_timestamp <= cut].sort_values(keys).reset_index(drop=True)
        assert len(before) > 0, name
        pd.testing.assert_frame_equal(before, rebuilt, check_exact=False, rtol=1e-12, obj=name)


def test_rows_only_where_a_window_changes(built):
    df = _read(built, "user_activity")
    # u1 has events on 06-02 and 06-11: rows the day after each, and when each leaves
    # the 7-day and the 30-day windows; none on quiet days in between
    stamps = sorted(df.loc[df.user_id == "u1", "event_timestamp"])
    assert stamps == [at(2), at(9), at(11)] + ([at(18)] if at(18) <= at(21) else [])


def test_future_events_change_later_rows(generated_features):
    """The test above could pass vacuously if features ignored events; they don't."""
    raw, ws = generated_features
    df = _read(ws, "user_activity")
    assert df.user_views_30d.max() > 0 and df.user_views_30d.nunique() > 5


@pytest.mark.parametrize("keep", ["orders only", "none"])
def test_a_data_set_without_browsing_events_builds(generated_raw, tmp_path, keep):
    """Retail campaign logs often hold purchases but no views or carts (issue 10), or no
    behaviour at all: the views still build, with zero counts, never a traceback."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(generated_raw, raw)
    events = pd.read_parquet(raw / "behaviour_events.parquet")
    events = events[events.event_type == "order"] if keep == "orders only" else events.iloc[:0]
    events.to_parquet(raw / "behaviour_events.parquet", index=False)
    ws = repo.init_workspace(tmp_path / "ws")
    build_features(raw, ws)
    activity = _read(ws, "user_activity")
    affinity = _read(ws, "user_category_affinity")
    if keep == "none":
        assert affinity.empty and (activity.filter(like="views").fillna(0) == 0).all().all()
    else:
        assert len(affinity) and (affinity.ucat_views_30d == 0).all() and (affinity.ucat_orders_30d > 0).any()
        assert (activity.filter(like="views").fillna(0) == 0).all().all()


def test_coverage_purchases_by_hand(handmade_raw, tmp_path):
    """coupon_items -> user_coupon_coverage: the user's order lines and spend on the items
    a coupon covers, whether or not it was shown; unknown items are dropped and counted."""
    import shutil

    from couponrank import schema

    raw = tmp_path / "raw"
    shutil.copytree(handmade_raw, raw)
    rows = [("c1", "i1"), ("c1", "i2"), ("c2", "i3"), ("c3", "i1"), ("c3", "i9"), ("c1", "i1")]
    pd.DataFrame(rows, columns=["coupon_id", "item_id"]).to_parquet(raw / schema.COUPON_ITEMS.file, index=False)
    ws = repo.init_workspace(tmp_path / "ws")
    summary = build_features(raw, ws)
    report = summary.report.tables["coupon_items"]
    assert sum(report.dropped.values()) == 2 and report.rows_out == 4  # a duplicate and an unknown item
    cov = _read(ws, "user_coupon_coverage")
    # u1's order on 2026-06-02 13:00: i1 (80) and i2 (40), both covered by c1; only i1 by c3
    r = _row(cov, at(2), user_id="u1", coupon_id="c1")
    assert (r.ucov_lines_30d, r.ucov_lines_365d, r.ucov_spend_90d) == (2, 2, 120)
    assert _row(cov, at(2), user_id="u1", coupon_id="c3").ucov_spend_365d == 80
    # u2 bought i3 (c2's item) on day 20; c2 was shown to u2 on day 3, before the purchase
    assert _row(cov, at(21), user_id="u2", coupon_id="c2").ucov_lines_30d == 1
    assert _row(cov, at(21), user_id="u1", coupon_id="c1").ucov_lines_30d == 2  # still within 30 days
    assert cov.event_timestamp.min() == at(2)  # nothing before the purchase day has ended
    assert not ((cov.user_id == "u2") & (cov.coupon_id == "c1")).any()  # no purchase, no row
    # the data's first order line, covered or not, on every row (features/coverage.py)
    be = pd.read_parquet(raw / "behaviour_events.parquet")
    first = (be[be.event_type == "order"].event_ts.min() - pd.Timestamp(0, tz="UTC")).total_seconds()
    assert (cov.ucov_observed_from_unix == first).all()


def test_no_coupon_items_gives_an_empty_coverage_view(built):
    cov = _read(built, "user_coupon_coverage")
    assert cov.empty and {"user_id", "coupon_id", "ucov_lines_30d"} <= set(cov.columns)
