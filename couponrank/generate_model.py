"""Vectorised simulation core of the synthetic data generator.

:mod:`couponrank.generate` documents the generative model and writes the tables; this
module turns a ``GeneratorConfig`` and one ``numpy.random.Generator`` into integer-coded
numpy arrays. Every step is vectorised over users, sessions, events or impressions; the
only Python loops run over small bounds (cart length, chunks of ranking requests,
order top-up rounds). Times are int64 seconds since the period start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from couponrank import schema
from couponrank.schema import SHIPPING_FEE

if TYPE_CHECKING:  # pragma: no cover
    from couponrank.generate import GeneratorConfig

MIN, HOUR, DAY = 60, 3600, 86400
PCT, AMT, FREE = 0, 1, 2  # index into schema.COUPON_TYPES
ALL, CAT, BRAND, MERCH = 0, 1, 2, 3  # index into schema.COUPON_SCOPES
VIEW, ATC, FAV, ORDER = 0, 1, 2, 3  # index into schema.BEHAVIOUR_EVENT_TYPES
IMPRESSION, CLAIM, REDEMPTION = 0, 1, 2  # index into schema.COUPON_EVENT_TYPES
HOME, PRODUCT, CART, CHECKOUT, CONFIRM, CAMPAIGN, MEMBER_CENTRE = range(7)  # index into schema.PLACEMENTS
assert schema.COUPON_TYPES == ("percent_off", "amount_off", "free_shipping")
assert schema.COUPON_SCOPES == ("all", "category", "brand", "merchant")
assert schema.BEHAVIOUR_EVENT_TYPES == ("view", "add_to_cart", "favourite", "order")
assert schema.COUPON_EVENT_TYPES == ("impression", "claim", "redemption")
assert schema.PLACEMENTS == (
    "home", "product_page", "cart", "checkout", "order_confirmation", "campaign", "member_centre",
)  # fmt: skip
# Membership tiers, lowest first, and segment ids: features/membership.yaml's (a test
# keeps them equal). A user's tier is held as its rank: 0 not a member, 1 = TIERS[0],
# ...; a user's or a coupon's segments as a bitmask (bit i: SEGMENTS[i]).
TIERS = ("silver", "gold", "platinum")
SEGMENTS = ("new_parents", "students", "pet_owners")
# Coupon audiences (index into GeneratorConfig.audience_shares): everyone, any member,
# tier>=gold, tier>=platinum, users in one or two segments.
AUD_ALL, AUD_MEMBERS, AUD_GOLD, AUD_PLATINUM, AUD_SEGMENTS = range(5)
AUD_MIN_TIER = np.array([0, 1, 2, 3, 0], np.int8)  # lowest tier rank each audience admits
P_TWO_SEGMENTS = 0.3  # a segment coupon names a second segment (when there are two or more)
NEVER = np.int64(2**60)  # "no such time" (never joins / never moves up)

# Coefficients of the redemption logit A (see the model in couponrank.generate).
COEF = {
    "discount_depth": 4.0,  # x depth (0..1) x price sensitivity s_u
    "responsiveness": 1.0,  # x r_u
    "affinity": 0.5,  # x clip(log(n_categories * theta_u[target]), -3, 3)
    "cart_match": 0.4,  # x 1[target category already in the cart]
    "urgency": 0.5,  # x exp(-hours_to_valid_to / 48)
    "position": 0.4,  # x log(position)
    "fatigue": 0.2,  # x min(times shown to this user in the previous 7 days, 10)
    "exclusive": 0.6,  # x 1[the coupon's audience is restricted: members, tier>=, segments]
    "tier_rank": 0.1,  # x the user's tier rank at the request time (0 not a member .. 3 platinum)
}
PLACEMENT_EFFECT = np.array([0.0, 0.1, 0.35, 0.5, -0.5, 0.2, 0.3])  # order of schema.PLACEMENTS
URGENCY_HOURS = 48.0
FATIGUE_WINDOW, FATIGUE_CAP = 7 * DAY, 10
SHOW_MARGIN = 10 * MIN  # a coupon is shown only if valid_from <= ts <= valid_to - SHOW_MARGIN
# Placements where a scoped coupon must match the cart to be shown: the server's
# couponrank.server.stages.SCOPE_CHECKED_PLACEMENTS (a test keeps the two equal).
SCOPE_CHECKED = (CART, CHECKOUT)
MAX_DELAY = 72 * HOUR  # claims / redemptions follow their impression within 1 min .. 72 h
REDEMPTION_ORDER_LINES = 1.7  # observed mean lines of a redemption order (sizes the session rate)

COUNTRIES = ("US", "CA", "GB", "DE", "FR", "AU", "MX", "BR")
COUNTRY_P = (0.62, 0.08, 0.08, 0.06, 0.05, 0.05, 0.03, 0.03)
PCT_VALUES = np.array([5, 10, 15, 20, 25, 30, 35, 40], float)
AMT_VALUES = np.array([5, 10, 15, 20, 25, 30, 40, 50], float)
DIURNAL = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4, 4.5, 4, 3.5, 3.5, 4, 4.5, 5, 6, 6.5, 6, 4, 2.5])
DIURNAL = DIURNAL / DIURNAL.sum()


# ----------------------------------------------------------------------------- helpers
def offsets(counts: np.ndarray) -> np.ndarray:
    off = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=off[1:])
    return off


def within(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each group of a grouped (np.repeat-ed) array."""
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(offsets(counts), counts)


def seg_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting at every group."""
    cs = np.cumsum(values)
    first = np.repeat(offsets(counts), counts)
    return cs - (cs[first] - values[first])


def time_order(ts: np.ndarray) -> np.ndarray:
    """Same as np.argsort(ts, kind="stable") for int times, but several times faster."""
    n = len(ts)
    if n == 0:
        return np.zeros(0, np.int64)
    lo = ts.min()
    assert (int(ts.max()) - int(lo) + 1) * n < 2**62
    return np.sort((ts - lo) * n + np.arange(n)) % n


def balanced(rng: np.random.Generator, n: int, probs) -> np.ndarray:
    """A shuffled label array with (nearly) exact proportions: every label shows up."""
    counts = np.floor(np.asarray(probs) * n).astype(int)
    counts[: n - counts.sum()] += 1
    return rng.permutation(np.repeat(np.arange(len(probs)), counts))


@dataclass
class Pool:
    """Members grouped by a key (e.g. items by category), optionally ordered inside a group."""

    members: np.ndarray
    off: np.ndarray
    cnt: np.ndarray

    @classmethod
    def build(cls, group: np.ndarray, n_groups: int, order_key: np.ndarray | None = None) -> Pool:
        order = np.argsort(group, kind="stable") if order_key is None else np.lexsort((order_key, group))
        cnt = np.bincount(group, minlength=n_groups)
        return cls(order, offsets(cnt), cnt)

    def pick(self, groups: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Member at quantile q in [0, 1) of each group (uniform q = uniform pick)."""
        c = self.cnt[groups]
        return self.members[self.off[groups] + np.minimum((q * c).astype(np.int64), c - 1)]


class RowSampler:
    """Draws column j of row r with probability P[r, j], for many (r, u) at once."""

    def __init__(self, probs: np.ndarray):
        cdf = np.cumsum(probs, axis=1)
        cdf /= cdf[:, -1:]
        self.k = probs.shape[1]
        self.flat = (cdf + np.arange(len(probs))[:, None]).ravel()

    def draw(self, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        j = np.searchsorted(self.flat, rows + u, side="right") - rows * self.k
        return np.clip(j, 0, self.k - 1)


class WeightedPool:
    """Members grouped by a key, picked with probability proportional to a weight."""

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
        self.pool = Pool.build(group, n_groups)
        w = weight[self.pool.members]
        cs = seg_cumsum(w, self.pool.cnt)
        tot = np.repeat(cs[self.pool.off + self.pool.cnt - 1], self.pool.cnt)
        self.flat = group[self.pool.members] + cs / tot

    def pick(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.flat, groups + u, side="right")
        lo = self.pool.off[groups]
        return self.pool.members[np.clip(pos, lo, lo + self.pool.cnt[groups] - 1)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------- world
@dataclass
class World:
    theta: np.ndarray  # (users, categories) category affinity
    sens: np.ndarray  # price sensitivity s_u (mean 1)
    resp: np.ndarray  # coupon responsiveness r_u
    activity: np.ndarray  # relative activity lambda_u (mean 1, Gamma)
    signup: np.ndarray  # seconds relative to start (negative: before the period)
    country: np.ndarray
    cat_pop: np.ndarray
    brand_cat: np.ndarray
    merchant_cat: np.ndarray
    item_cat: np.ndarray
    item_brand: np.ndarray
    item_merchant: np.ndarray
    item_price: np.ndarray
    item_pop: np.ndarray
    c_type: np.ndarray
    c_value: np.ndarray
    c_min_spend: np.ndarray
    c_scope: np.ndarray
    c_scope_value: np.ndarray  # category / brand / merchant index, -1 for "all"
    c_target_cat: np.ndarray  # category the coupon targets, -1 for "all"
    c_from: np.ndarray
    c_to: np.ndarray
    c_limit: np.ndarray
    c_campaign: np.ndarray
    n_campaigns: int
    c_budget: np.ndarray = field(default_factory=lambda: np.zeros(0))  # set by plan_budgets
    # membership (make_memberships): times in seconds since the start, NEVER when none
    m_join: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # becomes a member
    m_tier: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # tier rank on joining (0: never)
    m_up: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # moves up one tier
    u_seg: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # bitmask of segments
    c_audience: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # AUD_*
    c_min_tier: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # lowest tier rank admitted
    c_seg: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # segments admitted (0: any user)


def make_world(cfg: GeneratorConfig, rng: np.random.Generator) -> World:
    U, C, B, M, I, N = cfg.n_users, cfg.n_categories, cfg.n_brands, cfg.n_merchants, cfg.n_items, cfg.n_coupons
    T = cfg.days * DAY
    cat_pop = 1.0 / np.arange(1, C + 1) ** 0.7
    cat_pop = rng.permutation(cat_pop / cat_pop.sum())

    g = rng.gamma(cfg.affinity_concentration * cat_pop, 1.0, size=(U, C)) + 1e-12
    theta = 0.95 * g / g.sum(axis=1, keepdims=True) + 0.05 * cat_pop
    sens = rng.gamma(4.0, 0.25, U)
    resp = rng.normal(0.0, 0.8, U)
    activity = rng.gamma(cfg.activity_shape, 1.0 / cfg.activity_shape, U)
    new = rng.random(U) < 0.15
    old_age = np.minimum(rng.exponential(365 * DAY, U), 5 * 365 * DAY)
    signup = np.where(new, rng.random(U) * 0.8 * T, -old_age - HOUR).astype(np.int64)
    country = rng.choice(len(COUNTRIES), U, p=COUNTRY_P)

    brand_cat = rng.permutation(np.arange(B) % C)
    merchant_cat = rng.permutation(np.arange(M) % C)
    item_cat = rng.permutation(np.concatenate([np.arange(C), rng.choice(C, I - C, p=cat_pop)]))
    item_brand = Pool.build(brand_cat, C).pick(item_cat, rng.random(I))
    merch_pool = Pool.build(merchant_cat, C)
    primary = (rng.random(I) < 0.8) & (merch_pool.cnt[item_cat] > 0)
    item_merchant = rng.integers(0, M, I)
    item_merchant[primary] = merch_pool.pick(item_cat[primary], rng.random(int(primary.sum())))
    cat_mu = rng.uniform(np.log(8.0), np.log(120.0), C)
    brand_z = rng.normal(0.0, 1.0, B)
    price = np.exp(cat_mu[item_cat] + 0.3 * brand_z[item_brand] + 0.45 * rng.normal(0.0, 1.0, I))
    price = np.maximum(np.round(price, 2), 0.99)
    item_pop = rng.lognormal(0.0, 1.0, I)

    c_type = balanced(rng, N, (0.45, 0.35, 0.20))
    c_scope = balanced(rng, N, (0.35, 0.35, 0.15, 0.15))
    pct_v, amt_v = rng.choice(PCT_VALUES, N), rng.choice(AMT_VALUES, N)
    value = np.select([c_type == PCT, c_type == AMT], [pct_v, amt_v], 0.0)
    ms_pct = np.where(rng.random(N) < 0.5, 0.0, rng.choice([25.0, 35.0, 50.0, 75.0, 100.0], N))
    ms_amt = np.maximum(np.round(amt_v * rng.uniform(2.0, 5.0, N) / 5.0) * 5.0, 2 * amt_v)
    ms_free = np.where(rng.random(N) < 0.4, 0.0, rng.choice([15.0, 25.0, 35.0, 50.0], N))
    min_spend = np.select([c_type == PCT, c_type == AMT], [ms_pct, ms_amt], ms_free)
    brands_with = np.flatnonzero(np.bincount(item_brand, minlength=B))
    merchants_with = np.flatnonzero(np.bincount(item_merchant, minlength=M))
    sv_cat = rng.choice(C, N, p=0.5 * cat_pop + 0.5 / C)
    sv_brand = brands_with[rng.integers(0, len(brands_with), N)]
    sv_merch = merchants_with[rng.integers(0, len(merchants_with), N)]
    conds = [c_scope == CAT, c_scope == BRAND, c_scope == MERCH]
    scope_value = np.select(conds, [sv_cat, sv_brand, sv_merch], -1)
    target_cat = np.select(conds, [sv_cat, brand_cat[sv_brand], merchant_cat[sv_merch]], -1)
    lead = min(20, cfg.days // 2) * DAY
    c_from = (rng.uniform(-lead, T - 2 * DAY, N) // HOUR).astype(np.int64) * HOUR
    c_to = c_from + rng.integers(3 * 24, 30 * 24 + 1, N) * HOUR
    c_limit = rng.choice(np.array([1, 2, 3]), N, p=[0.6, 0.25, 0.15])
    n_campaigns = cfg.n_campaigns or max(2, N // 8)
    c_campaign = rng.integers(0, n_campaigns, N)
    w = World(
        theta, sens, resp, activity, signup, country, cat_pop, brand_cat, merchant_cat,
        item_cat, item_brand, item_merchant, price, item_pop, c_type, value, min_spend,
        c_scope, scope_value, target_cat, c_from, c_to, c_limit, c_campaign, n_campaigns,
    )  # fmt: skip
    make_memberships(cfg, w, membership_rng(cfg))
    return w


def membership_rng(cfg: GeneratorConfig) -> np.random.Generator:
    """The memberships' and audiences' own stream: the rest of the world is drawn as
    before they existed."""
    return np.random.default_rng([cfg.seed, 0x4D454D42])


def make_memberships(cfg: GeneratorConfig, w: World, rng: np.random.Generator) -> None:
    """Users' memberships and segments, coupons' audiences (see the model in couponrank.generate).

    A member joins at a whole number of minutes after signup: before the period (in
    (signup, start)) or, w.p. p_join_during and always for users who sign up in it,
    during it (before its last day). Members below the top tier whose membership
    starts 3+ days before the end move up one tier w.p. p_upgrade, at least a day
    after joining (and after the start), also on the minute grid of their signup."""
    U, N, T = cfg.n_users, cfg.n_coupons, cfg.days * DAY
    member = balanced(rng, U, (1.0 - cfg.member_share, cfg.member_share)) == 1
    tier = np.where(member, 1 + rng.choice(len(TIERS), U, p=cfg.tier_shares), 0).astype(np.int8)
    during = (rng.random(U) < cfg.p_join_during) | (w.signup >= 0)
    lo = np.where(during, np.maximum(w.signup, 0), w.signup)
    hi = np.where(during, T - DAY, 0)
    k_lo = np.maximum(-(-(lo - w.signup) // MIN), 1)  # minutes after signup: the first in [lo, hi)
    k_hi = (hi - w.signup - 1) // MIN  # the last
    join = w.signup + MIN * (k_lo + (rng.random(U) * np.maximum(k_hi - k_lo + 1, 1)).astype(np.int64))
    member &= join < T - HOUR  # (only a tiny config can push a join past the end)
    w.m_join = np.where(member, join, NEVER)
    up_lo = np.maximum(join, 0) + DAY
    can = member & (tier < len(TIERS)) & (join < T - 3 * DAY)
    up = up_lo + rng.random(U) * np.maximum(T - DAY - up_lo, 0)
    up = join + MIN * ((up.astype(np.int64) - join) // MIN)
    w.m_up = np.where(can & (rng.random(U) < cfg.p_upgrade), up, NEVER)
    w.m_tier = np.where(member, tier, 0).astype(np.int8)
    bits = rng.random((U, len(SEGMENTS))) < cfg.segment_share
    w.u_seg = (bits.astype(np.uint64) << np.arange(len(SEGMENTS), dtype=np.uint64)).sum(axis=1, dtype=np.uint64)

    aud = balanced(rng, N, cfg.audience_shares).astype(np.int8)
    first = rng.integers(0, len(SEGMENTS), N).astype(np.uint64)
    second = (first + np.uint64(1) + rng.integers(0, max(len(SEGMENTS) - 1, 1), N).astype(np.uint64)) % np.uint64(
        len(SEGMENTS)
    )  # another segment than the first
    two = (rng.random(N) < P_TWO_SEGMENTS) & (len(SEGMENTS) > 1)
    one = np.uint64(1)
    seg = (one << first) | np.where(two, one << second, np.uint64(0))
    w.c_audience = aud
    w.c_min_tier = AUD_MIN_TIER[aud]
    w.c_seg = np.where(aud == AUD_SEGMENTS, seg, np.uint64(0))


def tier_at(w: World, user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The user's tier rank at ``ts`` (a membership row holds from its valid_from on)."""
    tier = w.m_tier[user]
    return np.where(ts >= w.m_up[user], tier + 1, np.where(ts >= w.m_join[user], tier, 0)).astype(np.int8)


def admits(w: World, coupon: np.ndarray, user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Whether the coupon's audience admits the user's membership at ``ts`` (arrays that
    broadcast): tier rank >= the audience's minimum and, for a segment audience, the
    user in one of its segments (couponrank.features.membership.admitted)."""
    tier_ok = w.c_min_tier[coupon] <= tier_at(w, user, ts)
    seg = w.c_seg[coupon]
    return tier_ok & ((seg == 0) | ((seg & w.u_seg[user]) != 0))


@dataclass
class Memberships:
    """The memberships table's rows, sorted by (user, valid_from): a row at signup with
    no tier for a user in a segment, a row when joining, a row when moving up."""

    user: np.ndarray
    ts: np.ndarray
    tier: np.ndarray  # rank, 0: not a member
    seg: np.ndarray  # the user's segments bitmask


def membership_rows(w: World) -> Memberships:
    users = np.arange(len(w.m_join))
    seg_only = users[w.u_seg != 0]
    joined = users[w.m_join != NEVER]
    moved = users[w.m_up != NEVER]
    user = np.concatenate([seg_only, joined, moved])
    ts = np.concatenate([w.signup[seg_only], w.m_join[joined], w.m_up[moved]])
    tier = np.concatenate([np.zeros(len(seg_only), np.int8), w.m_tier[joined], w.m_tier[moved] + 1]).astype(np.int8)
    order = np.lexsort((ts, user))
    return Memberships(user[order], ts[order], tier[order], w.u_seg[user[order]])


# ----------------------------------------------------------------------------- behaviour
@dataclass
class Behaviour:
    s_user: np.ndarray
    s_cat: np.ndarray
    n_views: np.ndarray
    v_off: np.ndarray
    v_sess: np.ndarray
    v_item: np.ndarray
    v_ts: np.ndarray
    v_cart_excl: np.ndarray  # add-to-carts in the session before this view
    f_idx: np.ndarray  # views that were favourited
    f_ts: np.ndarray
    a_idx: np.ndarray  # views that were added to the cart (grouped by session, in order)
    a_ts: np.ndarray
    a_cum: np.ndarray  # cart value after this add-to-cart
    a_mask: np.ndarray  # bitmask of cart categories after this add-to-cart
    a_off: np.ndarray  # per session
    cart_cnt: np.ndarray  # per session
    ordered: np.ndarray  # per session
    order_ts: np.ndarray  # per session
    s_start: np.ndarray


def rows_per_session(cfg: GeneratorConfig) -> float:
    """Expected behaviour rows per session, including the orders of coupon redemptions."""
    views = 1.0 + cfg.extra_views_mean
    rows = views * (1.0 + cfg.p_add_to_cart + cfg.p_favourite) + cfg.p_order * views * cfg.p_add_to_cart
    p_cart = 1.0 - (1.0 - cfg.p_add_to_cart) * np.exp(-cfg.extra_views_mean * cfg.p_add_to_cart)
    requests = (
        cfg.p_home + cfg.p_product_page + cfg.p_campaign + cfg.p_cart * p_cart
        + (cfg.p_checkout + cfg.p_order_confirmation) * cfg.p_order * p_cart
        + cfg.member_share * cfg.p_member_centre + (1 - cfg.member_share) * cfg.p_member_centre_non_member
    )  # fmt: skip
    # an upper bound: a request shows fewer when fewer coupons pass eligibility (small worlds)
    shown = requests * 0.5 * sum(cfg.impressions_per_request)
    return rows + shown * cfg.target_redemption_rate * REDEMPTION_ORDER_LINES


def simulate_behaviour(cfg: GeneratorConfig, w: World, rng: np.random.Generator, theta_s: RowSampler) -> Behaviour:
    U, T = cfg.n_users, cfg.days * DAY
    lo = np.maximum(w.signup, 0)
    hi = T - 3 * HOUR
    weight = w.activity * np.maximum(hi - lo, 0)
    lam = weight * (cfg.target_events / rows_per_session(cfg)) / weight.sum()
    n_sess = rng.poisson(lam)
    s_user = np.repeat(np.arange(U), n_sess)
    S = len(s_user)
    t = lo[s_user] + rng.random(S) * (hi - lo[s_user])
    t2 = (t // DAY) * DAY + rng.choice(24, S, p=DIURNAL) * HOUR + rng.integers(0, HOUR, S)
    s_start = np.where((t2 >= lo[s_user]) & (t2 <= hi), t2, t).astype(np.int64)
    s_cat = theta_s.draw(s_user, rng.random(S))

    n_views = 1 + rng.poisson(cfg.extra_views_mean, S)
    v_off = offsets(n_views)
    v_sess = np.repeat(np.arange(S), n_views)
    V = len(v_sess)
    v_user = s_user[v_sess]
    v_cat = s_cat[v_sess]
    drift = np.flatnonzero(rng.random(V) < cfg.p_drift)
    v_cat[drift] = theta_s.draw(v_user[drift], rng.random(len(drift)))
    # cheap items are likelier for price-sensitive users (quantile q**a skews to 0 when a > 1)
    by_price = Pool.build(w.item_cat, cfg.n_categories, order_key=w.item_price)
    q = rng.random(V) ** (0.4 + 0.8 * w.sens[v_user])
    by_pop = WeightedPool(w.item_cat, w.item_pop, cfg.n_categories)
    v_item = np.where(rng.random(V) < 0.5, by_price.pick(v_cat, q), by_pop.pick(v_cat, rng.random(V)))
    gap = (20 + rng.exponential(100.0, V)).astype(np.int64)
    gap[v_off] = rng.integers(5, 30, S)
    v_ts = s_start[v_sess] + seg_cumsum(gap, n_views)

    atc = rng.random(V) < cfg.p_add_to_cart
    fav = rng.random(V) < cfg.p_favourite
    a_idx = np.flatnonzero(atc)
    a_ts = v_ts[a_idx] + rng.integers(5, 20, len(a_idx))
    f_idx = np.flatnonzero(fav)
    f_ts = v_ts[f_idx] + rng.integers(3, 18, len(f_idx))
    cart_cnt = np.bincount(v_sess[a_idx], minlength=S)
    a_off = offsets(cart_cnt)
    a_cum = seg_cumsum(w.item_price[v_item[a_idx]], cart_cnt)
    a_mask = np.left_shift(np.uint64(1), w.item_cat[v_item[a_idx]].astype(np.uint64))
    k = within(cart_cnt)
    for j in range(1, int(k.max(initial=0)) + 1):
        rows = np.flatnonzero(k == j)
        a_mask[rows] |= a_mask[rows - 1]
    v_cart_excl = seg_cumsum(atc.astype(np.int64), n_views) - atc

    ordered = (cart_cnt > 0) & (rng.random(S) < cfg.p_order)
    order_ts = v_ts[v_off + n_views - 1] + 60 + rng.exponential(120.0, S).astype(np.int64)
    return Behaviour(
        s_user, s_cat, n_views, v_off, v_sess, v_item, v_ts, v_cart_excl, f_idx, f_ts,
        a_idx, a_ts, a_cum, a_mask, a_off, cart_cnt, ordered, order_ts, s_start,
    )  # fmt: skip


# ----------------------------------------------------------------------------- requests
@dataclass
class Requests:
    sess: np.ndarray
    place: np.ndarray
    ts: np.ndarray
    cart_n: np.ndarray  # add-to-carts in the cart when shown
    cart_value: np.ndarray
    cart_mask: np.ndarray
    user: np.ndarray


def make_requests(cfg: GeneratorConfig, w: World, b: Behaviour, rng: np.random.Generator) -> Requests:
    S = len(b.s_user)
    parts = []

    def at_view(p, place, dt):
        s = np.flatnonzero(rng.random(S) < p)
        vi = b.v_off[s] + (rng.random(len(s)) * b.n_views[s]).astype(np.int64)
        parts.append((s, place, b.v_ts[vi] + dt, b.v_cart_excl[vi]))

    s = np.flatnonzero(rng.random(S) < cfg.p_home)
    parts.append((s, HOME, b.s_start[s], np.zeros(len(s), np.int64)))
    at_view(cfg.p_product_page, PRODUCT, 2)
    s = np.flatnonzero((b.cart_cnt > 0) & (rng.random(S) < cfg.p_cart))
    ai = (rng.random(len(s)) * b.cart_cnt[s]).astype(np.int64)
    parts.append((s, CART, b.a_ts[b.a_off[s] + ai] + 2, ai + 1))
    s = np.flatnonzero(b.ordered & (rng.random(S) < cfg.p_checkout))
    parts.append((s, CHECKOUT, b.order_ts[s] - 20, b.cart_cnt[s]))
    s = np.flatnonzero(b.ordered & (rng.random(S) < cfg.p_order_confirmation))
    parts.append((s, CONFIRM, b.order_ts[s] + 3, np.zeros(len(s), np.int64)))  # the order emptied the cart
    at_view(cfg.p_campaign, CAMPAIGN, 1)
    # the member centre, just after the session starts (empty cart), mostly by members
    t = b.s_start + 3
    member = tier_at(w, b.s_user, t) > 0
    s = np.flatnonzero(rng.random(S) < np.where(member, cfg.p_member_centre, cfg.p_member_centre_non_member))
    parts.append((s, MEMBER_CENTRE, t[s], np.zeros(len(s), np.int64)))

    sess = np.concatenate([p[0] for p in parts])
    place = np.concatenate([np.full(len(p[0]), p[1], np.int8) for p in parts])
    ts = np.concatenate([p[2] for p in parts]).astype(np.int64)
    cart_n = np.concatenate([p[3] for p in parts]).astype(np.int64)
    keep = ts <= cfg.days * DAY - 2 * SHOW_MARGIN
    sess, place, ts, cart_n = sess[keep], place[keep], ts[keep], cart_n[keep]
    last = np.maximum(b.a_off[sess] + cart_n - 1, 0)
    has = cart_n > 0
    value = np.where(has, b.a_cum[last] if len(b.a_cum) else 0.0, 0.0)
    mask = np.where(has, b.a_mask[last] if len(b.a_mask) else 0, 0).astype(np.uint64)
    return Requests(sess, place, ts, cart_n, np.round(value, 2), mask, b.s_user[sess])


# ----------------------------------------------------------------------------- impressions
@dataclass
class Impressions:
    req: np.ndarray
    coupon: np.ndarray
    pos: np.ndarray


def servable(w: World, r: Requests, req: np.ndarray, coupon: np.ndarray) -> np.ndarray:
    """Whether the server's static rules let ``coupon`` through at request ``req``
    (arrays that broadcast), judged on what the impression logs: valid at ts (with
    SHOW_MARGIN), min_spend <= cart_value at every placement, and at the cart and
    checkout an in-scope coupon: scope "all", or a category scope whose category is in
    the cart. Brand and merchant scopes are never shown there: the log keeps the
    cart's categories only, so the server, given the logged request, would drop them.
    At every placement the coupon's audience admits the user's membership at ts
    (:func:`admits`)."""
    ts, cart_value, place = r.ts[req], r.cart_value[req], r.place[req]
    valid = (w.c_from[coupon] <= ts) & (ts <= w.c_to[coupon] - SHOW_MARGIN)
    spend = w.c_min_spend[coupon] <= cart_value
    scope = w.c_scope[coupon]
    bit = np.where(scope == CAT, w.c_scope_value[coupon], 0).astype(np.uint64)  # category < 62
    cat_in_cart = ((r.cart_mask[req] >> bit) & np.uint64(1)).astype(bool)
    in_scope = (scope == ALL) | ((scope == CAT) & cat_in_cart)
    checked = np.isin(place, SCOPE_CHECKED)
    return valid & spend & (in_scope | ~checked) & admits(w, coupon, r.user[req], ts)


def sample_impressions(cfg: GeneratorConfig, w: World, r: Requests, rng: np.random.Generator) -> Impressions:
    """K ~ U{lo..hi} coupons per request, uniformly without replacement among those the
    server would let through at that request (:func:`servable`); all of them in a
    random order when fewer than K are; a request with none shows nothing (skipped).

    Candidates come from the coupons showable on the request's day sorted by min_spend,
    so the ones within the cart's value are a prefix. A first pass draws 4 x hi of
    them with replacement and keeps the first K distinct servable ones; a request left
    short is redone exhaustively (every coupon of the prefix, in a random order). Both
    give a uniform random ordered K-subset, the second also when fewer exist."""
    days, kmin, kmax = cfg.days, cfg.impressions_per_request[0], cfg.impressions_per_request[1]
    last_show = w.c_to - SHOW_MARGIN
    d0 = np.maximum(w.c_from // DAY, 0)
    d1 = np.minimum(last_show // DAY, days - 1)
    n_days = np.maximum(d1 - d0 + 1, 0)
    day = np.repeat(d0, n_days) + within(n_days)
    coupon_of = np.repeat(np.arange(len(w.c_from)), n_days)
    cents = np.round(w.c_min_spend * 100).astype(np.int64)
    big = np.int64(1) << 40  # > any cart value in cents
    key = day * big + cents[coupon_of]
    order = np.argsort(key, kind="stable")  # by day, then min_spend
    day_list, key = coupon_of[order], key[order]
    day_off = offsets(np.bincount(day, minlength=days))
    R = len(r.ts)
    d = r.ts // DAY
    cart_cents = np.round(r.cart_value * 100).astype(np.int64)
    n_spend = np.searchsorted(key, d * big + cart_cents, side="right") - day_off[d]  # min_spend <= cart
    K = rng.integers(kmin, kmax + 1, R)
    M = 4 * kmax
    out_req, out_coupon, out_pos = [], [], []
    short = np.zeros(R, bool)
    chunk = 200_000
    for lo in range(0, R, chunk):
        rows = np.arange(lo, min(lo + chunk, R))
        cnt = n_spend[rows][:, None]
        pos = day_off[d[rows]][:, None] + (rng.random((len(rows), M)) * cnt).astype(np.int64)
        cand = day_list[np.minimum(pos, max(len(day_list) - 1, 0))] if len(day_list) else np.zeros_like(pos)
        ok = (cnt > 0) & servable(w, r, rows[:, None], cand)
        srt = np.argsort(cand, axis=1, kind="stable")
        cs = np.take_along_axis(cand, srt, axis=1)
        dup_s = np.zeros(cs.shape, bool)
        dup_s[:, 1:] = cs[:, 1:] == cs[:, :-1]
        dup = np.empty_like(dup_s)
        np.put_along_axis(dup, srt, dup_s, axis=1)
        keep = ok & ~dup
        rank = np.cumsum(keep, axis=1)
        short[rows] = (rank[:, -1] < K[rows]) & (n_spend[rows] > 0)
        keep &= (rank <= K[rows, None]) & ~short[rows, None]
        rr, cc = np.nonzero(keep)
        out_req.append(rows[rr])
        out_coupon.append(cand[rr, cc])
        out_pos.append(rank[rr, cc])

    # the requests left short: every candidate of the prefix, servable ones in a random order
    redo = np.flatnonzero(short)
    width = n_spend[redo]
    step = max(1, 4_000_000 // max(int(width.max(initial=1)), 1))
    for lo in range(0, len(redo), step):
        rows, wd = redo[lo : lo + step], width[lo : lo + step]
        L = int(wd.max())
        j = np.arange(L)[None, :]
        inside = j < wd[:, None]
        cand = day_list[np.where(inside, day_off[d[rows]][:, None] + j, 0)]
        ok = inside & servable(w, r, rows[:, None], cand)
        u = np.where(ok, rng.random((len(rows), L)), 2.0)
        srt = np.argsort(u, axis=1, kind="stable")
        cand = np.take_along_axis(cand, srt, axis=1)
        rank = np.cumsum(np.take_along_axis(ok, srt, axis=1), axis=1)
        keep = np.take_along_axis(ok, srt, axis=1) & (rank <= K[rows, None])
        rr, cc = np.nonzero(keep)
        out_req.append(rows[rr])
        out_coupon.append(cand[rr, cc])
        out_pos.append(rank[rr, cc])
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    req, coupon, pos = cat(out_req, np.int64), cat(out_coupon, np.int64), cat(out_pos, np.int32)
    srt = np.lexsort((pos, req))
    return Impressions(req[srt], coupon[srt], pos[srt])


def fatigue(user: np.ndarray, coupon: np.ndarray, ts: np.ndarray, n_coupons: int, horizon: int) -> np.ndarray:
    """Times the same coupon was shown to the same user in the FATIGUE_WINDOW before ts."""
    key = user.astype(np.int64) * n_coupons + coupon
    order = np.lexsort((ts, key))
    k = key[order]
    gid = np.cumsum(np.r_[True, k[1:] != k[:-1]]) - 1
    span = horizon + 2 * FATIGUE_WINDOW
    comp = gid * span + ts[order] + FATIGUE_WINDOW
    left = np.searchsorted(comp, comp - FATIGUE_WINDOW, side="left")
    out = np.empty(len(ts), np.int64)
    out[order] = np.arange(len(ts)) - left
    return out


@dataclass
class Truth:
    p: np.ndarray
    logit_wo_intercept: np.ndarray
    intercept: float
    depth: np.ndarray
    fatigue: np.ndarray


def redemption_probability(
    cfg: GeneratorConfig, w: World, b: Behaviour, r: Requests, imp: Impressions, ref_basket: float
) -> Truth:
    c, req = imp.coupon, imp.req
    user = b.s_user[r.sess[req]]
    ts, cart_value, place = r.ts[req], r.cart_value[req], r.place[req]
    ctype, value, tgt = w.c_type[c], w.c_value[c], w.c_target_cat[c]
    # the spend the discount is measured against: the cart, or a typical basket when it is
    # empty (then min_spend is 0: sample_impressions shows only coupons whose minimum
    # the cart already reaches, so the cart is also >= min_spend)
    base = np.where(cart_value > 0, cart_value, ref_basket)
    worth = np.select([ctype == PCT, ctype == AMT], [value / 100.0 * base, value], SHIPPING_FEE)
    depth = np.clip(worth / base, 0.0, 1.0)
    scoped = tgt >= 0
    aff = np.where(scoped, np.log(w.theta[user, np.maximum(tgt, 0)] * cfg.n_categories), 0.0)
    in_cart = scoped & ((r.cart_mask[req] >> np.maximum(tgt, 0).astype(np.uint64)) & np.uint64(1)).astype(bool)
    hours_left = (w.c_to[c] - ts) / HOUR
    fat = fatigue(user, c, ts, cfg.n_coupons, cfg.days * DAY)
    # shown only when the audience admits the user (servable), so a restricted coupon
    # here is always one the user may use
    restricted = (w.c_min_tier[c] > 0) | (w.c_seg[c] != 0)
    a = (
        COEF["discount_depth"] * depth * w.sens[user]
        + COEF["responsiveness"] * w.resp[user]
        + COEF["affinity"] * np.clip(aff, -3.0, 3.0)
        + COEF["cart_match"] * in_cart
        + COEF["urgency"] * np.exp(-hours_left / URGENCY_HOURS)
        + PLACEMENT_EFFECT[place]
        - COEF["position"] * np.log(imp.pos)
        - COEF["fatigue"] * np.minimum(fat, FATIGUE_CAP)
        + COEF["exclusive"] * restricted
        + COEF["tier_rank"] * tier_at(w, user, ts)
    )
    intercept = calibrate_intercept(a, cfg.target_redemption_rate)
    return Truth(sigmoid(a + intercept), a, intercept, depth, fat)


def calibrate_intercept(a: np.ndarray, target: float) -> float:
    """Intercept b0 with mean(sigmoid(b0 + a)) == target (bisection on a fixed subsample)."""
    sub = a[:: max(1, len(a) // 400_000)]
    if len(sub) == 0:
        return float(np.log(target / (1 - target)))
    lo, hi = -20.0, 10.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sigmoid(sub + mid).mean() < target else (lo, mid)
    return round(0.5 * (lo + hi), 6)


# ----------------------------------------------------------------------------- outcomes
def plan_budgets(cfg: GeneratorConfig, w: World, imp: Impressions, ref_basket: float, rng: np.random.Generator) -> None:
    """Campaign budget per coupon: its worth x planned redemptions (its reach x a generous factor)."""
    N = cfg.n_coupons
    reach = np.bincount(imp.coupon, minlength=N)
    worth = np.select([w.c_type == PCT, w.c_type == AMT], [w.c_value / 100.0 * ref_basket, w.c_value], SHIPPING_FEE)
    planned = np.maximum(10.0, reach * cfg.target_redemption_rate * np.exp(rng.uniform(np.log(2.0), np.log(10.0), N)))
    w.c_budget = np.ceil(worth * planned / 50.0) * 50.0


@dataclass
class Outcomes:
    claim_imp: np.ndarray  # impression index of each claim
    claim_ts: np.ndarray
    red_imp: np.ndarray  # impression index of each (kept) redemption
    red_ts: np.ndarray
    red_discount: np.ndarray
    line_red: np.ndarray  # order lines of the redemption orders: index into red_*
    line_item: np.ndarray
    p_eff: np.ndarray  # p, or 0 where the user had already used up the coupon's per_user_limit
    ineligible: int  # impressions shown after the user had used up the coupon
    drawn: int  # redemptions drawn for eligible impressions, before the post-hoc limit and budget
    dropped_limit: int
    dropped_budget: int


def simulate_outcomes(
    cfg: GeneratorConfig, w: World, b: Behaviour, r: Requests, imp: Impressions, p: np.ndarray, rng: np.random.Generator
) -> Outcomes:
    n, T = len(imp.coupon), cfg.days * DAY
    ts, place = r.ts[imp.req], r.place[imp.req]
    redeem = rng.random(n) < p
    bound = np.minimum(np.minimum(w.c_to[imp.coupon] - ts, T - 1 - ts), MAX_DELAY)  # >= SHOW_MARGIN
    ri = np.flatnonzero(redeem)
    quick = np.isin(place[ri], (CART, CHECKOUT)) & (rng.random(len(ri)) < 0.6)
    slow = np.exp(rng.uniform(np.log(2 * MIN), np.log(MAX_DELAY), len(ri)))
    d_red = np.minimum(np.where(quick, rng.uniform(2 * MIN, 30 * MIN, len(ri)), slow).astype(np.int64), bound[ri])

    # eligibility: once a user has redeemed a coupon per_user_limit times, later impressions of
    # it cannot be redeemed (p_eff = 0). Counting every drawn redemption is exact: a draw of an
    # ineligible impression lands after the limit was already reached.
    user = b.s_user[r.sess[imp.req]].astype(np.int64)
    group = user * cfg.n_coupons + imp.coupon
    span = T + 2 * MAX_DELAY
    red_key = np.sort(group[ri] * span + ts[ri] + d_red)
    before = np.searchsorted(red_key, group * span + ts, side="left") - np.searchsorted(red_key, group * span)
    eligible = before < w.c_limit[imp.coupon]
    p_eff = np.where(eligible, p, 0.0)
    keep_draw = eligible[ri]
    ri, d_red = ri[keep_draw], d_red[keep_draw]
    m = len(ri)
    redeem &= eligible

    claim = redeem | (rng.random(n) < cfg.claim_extra * p_eff + cfg.claim_floor)
    ci = np.flatnonzero(claim)
    d_claim = np.minimum(np.exp(rng.uniform(np.log(MIN), np.log(MAX_DELAY), len(ci))).astype(np.int64), bound[ci])
    d_claim_red = MIN + (rng.random(m) * (d_red - MIN)).astype(np.int64)  # strictly before the redemption
    d_claim[np.searchsorted(ci, ri)] = d_claim_red

    # the order each redemption is applied to: the cart when shown, topped up with items in the
    # coupon's scope (or the session's category) until it is non-empty and reaches min_spend
    # (as impressions meet min_spend, only an empty cart -- min_spend 0 -- gets an item)
    c = imp.coupon[ri]
    sess, cart_n = r.sess[imp.req[ri]], r.cart_n[imp.req[ri]]
    red_parts = [np.repeat(np.arange(m), cart_n)]
    item_parts = [b.v_item[b.a_idx[np.repeat(b.a_off[sess], cart_n) + within(cart_n)]]]
    total = np.bincount(red_parts[0], weights=w.item_price[item_parts[0]], minlength=m)
    n_lines = cart_n.copy()
    scope, sv, ms = w.c_scope[c], w.c_scope_value[c], w.c_min_spend[c]
    cat_pool = WeightedPool(w.item_cat, w.item_pop, cfg.n_categories)
    brand_pool = Pool.build(w.item_brand, cfg.n_brands)
    merch_pool = Pool.build(w.item_merchant, cfg.n_merchants)
    for _ in range(60):
        need = np.flatnonzero((n_lines == 0) | (total < ms - 1e-9))
        if len(need) == 0:
            break
        sc, v, u = scope[need], sv[need], rng.random(len(need))
        item = np.empty(len(need), np.int64)
        in_cat = (sc == ALL) | (sc == CAT)
        grp = np.where(sc == CAT, v, b.s_cat[sess[need]])
        item[in_cat] = cat_pool.pick(grp[in_cat], u[in_cat])
        item[sc == BRAND] = brand_pool.pick(v[sc == BRAND], u[sc == BRAND])
        item[sc == MERCH] = merch_pool.pick(v[sc == MERCH], u[sc == MERCH])
        red_parts.append(need)
        item_parts.append(item)
        total[need] += w.item_price[item]
        n_lines[need] += 1
    line_red, line_item = np.concatenate(red_parts), np.concatenate(item_parts)
    total = np.round(total, 2)
    ctype, value = w.c_type[c], w.c_value[c]
    disc = np.select(
        [ctype == PCT, ctype == AMT], [np.round(value / 100.0 * total, 2), np.minimum(value, total)], SHIPPING_FEE
    )

    # post-hoc constraints, in time order: per_user_limit per (user, coupon), then the budget
    red_ts = ts[ri] + d_red
    user = user[ri]
    order = np.lexsort((red_ts, user.astype(np.int64) * cfg.n_coupons + c))
    key = (user.astype(np.int64) * cfg.n_coupons + c)[order]
    rank = within(np.diff(np.r_[np.flatnonzero(np.r_[True, key[1:] != key[:-1]]), len(key)]))
    ok_limit = np.empty(m, bool)
    ok_limit[order] = rank < w.c_limit[c[order]]
    idx = np.flatnonzero(ok_limit)
    order = idx[np.lexsort((red_ts[idx], c[idx]))]
    cs = c[order]
    spent = seg_cumsum(disc[order], np.diff(np.r_[np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]]), len(cs)]))
    ok = np.zeros(m, bool)
    ok[order] = spent <= w.c_budget[cs] + 1e-9
    kept = np.flatnonzero(ok)
    new_index = np.cumsum(ok) - 1
    lines = ok[line_red]
    return Outcomes(
        ci, ts[ci] + d_claim, ri[kept], red_ts[kept], disc[kept], new_index[line_red[lines]], line_item[lines],
        p_eff, int((~eligible).sum()), m, int(m - ok_limit.sum()), int(ok_limit.sum() - ok.sum()),
    )  # fmt: skip
