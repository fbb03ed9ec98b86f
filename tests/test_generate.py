"""The synthetic generator: schemas, determinism, referential integrity, signal, dirty rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from couponrank import generate_model as gm
from couponrank import schema
from couponrank.cli import main
from couponrank.clock import fixed
from couponrank.features import membership
from couponrank.generate import OUTPUT_TABLES, SIZES, generate
from couponrank.server import stages
from couponrank.server.catalog import FLOAT_COLUMNS, STATS_COLUMNS, STRING_COLUMNS, Catalog
from pinned import END_DATE, TINY

pytestmark = pytest.mark.clock  # date-sensitive: run again with the clock moved ahead

ALL_TABLES = (*schema.RAW_TABLES, schema.MEMBERSHIPS, schema.IMPRESSION_TRUTH)
# a mid size (half the demo) that still shows the signal clearly and builds in a few seconds
MID = SIZES["demo"].replace(name="mid", n_users=1_500, target_events=250_000, end_date=END_DATE)


def load(d: Path) -> dict[str, pd.DataFrame]:
    return {t.name: pd.read_parquet(d / t.file) for t in ALL_TABLES}


def membership_at(memberships: pd.DataFrame, user_id, ts) -> pd.DataFrame:
    """The membership in force for each (user, ts): the user's latest row with
    valid_from <= ts; tier rank (0: not a member) and segments ("" none)."""
    config = membership.load()
    ts = pd.Series(ts).reset_index(drop=True).astype(memberships.valid_from.dtype)
    left = pd.DataFrame({"user_id": np.asarray(user_id, object), "ts": ts, "row": np.arange(len(ts))})
    right = memberships.rename(columns={"valid_from": "ts"}).sort_values("ts", kind="stable")
    m = pd.merge_asof(left.sort_values("ts", kind="stable"), right, on="ts", by="user_id").sort_values("row")
    rank = [config.rank(t) if isinstance(t, str) else 0 for t in m.tier]
    return pd.DataFrame({"rank": np.array(rank, int), "segments": m.segments.fillna("").to_numpy(object)})


def audience_admits(audience, rank, segments) -> np.ndarray:
    """Per row: does the coupon's audience text admit a user of this tier rank and these
    segments? The batch pipeline's and server's rule (couponrank.features.membership)."""
    config = membership.load()
    audience = pd.Series(np.asarray(audience, object))
    parsed = {a: membership.parse_audience(a, config) for a in audience.unique()}
    min_tier = audience.map(lambda a: parsed[a].min_tier).to_numpy(np.float64)
    coupon_mask = audience.map(lambda a: parsed[a].segment_mask).to_numpy(np.float64)
    ok = np.zeros(len(audience), bool)
    groups = pd.DataFrame({"rank": np.asarray(rank), "seg": np.asarray(segments, object)}).groupby(["rank", "seg"])
    for (r, seg), idx in groups.indices.items():
        user_mask = config.mask(membership.split(seg))
        ok[idx] = membership.admitted(min_tier[idx], coupon_mask[idx], float(r), float(user_mask))
    return ok


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    return out, generate(out, TINY)


@pytest.fixture(scope="module")
def tiny_data(tiny) -> dict[str, pd.DataFrame]:
    return load(tiny[0])


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    out = tmp_path_factory.mktemp("dirty")
    return out, generate(out, TINY.replace(dirty_fraction=0.01))


@pytest.fixture(scope="module")
def mid_data(tmp_path_factory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("mid")
    generate(out, MID)
    return load(out)


# ----------------------------------------------------------------------------- files
def test_writes_every_table_including_the_optional_memberships():
    assert OUTPUT_TABLES == ALL_TABLES
    assert schema.MEMBERSHIPS in schema.OPTIONAL_TABLES


def test_files_match_schema_exactly(tiny):
    out, summary = tiny
    for t in ALL_TABLES:
        arrow_schema = pq.read_schema(out / t.file)
        assert arrow_schema.names == t.schema.names, t.name
        assert arrow_schema.remove_metadata().equals(t.schema), t.name
        assert summary.row_counts[t.name] == pq.ParquetFile(out / t.file).metadata.num_rows > 0


def test_manifest(tiny):
    out, summary = tiny
    m = json.loads((out / "manifest.json").read_text())
    assert m["currency"] == "USD"
    assert m["seed"] == TINY.seed
    assert m["config"]["n_users"] == TINY.n_users
    assert m["start"] == "2026-06-01T00:00:00+00:00" == TINY.start.isoformat()
    assert m["end"] == "2026-07-01T00:00:00+00:00" == (TINY.start + timedelta(days=TINY.days)).isoformat()
    assert m["config"]["end_date"] == "2026-07-01"
    assert m["row_counts"] == summary.row_counts
    assert set(m["row_counts"]) == {t.name for t in ALL_TABLES}


def test_tiny_is_sized(tiny, tiny_data):
    _, summary = tiny
    assert summary.row_counts["users"] == TINY.n_users
    assert summary.row_counts["coupons"] == TINY.n_coupons
    assert 0.8 * TINY.target_events < summary.row_counts["behaviour_events"] < 1.2 * TINY.target_events


def test_id_formats(tiny_data):
    d = tiny_data
    assert d["users"].user_id.str.fullmatch(r"u\d{6}").all()
    assert d["coupons"].coupon_id.str.fullmatch(r"c\d{5}").all()
    assert d["items"].item_id.str.fullmatch(r"i\d{6}").all()
    assert d["items"].category.str.fullmatch(r"cat\d{2}").all()
    assert d["items"].brand.str.fullmatch(r"b\d{4}").all()
    assert d["items"].merchant_id.str.fullmatch(r"m\d{3}").all()
    assert d["coupons"].campaign_id.str.fullmatch(r"camp\d{2}").all()
    for name in ("users", "items", "coupons", "behaviour_events", "coupon_events"):
        key = d[name].iloc[:, 0]
        assert key.is_unique and key.notna().all(), name


# ----------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_files(tiny, tmp_path):
    out, _ = tiny
    generate(tmp_path, TINY)
    for f in [t.file for t in ALL_TABLES] + ["manifest.json"]:
        assert (out / f).read_bytes() == (tmp_path / f).read_bytes(), f


def test_end_date_defaults_to_today_by_the_clock(tmp_path):
    """No end date: the period ends at 00:00 UTC of the clock's day (late in the day,
    in UTC, even where the local date would differ)."""
    summary = generate(tmp_path, SIZES["tiny"], clock=fixed(datetime(2031, 3, 4, 23, 59, tzinfo=UTC)))
    assert summary.manifest["end"] == "2031-03-04T00:00:00+00:00"
    assert summary.manifest["start"] == "2031-02-02T00:00:00+00:00"
    coupon_events = pd.read_parquet(tmp_path / schema.COUPON_EVENTS.file)
    assert coupon_events.event_ts.max() < pd.Timestamp("2031-03-04", tz="UTC")


def test_another_end_date_shifts_the_same_data_in_time(tiny, tmp_path):
    """The simulation runs in seconds since the period's start, so a test on the pinned
    date says the same of the data generated on any other day."""
    out, _ = tiny
    shift = timedelta(days=519)
    generate(tmp_path, TINY.replace(end_date=END_DATE + shift))
    for t in ALL_TABLES:
        a, b = pd.read_parquet(out / t.file), pd.read_parquet(tmp_path / t.file)
        for col in a.columns:
            if isinstance(a[col].dtype, pd.DatetimeTZDtype):
                a[col] = a[col] + shift
        pd.testing.assert_frame_equal(a, b, obj=t.name)


@pytest.mark.parametrize("size", ["tiny", "demo"])
def test_coupons_are_active_all_through_the_end_day(size):
    """Data generated today (UTC) has coupons valid at every hour of today: the demo and
    the README snippets rank coupons now, whatever the hour. Only the coupon table is
    needed, and it comes from the world alone."""
    from couponrank import generate_model as gm

    cfg = SIZES[size].replace(end_date=END_DATE)
    w = gm.make_world(cfg, np.random.default_rng(cfg.seed))
    day = cfg.days * 86_400
    for hour in range(24):
        t = day + hour * 3_600 + 3_599  # the end of each hour of the end date
        active = np.count_nonzero((w.c_from <= t) & (t < w.c_to))
        assert active >= 0.1 * cfg.n_coupons, (size, hour, active)


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "2026-07-01T10:00"])
def test_bad_end_date_is_refused_naming_the_option(tmp_path, capsys, value):
    assert main(["generate", "--size", "tiny", "--quiet", "--out", str(tmp_path), "--end-date", value]) == 2
    err = capsys.readouterr().err
    assert "--end-date" in err and value in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_different_seed_differs(tiny, tmp_path):
    out, _ = tiny
    generate(tmp_path, TINY.replace(seed=TINY.seed + 1))
    for t in (schema.USERS, schema.COUPONS, schema.BEHAVIOUR_EVENTS, schema.COUPON_EVENTS, schema.MEMBERSHIPS):
        a, b = pq.read_table(out / t.file), pq.read_table(tmp_path / t.file)
        assert not a.equals(b), t.name


# ----------------------------------------------------------------------------- integrity
def test_dimension_tables(tiny_data):
    users, items, coupons = tiny_data["users"], tiny_data["items"], tiny_data["coupons"]
    assert (items.price > 0).all()
    assert items.groupby("brand").category.nunique().max() == 1  # a brand is in one category
    assert set(coupons.coupon_type) == set(schema.COUPON_TYPES)
    assert set(coupons.scope) == set(schema.COUPON_SCOPES)
    assert ((coupons.scope == "all") == coupons.scope_value.isna()).all()
    for scope, col in (("category", "category"), ("brand", "brand"), ("merchant", "merchant_id")):
        assert coupons.loc[coupons.scope == scope, "scope_value"].isin(items[col]).all(), scope
    pct = coupons[coupons.coupon_type == "percent_off"]
    assert pct.value.between(5, 40).all()
    amt = coupons[coupons.coupon_type == "amount_off"]
    assert amt.value.between(5, 50).all() and (amt.min_spend >= 2 * amt.value).all()
    assert (coupons.loc[coupons.coupon_type == "free_shipping", "value"] == 0).all()
    assert (coupons.valid_to > coupons.valid_from).all()
    days = (coupons.valid_to - coupons.valid_from).dt.total_seconds() / 86400
    assert days.between(3, 30).all()
    start, end = TINY.start, TINY.start + timedelta(days=TINY.days)
    assert (coupons.valid_from < start).any() and (coupons.valid_to > end).any()
    assert coupons.per_user_limit.between(1, 3).all() and (coupons.budget > 0).all()
    assert users.user_id.is_unique and users.country.notna().all()


def test_behaviour_integrity(tiny_data):
    d = tiny_data
    be, users, items = d["behaviour_events"], d["users"], d["items"]
    assert set(be.event_type) == set(schema.BEHAVIOUR_EVENT_TYPES)
    assert be.user_id.isin(users.user_id).all() and be.item_id.isin(items.item_id).all()
    start, end = TINY.start, TINY.start + timedelta(days=TINY.days)
    assert be.event_ts.between(start, end).all()
    signup = be.user_id.map(users.set_index("user_id").signup_ts)
    assert (be.event_ts >= signup).all()
    orders = be.event_type == "order"
    assert be.order_id.notna().eq(orders).all() and be.amount.notna().eq(orders).all()
    price = be.item_id.map(items.set_index("item_id").price)
    assert np.allclose(be.amount[orders], price[orders])
    assert (be.groupby("order_id").user_id.nunique() == 1).all()


def test_coupon_event_integrity(tiny_data):
    d = tiny_data
    ce, coupons, users, be = d["coupon_events"], d["coupons"], d["users"], d["behaviour_events"]
    assert set(ce.event_type) == set(schema.COUPON_EVENT_TYPES)
    assert ce.user_id.isin(users.user_id).all() and ce.coupon_id.isin(coupons.coupon_id).all()
    c = coupons.set_index("coupon_id")
    vf, vt = ce.coupon_id.map(c.valid_from), ce.coupon_id.map(c.valid_to)
    imp = ce[ce.event_type == "impression"]
    # impressions: only coupons valid when shown, a well-formed ranking group
    assert (imp.event_ts >= vf[imp.index]).all() and (imp.event_ts <= vt[imp.index]).all()
    assert imp.placement.isin(schema.PLACEMENTS).all() and imp.request_id.notna().all()
    g = imp.groupby("request_id")
    assert g.size().max() <= 6 and (g.position.max() == g.size()).all() and (g.coupon_id.nunique() == g.size()).all()
    assert (g.user_id.nunique() == 1).all() and (g.event_ts.nunique() == 1).all()
    assert (g.cart_value.nunique() == 1).all() and (g.cart_categories.nunique() == 1).all()
    assert (imp.cart_value >= 0).all() and (imp.loc[imp.placement == "home", "cart_value"] == 0).all()
    assert ((imp.cart_value > 0) == (imp.cart_categories != "")).all()
    cats = set(d["items"].category)
    assert all(set(s.split("|")) <= cats for s in imp.cart_categories if s)
    assert imp[["impression_id", "order_id", "discount_amount"]].isna().all().all()

    # claims / redemptions: after their impression (same user and coupon), within 72 h and validity
    follow = ce[ce.event_type != "impression"]
    parent = imp.set_index("event_id").loc[follow.impression_id]
    assert (parent.user_id.values == follow.user_id.values).all()
    assert (parent.coupon_id.values == follow.coupon_id.values).all()
    delay = follow.event_ts.values - parent.event_ts.values
    assert (delay >= np.timedelta64(1, "m")).all() and (delay <= np.timedelta64(72, "h")).all()
    assert (follow.event_ts <= vt[follow.index]).all()
    assert follow[["request_id", "placement", "position", "cart_value"]].isna().all().all()

    red = ce[ce.event_type == "redemption"]
    claims = ce[ce.event_type == "claim"].set_index("impression_id").event_ts
    assert red.impression_id.is_unique and red.impression_id.isin(claims.index).all()
    assert (claims.loc[red.impression_id].values < red.event_ts.values).all()
    # limits, budgets, orders, discounts
    per_user = red.groupby(["user_id", "coupon_id"]).size()
    assert (per_user.values <= c.per_user_limit.loc[per_user.index.get_level_values(1)].values).all()
    spent = red.groupby("coupon_id").discount_amount.sum()
    assert (spent <= c.budget.reindex(spent.index) + 1e-6).all()
    order_lines = be[be.event_type == "order"]
    assert red.order_id.is_unique and red.order_id.isin(order_lines.order_id).all()
    amount = order_lines.groupby("order_id").amount.sum().loc[red.order_id].values
    owner = order_lines.groupby("order_id").user_id.first().loc[red.order_id].values
    assert (owner == red.user_id.values).all()
    ctype, value = red.coupon_id.map(c.coupon_type).values, red.coupon_id.map(c.value).values
    expected = np.select(
        [ctype == "percent_off", ctype == "amount_off"],
        [np.round(value / 100 * amount, 2), np.minimum(value, amount)],
        schema.SHIPPING_FEE,
    )
    assert np.allclose(red.discount_amount.values, expected, atol=0.011)
    assert (amount >= red.coupon_id.map(c.min_spend).values - 1e-6).all()


# ----------------------------------------------------------------------------- memberships, audiences
def test_tiers_and_segments_are_those_of_membership_yaml():
    config = membership.load()
    assert gm.TIERS == config.tiers and gm.SEGMENTS == config.segments


def test_memberships_table(tiny_data):
    users, m = tiny_data["users"].set_index("user_id"), tiny_data["memberships"]
    config = membership.load()
    assert len(m) > 0 and m.user_id.isin(users.index).all() and m.valid_from.notna().all()
    assert not m.duplicated(["user_id", "valid_from"]).any()
    assert m.equals(m.sort_values(["user_id", "valid_from"]))  # one row per change, in order
    assert m.tier.dropna().isin(config.tiers).all() and set(m.tier.dropna()) == set(config.tiers)
    assert (m.tier.notna() | m.segments.notna()).all()  # users with neither have no row
    assert (m.valid_from >= m.user_id.map(users.signup_ts)).all()
    # a user's segments do not change; each segment holds about a tenth of the users
    assert (m.groupby("user_id").segments.nunique(dropna=False) == 1).all()
    assert (m.segments.dropna().map(membership.split).map("|".join) == m.segments.dropna()).all()  # canonical
    assert m.segments.dropna().map(lambda s: config.mask(membership.split(s)) > 0).all()  # declared segments
    segs = m.drop_duplicates("user_id").segments.dropna().map(membership.split)
    per_segment = pd.Series([s for ss in segs for s in ss]).value_counts()
    assert set(per_segment.index) == set(gm.SEGMENTS)
    assert per_segment.between(0.04 * TINY.n_users, 0.2 * TINY.n_users).all()
    assert segs.map(len).max() >= 2  # a user in two segments: "|"-joined

    rank = m.tier.map(lambda t: config.rank(t) if isinstance(t, str) else 0)
    members = m[rank > 0].groupby("user_id")
    assert members.ngroups == round(TINY.n_users / 3)  # a third of the users
    first = members.valid_from.min()
    start, end = pd.Timestamp(TINY.start), pd.Timestamp(TINY.end)
    assert (first < start).sum() > (first >= start).sum() > 0  # most joined before the period, some during
    assert first.max() < end
    # some members move up mid-period: the tier rank rises, never falls
    steps = rank[rank > 0].groupby(m.user_id[rank > 0]).diff().dropna()
    assert len(steps) > 0 and (steps == 1).all()
    assert (m[rank > 0].groupby("user_id").valid_from.max()[members.size() > 1] > start).all()
    # non-members in a segment have one row with no tier
    seg_only = m.groupby("user_id").tier.count() == 0
    assert seg_only.sum() > 0 and (m[m.user_id.isin(seg_only[seg_only].index)].segments.notna()).all()


def test_coupon_audiences(tiny_data):
    coupons = tiny_data["coupons"]
    config = membership.load()
    assert coupons.audience.notna().all()  # everyone-coupons say "all"
    parsed = coupons.audience.map(lambda a: membership.parse_audience(a, config))
    assert (parsed.map(lambda a: a.text) == coupons.audience).all()  # canonical form
    kinds = coupons.audience.str.replace(r"^segments:.*", "segments", regex=True)
    assert set(kinds) == {"all", "members", "tier>=gold", "tier>=platinum", "segments"}
    assert 0.6 <= (kinds == "all").mean() <= 0.85
    assert ((parsed.map(lambda a: a.segment_mask) > 0) == (kinds == "segments")).all()


def test_restricted_coupons_are_shown_only_to_users_their_audience_admits(tiny_data):
    """The server's NOT_IN_AUDIENCE rule, at the request time: the user's latest
    memberships row at or before the impression."""
    ce, coupons, m = tiny_data["coupon_events"], tiny_data["coupons"], tiny_data["memberships"]
    imp = ce[ce.event_type == "impression"]
    audience = imp.coupon_id.map(coupons.set_index("coupon_id").audience)
    at = membership_at(m, imp.user_id, imp.event_ts)
    assert audience_admits(audience, at["rank"], at.segments).all()
    restricted = (audience != "all").to_numpy()
    assert restricted.sum() >= 100
    members_only = (audience.isin(["members"]) | audience.str.startswith("tier>=")).to_numpy()
    assert members_only.any() and (at["rank"].to_numpy()[members_only] > 0).all()  # non-members never see them
    assert audience.str.startswith("segments:").any()
    # point in time matters: the user's final membership differs from the one when shown
    last = membership_at(m, imp.user_id, np.full(len(imp), pd.Timestamp(TINY.end)))
    changed = (last["rank"] != at["rank"]).to_numpy()
    assert (changed & restricted).any()


def test_member_centre_requests(tiny_data):
    ce, m = tiny_data["coupon_events"], tiny_data["memberships"]
    imp = ce[ce.event_type == "impression"]
    first = imp.drop_duplicates("request_id")
    at = membership_at(m, first.user_id, first.event_ts)
    member = pd.Series(at["rank"].to_numpy() > 0, index=first.index)
    centre = first.placement == "member_centre"
    assert centre.sum() > 0 and (first.loc[centre, "cart_value"] == 0).all()
    assert member[centre].mean() > 0.6 > member[~centre].mean()  # mostly members (non-members rarely)
    assert (~member[centre]).any()
    by_place = imp.placement.value_counts()
    assert by_place["member_centre"] < by_place["home"]


# ----------------------------------------------------------------------------- served slates
def _catalog(coupons: pd.DataFrame) -> Catalog:
    """The server's catalogue of the written coupons (what build-features would give it)."""
    c = coupons.sort_values("coupon_id").reset_index(drop=True)
    unix = lambda col: c[col].map(pd.Timestamp.timestamp).to_numpy(np.float64)  # noqa: E731
    cols = {name: np.full(len(c), "", dtype=object) for name in STRING_COLUMNS}
    cols |= {name: np.full(len(c), np.nan) for name in FLOAT_COLUMNS + STATS_COLUMNS}
    cols |= {
        "coupon_type": c.coupon_type.to_numpy(object), "coupon_scope": c.scope.to_numpy(object),
        "coupon_scope_value": c.scope_value.fillna("").to_numpy(object),
        "coupon_campaign_id": c.campaign_id.to_numpy(object), "coupon_value": c.value.to_numpy(np.float64),
        "coupon_min_spend": c.min_spend.to_numpy(np.float64), "coupon_valid_from_unix": unix("valid_from"),
        "coupon_valid_to_unix": unix("valid_to"), "coupon_budget": c.budget.to_numpy(np.float64),
        "coupon_per_user_limit": c.per_user_limit.to_numpy(np.float64),
    }  # fmt: skip
    config = membership.load()
    audiences = [membership.parse_audience(a, config) for a in c.audience]
    cols |= {
        "coupon_audience": np.array([a.text for a in audiences], object),
        "coupon_audience_min_tier": np.array([a.min_tier for a in audiences], np.float64),
        "coupon_audience_segment_mask": np.array([a.segment_mask for a in audiences], np.float64),
        "coupon_audience_segment_count": np.array([a.segment_count for a in audiences], np.float64),
    }
    return Catalog(c.coupon_id.to_numpy(object), cols, 0.0)


def _members_then(data) -> dict[str, tuple[float, float]]:
    """Per request id: the user's (tier rank, segment mask) at the request time, what
    the server's audience rule (stages.eligibility's ``member``) compares against."""
    config = membership.load()
    first = data["coupon_events"].query("event_type == 'impression'").drop_duplicates("request_id")
    at = membership_at(data["memberships"], first.user_id, first.event_ts)
    masks = [float(config.mask(membership.split(seg))) for seg in at.segments]
    return dict(zip(first.request_id, zip(at["rank"].astype(float), masks)))


def _logged_requests(coupon_events: pd.DataFrame):
    """(slate, the server's RankRequest for it as logged) per request id."""
    imp = coupon_events[coupon_events.event_type == "impression"]
    for _, g in imp.groupby("request_id", sort=True):
        first = g.iloc[0]
        cats = tuple(first.cart_categories.split("|")) if first.cart_categories else ()
        yield g, stages.RankRequest(first.user_id, tuple(g.coupon_id), first.placement, float(first.cart_value),
                                    cart_categories=cats, now=first.event_ts.timestamp())


def test_generator_checks_scope_where_the_server_does():
    assert {schema.PLACEMENTS[p] for p in gm.SCOPE_CHECKED} == stages.SCOPE_CHECKED_PLACEMENTS


def test_every_impression_is_one_the_server_would_serve(tiny, tiny_data):
    """The logging policy draws among the coupons the server's static rules let through
    the request as it is logged: every impression passes stages.eligibility (minimum
    spend at every placement, scope at cart and checkout, the audience against the
    user's membership at the request time), so the logged slates are slates the server
    could rank; a request with no such coupon is not logged."""
    catalog = _catalog(tiny_data["coupons"])
    members = _members_then(tiny_data)
    n_req = 0
    for slate, req in _logged_requests(tiny_data["coupon_events"]):
        member = members[slate.request_id.iloc[0]]  # the audience rule: membership at the request time
        el = stages.eligibility(req, catalog, stages.candidates(req, catalog, req.now), req.now, member=member)
        assert el.keep.all(), (req, el.dropped())
        n_req += 1
    stats = tiny[1].manifest["stats"]
    assert stats["ranking_requests"] == n_req and stats["ranking_requests_skipped"] >= 0
    imp = tiny_data["coupon_events"].query("event_type == 'impression'")
    assert set(imp.placement) == set(schema.PLACEMENTS)  # every placement is exercised
    scope = imp.coupon_id.map(tiny_data["coupons"].set_index("coupon_id").scope)
    at_cart = imp.placement.isin(["cart", "checkout"])
    assert not scope[at_cart].isin(["brand", "merchant"]).any()  # their scope is not in the log
    assert scope[at_cart].eq("category").any() and scope[~at_cart].isin(["brand", "merchant"]).any()


def test_a_short_slate_shows_every_coupon_the_server_would_serve(tiny_data):
    """Fewer than K servable coupons: all of them are shown (K >= impressions_per_request[0])."""
    catalog = _catalog(tiny_data["coupons"])
    vt = catalog.columns["coupon_valid_to_unix"]
    members = _members_then(tiny_data)
    short = 0
    for slate, req in _logged_requests(tiny_data["coupon_events"]):
        if len(slate) >= TINY.impressions_per_request[0]:
            continue
        short += 1
        every = stages.RankRequest(req.user_id, (), req.placement, req.cart_total, req.cart_categories, now=req.now)
        cands = stages.candidates(every, catalog, req.now)
        el = stages.eligibility(every, catalog, cands, req.now, member=members[slate.request_id.iloc[0]])
        showable = el.keep & (vt[cands.rows] - gm.SHOW_MARGIN >= req.now)  # the generator's margin before expiry
        assert set(cands.ids[showable]) == set(slate.coupon_id), req
    assert short > 0


def test_no_redemption_follows_an_impression_below_the_minimum_spend(tiny_data, mid_data):
    for d in (tiny_data, mid_data):
        ce, min_spend = d["coupon_events"], d["coupons"].set_index("coupon_id").min_spend
        imp = ce[ce.event_type == "impression"].set_index("event_id")
        assert (imp.cart_value >= imp.coupon_id.map(min_spend)).all()
        red = ce[ce.event_type == "redemption"]
        parent = imp.loc[red.impression_id]
        assert len(red) > 0 and (parent.cart_value.values >= parent.coupon_id.map(min_spend).values).all()


def test_impression_truth(tiny_data):
    ce, truth = tiny_data["coupon_events"], tiny_data["impression_truth"]
    imp_ids = ce.loc[ce.event_type == "impression", "event_id"]
    assert truth.impression_id.tolist() == imp_ids.tolist()
    assert truth.p_redeem.between(0, 1).all()


# ----------------------------------------------------------------------------- signal
@pytest.fixture(scope="module")
def labelled(mid_data) -> pd.DataFrame:
    ce, coupons, truth = mid_data["coupon_events"], mid_data["coupons"], mid_data["impression_truth"]
    imp = ce[ce.event_type == "impression"].merge(coupons, on="coupon_id")
    imp = imp.merge(truth, left_on="event_id", right_on="impression_id", suffixes=("", "_t"))
    redeemed = set(ce.loc[ce.event_type == "redemption", "impression_id"])
    at = membership_at(mid_data["memberships"], imp.user_id, imp.event_ts)
    return imp.assign(redeemed=imp.event_id.isin(redeemed), tier_rank=at["rank"].to_numpy())


def test_overall_rate_and_calibration(labelled):
    rate, mean_p = labelled.redeemed.mean(), labelled.p_redeem.mean()
    assert 0.02 <= rate <= 0.10
    assert abs(mean_p - rate) / rate < 0.20


def test_rate_rises_with_discount_depth(labelled):
    pct = labelled[labelled.coupon_type == "percent_off"]
    shallow, deep = pct[pct.value <= 15].redeemed.mean(), pct[pct.value >= 30].redeemed.mean()
    assert deep > 1.3 * shallow
    # and with the truth p, bin by bin
    bins = pct.groupby(pd.cut(pct.value, [0, 12, 22, 32, 40]), observed=True).p_redeem.mean()
    assert bins.is_monotonic_increasing


def test_position_and_placement_effects(labelled):
    by_pos = labelled.groupby("position").redeemed.mean()
    assert by_pos.loc[1] > by_pos.loc[4:].mean()
    by_place = labelled.groupby("placement").redeemed.mean()
    assert by_place["checkout"] > by_place["home"] > by_place["order_confirmation"]
    assert by_place["member_centre"] > by_place["home"]


def test_members_redeem_their_exclusive_coupons_more(labelled):
    """+0.6 on the logit for a restricted audience (always one that admits the user),
    +0.1 per tier rank on every coupon: the rates and the oracle's p both show it."""
    members = labelled[labelled.tier_rank > 0]
    exclusive = members.audience != "all"
    assert exclusive.sum() > 2_000
    assert members[exclusive].redeemed.mean() > 1.3 * members[~exclusive].redeemed.mean()
    assert members[exclusive].p_redeem.mean() > 1.3 * members[~exclusive].p_redeem.mean()
    everyone = labelled[labelled.audience == "all"]
    assert everyone[everyone.tier_rank > 0].p_redeem.mean() > everyone[everyone.tier_rank == 0].p_redeem.mean()


# ----------------------------------------------------------------------------- dirty rows
def test_dirty_rows_injected(dirty, tiny_data):
    out, summary = dirty
    for t in ALL_TABLES:
        assert pq.read_schema(out / t.file).remove_metadata().equals(t.schema), t.name
    m = json.loads((out / "manifest.json").read_text())
    d = load(out)
    be, ce, items, coupons, users = (d[k] for k in ("behaviour_events", "coupon_events", "items", "coupons", "users"))
    for name in ("users", "items", "coupons", "behaviour_events", "coupon_events"):
        assert d[name].duplicated().sum() >= 1, name
        assert m["dirty"][name]["duplicate_row"] >= 1
    assert be.user_id.isna().any() and ce.user_id.isna().any()
    assert (items.price < 0).any()
    assert (~coupons.coupon_type.isin(schema.COUPON_TYPES)).any()
    assert (coupons.valid_to < coupons.valid_from).any()
    assert (~be.event_type.isin(schema.BEHAVIOUR_EVENT_TYPES)).any()
    assert (~ce.event_type.isin(schema.COUPON_EVENT_TYPES)).any()
    imp_ts = ce[ce.event_type == "impression"].drop_duplicates("event_id").set_index("event_id").event_ts
    follow = ce[ce.event_type.isin(["claim", "redemption"])]
    assert (follow.event_ts < follow.impression_id.map(imp_ts)).any()
    # the clean rows are untouched: dropping the bad ones gives back the clean data set
    for name, key in (("users", "user_id"), ("items", "item_id"), ("coupons", "coupon_id"),
                      ("behaviour_events", "event_id"), ("coupon_events", "event_id")):  # fmt: skip
        clean = tiny_data[name]
        kept = d[name][d[name][key].isin(clean[key])].drop_duplicates()
        by_key = lambda df: df.sort_values(key).reset_index(drop=True)  # noqa: E731
        pd.testing.assert_frame_equal(by_key(kept), by_key(clean))
    assert summary.row_counts["coupon_events"] > len(tiny_data["coupon_events"])


def test_dirty_memberships_and_audiences(dirty, tiny_data):
    out, summary = dirty
    m = summary.manifest["dirty"]
    d = load(out)
    config = membership.load()
    ms, clean = d["memberships"], tiny_data["memberships"]
    kinds = {"duplicate_row", "duplicate_user_id_valid_from", "unknown_user_id", "unknown_tier", "null_user_id"}
    assert set(m["memberships"]) == kinds and all(v >= 1 for v in m["memberships"].values())
    assert len(ms) == len(clean) + sum(m["memberships"].values())
    assert ms.duplicated().sum() >= m["memberships"]["duplicate_row"]
    known = ms.dropna(subset=["user_id"]).drop_duplicates()
    assert known.duplicated(["user_id", "valid_from"]).sum() == m["memberships"]["duplicate_user_id_valid_from"]
    assert (~ms.user_id.dropna().isin(d["users"].user_id)).sum() == m["memberships"]["unknown_user_id"]
    assert (~ms.tier.dropna().isin(config.tiers)).sum() == m["memberships"]["unknown_tier"]
    assert ms.user_id.isna().sum() == m["memberships"]["null_user_id"]
    # the clean rows are untouched: the rows equal to a clean one give back the clean table
    kept = ms.merge(clean, how="inner").drop_duplicates()
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), clean.reset_index(drop=True))

    def parses(a) -> bool:
        try:
            membership.parse_audience(a, config)
            return True
        except ValueError:
            return False

    bad = ~d["coupons"].audience.map(parses)
    assert bad.sum() == m["coupons"]["bad_audience"] >= 1
    assert not d["coupons"].coupon_id[bad].isin(tiny_data["coupons"].coupon_id).any()  # new ids
