"""Seeded synthetic data generator: every raw table of :mod:`couponrank.schema`.

``generate(out_dir, SIZES["demo"])`` writes users, items, coupons, behaviour_events,
coupon_events, memberships (optional raw table) and impression_truth as Parquet plus
``manifest.json``. One
``numpy.random.default_rng(seed)`` drives everything, so the same config gives
byte-identical files. All simulation is vectorised numpy (couponrank.generate_model).

Dates. The period is the ``days`` days that end at 00:00 UTC of ``end_date``
(exclusive); ``end_date`` None means today (UTC, by the injected clock), so that
freshly generated data holds coupons valid now. The simulation works in seconds
since the period's start, so two end dates give the same data shifted in time, and
the same seed and end date give byte-identical files.

Generative model
----------------
Users. Category affinity theta_u ~ Dirichlet(2.0 * pop) mixed 95/5 with the category
popularity pop (Zipf-like, exponent 0.7) so it concentrates on a few categories;
price sensitivity s_u ~ Gamma(4, 0.25) (mean 1); coupon responsiveness
r_u ~ Normal(0, 0.8); activity lambda_u ~ Gamma(0.7, 1/0.7) (mean 1, heavy tail).
15% of users sign up during the period (no activity before signup).

Memberships (generate_model.make_memberships; its own rng stream, so the rest of the
world is as it was before memberships existed). A third of the users (exactly:
member_share) are members at some point; the tier on joining is silver/gold/platinum
50/30/20% (generate_model.TIERS, equal to features/membership.yaml's tiers). A member
joins during the period (before its last day) w.p. 0.3, and always when signing up in
it; the others joined before it (between signup and the start): about 60/40 overall.
25% of the silver and gold members whose membership starts 3+ days before the end
move up one tier mid-period (at least a day after joining and after the start), so
a user's tier depends on the time. Each of the 3 segments (generate_model.SEGMENTS,
equal to membership.yaml's: new_parents, students, pet_owners) holds each user w.p.
0.1, independently and members or not; a user's segments do not change. The
memberships table has one row per change, on whole minutes after the user's signup:
at signup with tier null for a user in a segment, on joining, on moving up (every row
repeats the user's segments, sorted and "|"-joined; null when none). Users who are neither
members nor in a segment have no row.

Catalogue. Each brand belongs to exactly one category; each merchant has a primary
category and 80% of its items are there. Item price is lognormal:
exp(mu_cat + 0.3 z_brand + 0.45 eps), mu_cat ~ U(log 8, log 120); item popularity
~ LogNormal(0, 1).

Coupons. Types 45% percent_off (5..40%, min_spend 0 half the time else 25..100),
35% amount_off (5..50, min_spend 2-5x the amount), 20% free_shipping (value 0,
worth schema.SHIPPING_FEE). Scopes 35% all (scope_value null), 35% category,
15% brand, 15% merchant. Validity windows of 3..30 days start on the hour, spread
from up to 20 days before the period to 2 days before its end. per_user_limit 1/2/3
(60/25/15%), campaign ids, budget = worth x max(10, reach x target rate x
LogU(2, 10)) where reach is the coupon's number of impressions (a generous plan).
Audiences (exact shares): 72% "all" (written as "all", never null), 15% "members",
5% "tier>=gold", 3% "tier>=platinum", 5% "segments:<id>" (30% of them name a second,
different segment: "segments:new_parents|students", sorted as the canonical form).

Behaviour. Sessions per user ~ Poisson(lambda_u x active days x rate), the rate set
so the log has ~target_events rows; start times follow a diurnal curve. A session
picks a category ~ theta_u and views 1 + Poisson(3) items, each from the session
category (15%: a fresh draw from theta_u), half by popularity and half by price
quantile q = U^(0.4 + 0.8 s_u) (cheap items for price-sensitive users); views are
20 s + Exp(100 s) apart. Each view is added to the cart w.p. 0.2 and favourited w.p.
0.06; a session with a cart ends in an order w.p. 0.4 (one order row per cart item,
amount = price).

Ranking requests (one per placement per session, with probability): home 0.25 at
the session start (empty cart); product_page 0.15 at a random view; cart 0.35 right
after a random add-to-cart; checkout 0.5 just before an order; order_confirmation
0.25 just after it (the cart is empty again); campaign 0.03 at a random view;
member_centre 3 s after the session start (empty cart) w.p. 0.2 when the user is a
member then, 0.03 when not. cart_value / cart_categories are the cart so far.

Logging policy: uniformly random among the coupons the server could serve. Each
request shows K ~ U{3..6} coupons drawn uniformly without replacement, positions
1..K, from those that pass the server's static eligibility rules
(couponrank.server.stages) applied to the request as logged (placement, event_ts,
cart_value, cart_categories), so every logged slate is one the server could rank:
  - valid at that moment: valid_from <= ts <= valid_to - 10 min;
  - min_spend <= cart_value at every placement. Home and order_confirmation
    requests have an empty cart (value 0), as do product_page / campaign requests
    before the first add-to-cart: they show only coupons without a minimum spend;
  - at cart and checkout only coupons in the cart's scope: scope "all", or a
    category scope whose category is in the cart. Brand- and merchant-scoped
    coupons are never shown at cart and checkout: the log records the cart's
    categories only (no brands or merchants), and the server, given the logged
    request, drops them as out of scope. Elsewhere the scope is not checked (a
    scoped coupon there promotes what is not yet in the cart), as on the server;
  - at every placement, the coupon's audience admits the user's membership at
    that moment (the latest memberships row with valid_from <= ts; the server's
    NOT_IN_AUDIENCE rule): "members" any tier, "tier>=gold" gold or platinum,
    "segments:..." a user in one of them. Non-members see only "all" coupons and
    those of their segments.
When fewer than K coupons pass, all of them are shown (in a random order); a request
where none passes shows nothing and is left out of the log (manifest
stats.ranking_requests_skipped). The server's online rules (per-user limit, budget)
are not part of the policy: they depend on outcomes simulated afterwards (see
Outcomes: such impressions get p = 0).

Redemption. p = sigmoid(A), A = b0 + sum of terms (generate_model.COEF):
  + 4.0 x depth x s_u       depth = worth / basket clipped to [0, 1]; worth = value% x
                            basket, amount, or SHIPPING_FEE; basket = cart_value, or
                            the median organic order when the cart is empty (the
                            policy shows only coupons with min_spend <= cart_value)
  + 1.0 x r_u
  + 0.5 x clip(log(C theta_u[target]), -3, 3)  target = scope category, the brand's
                            category, the merchant's primary category; 0 for "all"
  + 0.4 x 1[target category already in the cart]
  + 0.5 x exp(-hours_to_valid_to / 48)           urgency
  + placement: checkout +0.5, cart +0.35, member_centre +0.3, campaign +0.2,
               product_page +0.1, home 0, order_confirmation -0.5
  - 0.4 x log(position)
  - 0.2 x min(times this coupon was shown to this user in the previous 7 days, 10)
  + 0.6 x 1[restricted audience: members, tier>=..., segments]  (shown only to users
                            it admits: loyalty programmes report members redeem
                            their exclusive offers more)
  + 0.1 x the user's tier rank at the request time (0 not a member, 1 silver, 2
                            gold, 3 platinum), on every coupon
b0 is calibrated (bisection) so that mean p = target_redemption_rate (5%); it is
recorded in the manifest with the other coefficients. There is no term for a cart
below the minimum spend (earlier versions had - 2.0 x the relative gap): such
coupons are never shown, so it could not fire. Simplifications: min_spend is
checked against the whole cart and a discount applies to the whole order, whatever
the coupon's scope; beyond eligibility at cart and checkout, the scope only shapes
affinity, cart match and the order top-up.

Outcomes. redeemed ~ Bernoulli(p). Eligibility: once a user's redemptions of a coupon
(at their redemption times) reach per_user_limit, later impressions of that coupon to
that user cannot be redeemed: their p is 0 (impression_truth.p_redeem is this
effective p, so its mean matches the realised rate). Every redemption is preceded by
a claim; a non-redeemed impression is claimed w.p. 0.5 p + 0.01 (a weaker signal).
Delays after
the impression: redemption 2..30 min for 60% of cart/checkout impressions, else
log-uniform 2 min..72 h; claim between 1 min and the redemption (claim-only:
log-uniform 1 min..72 h); all capped at valid_to and the period end. Each redemption
gets a new order (order rows in behaviour_events): the cart when shown (which
already reaches min_spend), or, when it was empty, an item from the coupon's scope
(category/brand/merchant; "all": the session category); discount_amount = value%
of the order (percent_off), min(value, order) (amount_off) or SHIPPING_FEE. Then, in time order,
redemptions beyond per_user_limit for (user, coupon) and those once the coupon's
cumulative discount exceeds its budget are dropped (their claims stay).

Dirty data (dirty_fraction > 0, separate rng stream, the clean rows are unchanged):
duplicate rows (all tables), null user_id and unknown event_type (event copies with
new event ids), negative-price items and coupons with an unknown type or
valid_to < valid_from (new ids), coupons with a malformed audience ("tier>=diamond",
"vip", "segments:"; new ids), claims/redemptions timed before their impression; in
memberships: duplicate rows, rows repeating a (user_id, valid_from) with another tier,
unknown user ids, an unknown tier ("diamond", one second after a real row: its own
key) and null user ids. Each kind gets max(1, round(dirty_fraction x table rows)) rows; counts in the manifest.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time as clock_time, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from couponrank import generate_model as gm
from couponrank import schema
from couponrank.clock import Clock, utc_now, utc_today


@dataclass(frozen=True)
class GeneratorConfig:
    n_users: int
    n_coupons: int
    n_items: int
    n_categories: int
    n_brands: int
    n_merchants: int
    days: int
    target_events: int  # approximate number of behaviour events
    end_date: date | None = None  # the period ends at 00:00 UTC of this day; None: today (UTC)
    seed: int = 20260601
    impressions_per_request: tuple[int, int] = (3, 6)
    dirty_fraction: float = 0.0
    name: str = "custom"
    n_campaigns: int | None = None  # default max(2, n_coupons // 8)
    target_redemption_rate: float = 0.05
    affinity_concentration: float = 2.0
    activity_shape: float = 0.7
    extra_views_mean: float = 3.0
    p_drift: float = 0.15
    p_add_to_cart: float = 0.2
    p_favourite: float = 0.06
    p_order: float = 0.4
    p_home: float = 0.25
    p_product_page: float = 0.15
    p_cart: float = 0.35
    p_checkout: float = 0.5
    p_order_confirmation: float = 0.25
    p_campaign: float = 0.03
    claim_extra: float = 0.5
    claim_floor: float = 0.01
    # membership (tiers: generate_model.TIERS, = features/membership.yaml)
    member_share: float = 1 / 3  # users who are members at some point
    tier_shares: tuple[float, ...] = (0.5, 0.3, 0.2)  # tier on joining, lowest first
    p_join_during: float = 0.3  # members who join during the period (new users always do)
    p_upgrade: float = 0.25  # members below the top tier who move up one tier mid-period
    segment_share: float = 0.1  # users in each segment of generate_model.SEGMENTS (independently; members or not)
    # coupon audiences: all, members, tier>=gold, tier>=platinum, segments:<id>[|<id>]
    audience_shares: tuple[float, ...] = (0.72, 0.15, 0.05, 0.03, 0.05)
    p_member_centre: float = 0.2  # per session of a member
    p_member_centre_non_member: float = 0.03

    def __post_init__(self) -> None:
        if self.end_date is not None and (isinstance(self.end_date, datetime) or not isinstance(self.end_date, date)):
            raise ValueError(f"GeneratorConfig.end_date must be a date, got {self.end_date!r}")
        if not 1 <= self.n_categories <= 62:
            raise ValueError("n_categories must be in 1..62 (cart categories are a 64-bit mask)")
        if self.n_brands < self.n_categories or self.n_items < self.n_categories:
            raise ValueError("need at least one brand and one item per category")
        lo, hi = self.impressions_per_request
        if not 1 <= lo <= hi:
            raise ValueError("impressions_per_request must be (lo, hi) with 1 <= lo <= hi")
        if self.days < 2 or min(self.n_users, self.n_coupons, self.n_merchants) < 1:
            raise ValueError("need days >= 2 and at least one user, coupon and merchant")
        if len(self.tier_shares) != len(gm.TIERS) or not np.isclose(sum(self.tier_shares), 1.0):
            raise ValueError(f"tier_shares must be {len(gm.TIERS)} shares ({', '.join(gm.TIERS)}) summing to 1")
        if len(self.audience_shares) != 5 or not np.isclose(sum(self.audience_shares), 1.0):
            raise ValueError("audience_shares must be 5 shares (all, members, tier>=gold, tier>=platinum, "
                             "segments) summing to 1")

    def replace(self, **changes) -> GeneratorConfig:
        return replace(self, **changes)

    def resolved(self, clock: Clock = utc_now) -> GeneratorConfig:
        """This config with ``end_date`` fixed: today (UTC) by ``clock`` when unset."""
        return self if self.end_date is not None else replace(self, end_date=utc_today(clock))

    @property
    def end(self) -> datetime:
        """The period's end, 00:00 UTC of ``end_date`` (exclusive)."""
        if self.end_date is None:
            raise ValueError("end_date is not set; call resolved() first")
        return datetime.combine(self.end_date, clock_time(), UTC)

    @property
    def start(self) -> datetime:
        """The period's start, ``days`` days before :attr:`end`."""
        return self.end - timedelta(days=self.days)


SIZES: dict[str, GeneratorConfig] = {
    "tiny": GeneratorConfig(300, 40, 1_000, 12, 60, 30, 30, 30_000, name="tiny"),
    "demo": GeneratorConfig(3_000, 200, 5_000, 20, 200, 60, 60, 500_000, name="demo"),
    "large": GeneratorConfig(100_000, 5_000, 50_000, 40, 1_000, 300, 120, 10_000_000, name="large"),
}


@dataclass(frozen=True)
class GenerationSummary:
    out_dir: Path
    row_counts: dict[str, int]
    seconds: float
    manifest: dict = field(repr=False, default_factory=dict)


# every table generate() writes: the raw tables, the optional memberships, the oracle
OUTPUT_TABLES = (*schema.RAW_TABLES, schema.MEMBERSHIPS, schema.IMPRESSION_TRUTH)


# ----------------------------------------------------------------------------- arrow helpers
def _width(n: int, default: int) -> int:
    return max(default, len(str(max(n - 1, 0))))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    s = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), s, "")


def _take(names: pa.Array, idx: np.ndarray) -> pa.Array:
    """names[idx], null where idx < 0."""
    idx = np.asarray(idx, np.int64)
    neg = idx < 0
    return names.take(pa.array(np.where(neg, 0, idx), mask=neg if neg.any() else None))


def _ts(start_s: int, seconds: np.ndarray) -> pa.Array:
    return pa.array((start_s + np.asarray(seconds, np.int64)) * 1_000_000, pa.int64()).cast(schema.TS)


def _f64(x: np.ndarray) -> pa.Array:
    x = np.asarray(x, np.float64)
    nan = np.isnan(x)
    return pa.array(x, pa.float64(), mask=nan if nan.any() else None)


def _table(t: schema.Table, cols: dict[str, pa.Array]) -> pa.Table:
    return pa.table([cols[f.name] for f in t.schema], schema=t.schema)


class Names:
    def __init__(self, cfg: GeneratorConfig, n_campaigns: int):
        self.user = _ids("u", np.arange(cfg.n_users), _width(cfg.n_users, 6))
        self.item = _ids("i", np.arange(cfg.n_items), _width(cfg.n_items, 6))
        self.coupon = _ids("c", np.arange(cfg.n_coupons), _width(cfg.n_coupons, 5))
        self.cat = _ids("cat", np.arange(cfg.n_categories), _width(cfg.n_categories, 2))
        self.brand = _ids("b", np.arange(cfg.n_brands), _width(cfg.n_brands, 4))
        self.merchant = _ids("m", np.arange(cfg.n_merchants), _width(cfg.n_merchants, 3))
        self.campaign = _ids("camp", np.arange(n_campaigns), _width(n_campaigns, 2))
        self.segment = pa.array(gm.SEGMENTS)
        self.tier = pa.array(gm.TIERS)


def _masks(mask: np.ndarray, names: pa.Array, prefix: str = "") -> pa.Array:
    """prefix + the sorted, "|"-joined names of each bitmask's bits (the canonical form
    of couponrank.features.membership); null for an empty mask."""
    uniq, inv = np.unique(np.asarray(mask, np.uint64), return_inverse=True)
    listed = names.to_pylist()
    strings = [prefix + "|".join(sorted(n for i, n in enumerate(listed) if (int(m) >> i) & 1)) if m else None
               for m in uniq]
    return pa.array(strings, pa.string()).take(pa.array(inv.ravel()))


def _audiences(w: gm.World, nm: Names) -> pa.Array:
    """The coupons' audience texts (schema.AUDIENCE_*): "all" for everyone."""
    fixed = pa.array([schema.AUDIENCE_ALL, schema.AUDIENCE_MEMBERS, schema.AUDIENCE_TIER_PREFIX + gm.TIERS[1],
                      schema.AUDIENCE_TIER_PREFIX + gm.TIERS[2], None], pa.string())  # fmt: skip
    segments = _masks(w.c_seg, nm.segment, schema.AUDIENCE_SEGMENTS_PREFIX)
    return pc.coalesce(_take(fixed, w.c_audience), segments)


# ----------------------------------------------------------------------------- tables
def _dimension_tables(cfg: GeneratorConfig, w: gm.World, nm: Names, start_s: int) -> dict[str, pa.Table]:
    users = _table(schema.USERS, {
        "user_id": nm.user, "signup_ts": _ts(start_s, w.signup),
        "country": _take(pa.array(gm.COUNTRIES), w.country),
    })  # fmt: skip
    items = _table(schema.ITEMS, {
        "item_id": nm.item, "category": _take(nm.cat, w.item_cat), "brand": _take(nm.brand, w.item_brand),
        "merchant_id": _take(nm.merchant, w.item_merchant), "price": _f64(w.item_price),
    })  # fmt: skip
    sv = w.c_scope_value
    scope_value = pc.coalesce(
        _take(nm.cat, np.where(w.c_scope == gm.CAT, sv, -1)),
        _take(nm.brand, np.where(w.c_scope == gm.BRAND, sv, -1)),
        _take(nm.merchant, np.where(w.c_scope == gm.MERCH, sv, -1)),
    )
    coupons = _table(schema.COUPONS, {
        "coupon_id": nm.coupon, "coupon_type": _take(pa.array(schema.COUPON_TYPES), w.c_type),
        "value": _f64(w.c_value), "min_spend": _f64(w.c_min_spend),
        "scope": _take(pa.array(schema.COUPON_SCOPES), w.c_scope), "scope_value": scope_value,
        "valid_from": _ts(start_s, w.c_from), "valid_to": _ts(start_s, w.c_to),
        "per_user_limit": pa.array(w.c_limit, pa.int32()), "campaign_id": _take(nm.campaign, w.c_campaign),
        "budget": _f64(w.c_budget), "audience": _audiences(w, nm),
    })  # fmt: skip
    m = gm.membership_rows(w)
    memberships = _table(schema.MEMBERSHIPS, {
        "user_id": _take(nm.user, m.user), "valid_from": _ts(start_s, m.ts),
        "tier": _take(nm.tier, m.tier.astype(np.int64) - 1), "segments": _masks(m.seg, nm.segment),
    })  # fmt: skip
    return {"users": users, "items": items, "coupons": coupons, "memberships": memberships}


def _behaviour_table(w, b, o: gm.Outcomes, red_user: np.ndarray, nm: Names, start_s: int):
    """Behaviour log sorted by time; returns the table and the order count."""
    a_sess = b.v_sess[b.a_idx]
    ord_line = np.flatnonzero(b.ordered[a_sess])
    ord_sess = np.flatnonzero(b.ordered)
    order_ts = np.concatenate([b.order_ts[ord_sess], o.red_ts])
    order_no = np.empty(len(order_ts), np.int64)
    order_no[np.argsort(order_ts, kind="stable")] = np.arange(len(order_ts))
    organic_no = np.full(len(b.s_user), -1, np.int64)
    organic_no[ord_sess] = order_no[: len(ord_sess)]
    red_order_no = order_no[len(ord_sess) :]
    v_user = b.s_user[b.v_sess]
    user = np.concatenate([v_user, v_user[b.a_idx], v_user[b.f_idx], v_user[b.a_idx[ord_line]], red_user[o.line_red]])
    item = np.concatenate([b.v_item, b.v_item[b.a_idx], b.v_item[b.f_idx], b.v_item[b.a_idx[ord_line]], o.line_item])
    etype = np.concatenate([
        np.full(len(b.v_item), gm.VIEW, np.int8), np.full(len(b.a_idx), gm.ATC, np.int8),
        np.full(len(b.f_idx), gm.FAV, np.int8), np.full(len(ord_line) + len(o.line_item), gm.ORDER, np.int8),
    ])  # fmt: skip
    ts = np.concatenate([b.v_ts, b.a_ts, b.f_ts, b.order_ts[a_sess[ord_line]], o.red_ts[o.line_red]])
    order = np.concatenate([
        np.full(len(b.v_item) + len(b.a_idx) + len(b.f_idx), -1, np.int64),
        organic_no[a_sess[ord_line]], red_order_no[o.line_red],
    ])  # fmt: skip
    srt = gm.time_order(ts)
    user, item, etype, ts, order = user[srt], item[srt], etype[srt], ts[srt], order[srt]
    n = len(ts)
    amount = np.where(order >= 0, w.item_price[item], np.nan)
    table = _table(schema.BEHAVIOUR_EVENTS, {
        "event_id": _ids("be", np.arange(n), _width(n, 9)), "user_id": _take(nm.user, user),
        "item_id": _take(nm.item, item), "event_type": _take(pa.array(schema.BEHAVIOUR_EVENT_TYPES), etype),
        "event_ts": _ts(start_s, ts), "order_id": _order_ids(order, len(order_ts)), "amount": _f64(amount),
    })  # fmt: skip
    return table, red_order_no, len(order_ts)


def _order_ids(order: np.ndarray, n_orders: int) -> pa.Array:
    return _take(_ids("o", np.arange(n_orders), _width(n_orders, 8)), order)


def _cart_categories(mask: np.ndarray, nm: Names, n_cat: int) -> pa.Array:
    uniq, inv = np.unique(mask, return_inverse=True)
    names = nm.cat.to_pylist()
    strings = ["|".join(names[c] for c in range(n_cat) if (int(m) >> c) & 1) for m in uniq]
    return pa.array(strings, pa.string()).take(pa.array(inv.ravel()))


def _coupon_tables(cfg, b, r, imp, o, red_order_no, n_orders, nm, start_s):
    n_imp, n_claim, n_red = len(imp.coupon), len(o.claim_imp), len(o.red_imp)
    ts_imp = r.ts[imp.req]
    user_imp = b.s_user[r.sess[imp.req]]
    # request ids numbered in time order over the requests that showed something
    used = imp.req[np.r_[True, imp.req[1:] != imp.req[:-1]]] if n_imp else imp.req  # imp.req is sorted
    req_no = np.full(len(r.ts), -1, np.int64)
    req_no[used[np.lexsort((used, r.ts[used]))]] = np.arange(len(used))

    src = np.concatenate([np.arange(n_imp), o.claim_imp, o.red_imp])  # the impression behind each row
    etype = np.concatenate([np.full(n_imp, gm.IMPRESSION, np.int8), np.full(n_claim, gm.CLAIM, np.int8),
                            np.full(n_red, gm.REDEMPTION, np.int8)])  # fmt: skip
    ts = np.concatenate([ts_imp, o.claim_ts, o.red_ts])
    srt = gm.time_order(ts)
    pos_of = np.empty(len(srt), np.int64)
    pos_of[srt] = np.arange(len(srt))
    n = len(srt)
    event_ids = _ids("ce", np.arange(n), _width(n, 9))
    src, etype, ts = src[srt], etype[srt], ts[srt]
    is_imp = etype == gm.IMPRESSION
    is_red = etype == gm.REDEMPTION
    red_row = np.full(n, -1, np.int64)
    red_row[is_red] = srt[is_red] - n_imp - n_claim
    imp_row = np.where(is_imp, -1, pos_of[src])  # row of the parent impression (rows are sorted)
    req = imp.req[src]
    cart = np.where(is_imp, r.cart_value[req], np.nan)
    mask_by_no = np.empty(len(used), np.uint64)
    mask_by_no[req_no[used]] = r.cart_mask[used]
    req_cats = _cart_categories(mask_by_no, nm, cfg.n_categories)  # per request number
    cart_cats = req_cats.take(pa.array(req_no[req[is_imp]]))
    imp_positions = np.flatnonzero(is_imp)
    cats_idx = np.full(n, -1, np.int64)
    cats_idx[imp_positions] = np.arange(len(imp_positions))
    table = _table(schema.COUPON_EVENTS, {
        "event_id": event_ids, "user_id": _take(nm.user, user_imp[src]), "coupon_id": _take(nm.coupon, imp.coupon[src]),
        "event_type": _take(pa.array(schema.COUPON_EVENT_TYPES), etype), "event_ts": _ts(start_s, ts),
        "request_id": _take(_ids("r", np.arange(len(used)), _width(len(used), 8)), np.where(is_imp, req_no[req], -1)),
        "placement": _take(pa.array(schema.PLACEMENTS), np.where(is_imp, r.place[req], -1)),
        "position": pa.array(imp.pos[src], pa.int32(), mask=~is_imp),
        "cart_value": _f64(cart), "cart_categories": _take(cart_cats, cats_idx),
        "impression_id": _take(event_ids, imp_row),
        "order_id": _order_ids(np.where(is_red, red_order_no[np.maximum(red_row, 0)], -1), n_orders),
        "discount_amount": _f64(np.where(is_red, o.red_discount[np.maximum(red_row, 0)], np.nan)),
    })  # fmt: skip
    truth_t = _table(schema.IMPRESSION_TRUTH, {
        "impression_id": event_ids.filter(pa.array(is_imp)), "p_redeem": _f64(o.p_eff[src[is_imp]]),
    })  # fmt: skip
    return table, truth_t


# ----------------------------------------------------------------------------- dirty rows
def _set(t: pa.Table, name: str, arr) -> pa.Table:
    return t.set_column(t.schema.get_field_index(name), name, arr)


def _inject_dirty(tables: dict[str, pa.Table], cfg: GeneratorConfig) -> tuple[dict[str, pa.Table], dict]:
    """Add bad rows (see the module docstring); clean rows are kept as they are."""
    rng = np.random.default_rng([cfg.seed, 0xD127])  # own stream: the clean data stay identical
    report: dict[str, dict[str, int]] = {}
    out = {}
    for name in ("users", "items", "coupons", "behaviour_events", "coupon_events", "memberships"):
        t = tables[name]
        n = t.num_rows
        if n == 0:
            out[name], report[name] = t, {}
            continue
        k = max(1, int(round(cfg.dirty_fraction * n)))
        key_col = t.schema.names[0]
        prefix = {"items": "i", "coupons": "c", "behaviour_events": "be", "coupon_events": "ce"}.get(name, "")
        width = len(t.column(key_col)[0].as_py()) - len(prefix) if n else 1
        fresh = [n]  # next number for a new id

        def new_ids(m: int) -> pa.Array:
            ids = _ids(prefix, np.arange(fresh[0], fresh[0] + m), width)
            fresh[0] += m
            return ids

        bad, after, kinds = [], [], {}

        def add(kind: str, src: np.ndarray, rows: pa.Table) -> None:
            bad.append(rows)
            after.append(src)
            kinds[kind] = len(src)

        src = rng.integers(0, n, k)
        add("duplicate_row", src, t.take(src))
        if name == "items":
            src = rng.integers(0, n, k)
            rows = _set(t.take(src), "item_id", new_ids(k))
            add("negative_price", src, _set(rows, "price", pc.negate(rows.column("price"))))
        if name == "coupons":
            src = rng.integers(0, n, k)
            rows = _set(_set(t.take(src), "coupon_id", new_ids(k)), "coupon_type", pa.array(["bogo"] * k))
            add("unknown_coupon_type", src, rows)
            src = rng.integers(0, n, k)
            rows = _set(t.take(src), "coupon_id", new_ids(k))
            vf, vt = rows.column("valid_from"), rows.column("valid_to")
            add("valid_to_before_valid_from", src, _set(_set(rows, "valid_from", vt), "valid_to", vf))
            src = rng.integers(0, n, k)
            rows = _set(t.take(src), "coupon_id", new_ids(k))
            malformed = np.array(["tier>=diamond", "vip", "segments:"])[np.arange(k) % 3]
            add("bad_audience", src, _set(rows, "audience", pa.array(malformed, pa.string())))
        if name == "memberships":
            # a row like another on the same key (user_id, valid_from) but with another tier
            src = np.sort(rng.choice(n, min(k, n), replace=False))
            rows = t.take(src)
            rank = pc.fill_null(pc.index_in(rows.column("tier"), value_set=pa.array(gm.TIERS)), -1).to_numpy() + 1
            add("duplicate_user_id_valid_from", src, _set(rows, "tier", pa.array(np.array(gm.TIERS)[rank % 3])))
            src = rng.integers(0, n, k)
            users = _ids("u", np.arange(cfg.n_users, cfg.n_users + k), len(t.column("user_id")[0].as_py()) - 1)
            add("unknown_user_id", src, _set(t.take(src), "user_id", users))
            src = np.sort(rng.choice(n, min(k, n), replace=False))
            rows = t.take(src)  # one second later: its own key (rows are on whole minutes after signup)
            later = pc.add(rows.column("valid_from").cast(pa.int64()), 1_000_000).cast(schema.TS)
            add("unknown_tier", src, _set(_set(rows, "tier", pa.array(["diamond"] * len(src))), "valid_from", later))
            src = rng.integers(0, n, k)
            add("null_user_id", src, _set(t.take(src), "user_id", pa.nulls(k, pa.string())))
        if name in ("behaviour_events", "coupon_events"):
            src = rng.integers(0, n, k)
            rows = _set(_set(t.take(src), "event_id", new_ids(k)), "user_id", pa.nulls(k, pa.string()))
            add("null_user_id", src, rows)
            src = rng.integers(0, n, k)
            rows = _set(t.take(src), "event_id", new_ids(k))
            unknown = pa.array(["click" if prefix == "be" else "dismiss"] * k)
            add("unknown_event_type", src, _set(rows, "event_type", unknown))
        if name == "coupon_events":
            follow = np.flatnonzero(pc.not_equal(t.column("event_type"), "impression").to_numpy(zero_copy_only=False))
            if len(follow):
                src = follow[rng.integers(0, len(follow), k)]
                rows = _set(t.take(src), "event_id", new_ids(k))
                parent = pc.index_in(rows.column("impression_id"), value_set=t.column("event_id"))
                parent_us = t.column("event_ts").cast(pa.int64()).to_numpy()[parent.to_numpy()]
                before = parent_us - rng.integers(60, 2 * 3600, k) * 1_000_000
                rows = _set(rows, "event_ts", pa.array(before).cast(schema.TS))
                add("claim_or_redemption_before_impression", src, rows)
        full = pa.concat_tables([t, *bad])
        order = np.argsort(np.concatenate([2 * np.arange(n), *(2 * a + 1 for a in after)]), kind="stable")
        out[name] = full.take(pa.array(order))
        report[name] = kinds
    out["impression_truth"] = tables["impression_truth"]
    return out, report


# ----------------------------------------------------------------------------- driver
def generate(out_dir: Path, config: GeneratorConfig, progress: bool = False,
             clock: Clock = utc_now) -> GenerationSummary:
    """Simulate ``config`` and write the raw Parquet tables + manifest.json to ``out_dir``
    (the period ends on ``config.end_date``, or today by ``clock`` when it is unset)."""
    t0 = time.perf_counter()
    cfg = config.resolved(clock)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def step(what: str) -> None:
        if progress:
            print(f"[generate {cfg.name}] {time.perf_counter() - t0:7.1f}s {what}", file=sys.stderr, flush=True)

    rng = np.random.default_rng(cfg.seed)
    step("world")
    w = gm.make_world(cfg, rng)
    step("behaviour")
    b = gm.simulate_behaviour(cfg, w, rng, gm.RowSampler(w.theta))
    step(f"requests ({len(b.s_user):,} sessions, {len(b.v_item):,} views)")
    r = gm.make_requests(cfg, w, b, rng)
    imp = gm.sample_impressions(cfg, w, r, rng)
    step(f"redemption model ({len(imp.coupon):,} impressions)")
    ordered = np.flatnonzero(b.ordered)
    totals = b.a_cum[b.a_off[ordered] + b.cart_cnt[ordered] - 1]
    ref_basket = round(float(np.median(totals)) if len(totals) else 2 * float(np.median(w.item_price)), 2)
    truth = gm.redemption_probability(cfg, w, b, r, imp, ref_basket)
    gm.plan_budgets(cfg, w, imp, ref_basket, rng)
    o = gm.simulate_outcomes(cfg, w, b, r, imp, truth.p, rng)

    step("tables")
    start_s = int(cfg.start.timestamp())
    nm = Names(cfg, w.n_campaigns)
    tables = _dimension_tables(cfg, w, nm, start_s)
    red_user = b.s_user[r.sess[imp.req[o.red_imp]]]
    tables["behaviour_events"], red_order_no, n_orders = _behaviour_table(w, b, o, red_user, nm, start_s)
    tables["coupon_events"], tables["impression_truth"] = _coupon_tables(
        cfg, b, r, imp, o, red_order_no, n_orders, nm, start_s
    )
    dirty: dict[str, dict[str, int]] = {}
    if cfg.dirty_fraction > 0:
        step("dirty rows")
        tables, dirty = _inject_dirty(tables, cfg)

    step("writing parquet")
    for t in OUTPUT_TABLES:
        assert tables[t.name].schema.equals(t.schema), t.name
        pq.write_table(tables[t.name], out_dir / t.file, compression="zstd")
    counts = {name: t.num_rows for name, t in tables.items()}
    n_red = len(o.red_imp)
    n_req = int(np.count_nonzero(np.diff(imp.req))) + (len(imp.req) > 0)  # requests that showed a coupon
    manifest = {
        "generator": "couponrank.generate",
        "name": cfg.name,
        "seed": cfg.seed,
        "config": _config_dict(cfg),
        "start": cfg.start.isoformat(),
        "end": cfg.end.isoformat(),
        "currency": "USD",
        "shipping_fee": schema.SHIPPING_FEE,
        "files": {t.name: t.file for t in OUTPUT_TABLES},
        "row_counts": counts,
        "stats": {
            "sessions": len(b.s_user), "ranking_requests": n_req,
            "ranking_requests_skipped": len(r.ts) - n_req,  # no coupon the server would serve
            "impressions": len(imp.coupon), "claims": len(o.claim_imp), "redemptions": n_red,
            "orders": n_orders, "redemption_rate": n_red / max(len(imp.coupon), 1),
            "mean_p_redeem": float(o.p_eff.mean()) if len(o.p_eff) else 0.0,
            "ineligible_impressions": o.ineligible, "redemptions_drawn": o.drawn,
            "dropped_per_user_limit": o.dropped_limit, "dropped_budget": o.dropped_budget,
            "members": int(np.count_nonzero(w.m_join != gm.NEVER)),
            "members_moving_up": int(np.count_nonzero(w.m_up != gm.NEVER)),
            "users_in_a_segment": int(np.count_nonzero(w.u_seg)),
            "restricted_coupons": int(np.count_nonzero(w.c_audience != gm.AUD_ALL)),
            "restricted_impressions": int(np.count_nonzero(w.c_audience[imp.coupon] != gm.AUD_ALL)),
        },
        "model": {
            "intercept": truth.intercept, "coefficients": gm.COEF,
            "placement_effect": dict(zip(schema.PLACEMENTS, gm.PLACEMENT_EFFECT.tolist())),
            "urgency_hours": gm.URGENCY_HOURS, "fatigue_window_days": gm.FATIGUE_WINDOW // gm.DAY,
            "fatigue_cap": gm.FATIGUE_CAP, "ref_basket": ref_basket, "show_margin_minutes": gm.SHOW_MARGIN // 60,
        },
        "membership": {"tiers": list(gm.TIERS), "segments": nm.segment.to_pylist()},
        "dirty": dirty,
    }  # fmt: skip
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    step("done")
    return GenerationSummary(out_dir, counts, time.perf_counter() - t0, manifest)


def _config_dict(cfg: GeneratorConfig) -> dict:
    d = asdict(cfg)
    d["end_date"] = cfg.end_date.isoformat()
    d["impressions_per_request"] = list(cfg.impressions_per_request)
    return d
