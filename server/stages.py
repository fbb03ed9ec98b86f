"""The ranking path as pure stages on whole arrays of candidates (no I/O, no protos).

    candidates -> eligibility -> (online features: server/online.py) -> assemble
               -> score -> order   (nothing ranked: empty_note says why)

Each stage takes and returns numpy arrays, one element per candidate coupon, so
a request for 500 coupons costs a handful of vectorised operations.

Eligibility rules (first failing rule wins, in this order):

1. UNKNOWN_COUPON: the catalogue has no coupon with this id.
2. EXPIRED: ``now >= valid_to`` (the window is ``valid_from <= now < valid_to``).
3. NOT_YET_VALID: ``now < valid_from``.
4. OUT_OF_SCOPE: a category / brand / merchant scoped coupon whose scope value is
   not among the cart's categories / brands / merchant ids. Scope ``all`` is always
   in scope. **Scope is checked only at the cart and checkout placements**
   (:data:`SCOPE_CHECKED_PLACEMENTS`), where the coupon would be applied to the cart
   described in the request; there an empty cart holds nothing, so every scoped
   coupon is out of scope. Elsewhere (home, product page, campaign, order
   confirmation) a scoped coupon is a promotion for things not yet in the cart and
   is not dropped.
5. MIN_SPEND_NOT_MET: ``cart_total < min_spend`` at every placement (the contract:
   an unset cart is an empty cart, total 0).
6. NOT_IN_AUDIENCE: the coupon's audience (members, a tier or above, segments:
   features/membership.py) does not admit the user's membership: the request's
   ``context.membership`` when given, else the stored ``user_membership`` (a user
   without a row is not a member); on the fallback path without the request's, the
   user is taken as a non-member.
7. PER_USER_LIMIT_REACHED: ``ucp_redemptions_total >= per_user_limit`` (online
   feature; not checked when unknown/NaN).
8. BUDGET_EXHAUSTED: ``coupon_budget_used_frac >= 1`` (online feature, or the cached
   copy on the fallback path; not checked when NaN).

Rules 6-8 need online features, so the service calls :func:`eligibility` twice: once
without them (to read features only for coupons that can pass; rule 6 already when
the request carries the membership), once with them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from couponrank.features import membership
from couponrank.server.catalog import Catalog

SCOPE_CHECKED_PLACEMENTS = frozenset({"cart", "checkout"})


class Reason(enum.IntEnum):
    """Why a candidate was dropped; numbers equal couponrank.v1.IneligibilityReason's."""

    ELIGIBLE = 0
    EXPIRED = 1
    NOT_YET_VALID = 2
    MIN_SPEND_NOT_MET = 3
    OUT_OF_SCOPE = 4
    PER_USER_LIMIT_REACHED = 5
    UNKNOWN_COUPON = 6
    BUDGET_EXHAUSTED = 7
    NOT_IN_AUDIENCE = 8


@dataclass(frozen=True)
class RankRequest:
    """A validated ranking request in plain values (the service builds it from the proto)."""

    user_id: str
    candidate_ids: tuple[str, ...] = ()  # empty: every coupon active at `now`
    placement: str = "home"  # one of couponrank.schema.PLACEMENTS
    cart_total: float = 0.0  # major currency units
    cart_categories: tuple[str, ...] = ()
    cart_brands: tuple[str, ...] = ()
    cart_merchants: tuple[str, ...] = ()
    now: float = 0.0  # request time, unix seconds (UTC)
    top_k: int = 10  # > 0
    explain: bool = False
    # Reasons per explained coupon, 1 .. service.MAX_REASONS_LIMIT; 0: the server's
    # default (ServerConfig.max_reasons).
    max_reasons: int = 0
    # The caller may see the user's own behaviour features in explanations
    # (server/callers.py); otherwise only coupon and request features are named.
    explain_user_features: bool = False
    # context.membership when the request carries it: (tier rank, segment bit mask, number
    # of segments) in the server's membership.yaml; None: the stored membership decides.
    membership: tuple[float, float, float] | None = None


@dataclass
class Candidates:
    ids: np.ndarray  # object array of coupon ids
    rows: np.ndarray  # int64 catalogue rows, -1 for unknown ids

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, mask_or_index) -> "Candidates":
        return Candidates(self.ids[mask_or_index], self.rows[mask_or_index])


@dataclass
class Eligibility:
    keep: np.ndarray  # bool per candidate
    reason: np.ndarray  # int8 Reason per candidate (ELIGIBLE where kept)
    detail: list[str] = field(default_factory=list)  # per candidate; "" where kept

    def dropped(self) -> list[tuple[int, Reason, str]]:
        return [(int(i), Reason(int(self.reason[i])), self.detail[i]) for i in np.flatnonzero(~self.keep)]


# ------------------------------------------------------------------ candidates
def candidates(request: RankRequest, catalog: Catalog, now: float) -> Candidates:
    """The request's candidate ids with their catalogue rows; every coupon active at
    ``now`` when the request names none (catalogue order, i.e. sorted by id)."""
    if not request.candidate_ids:
        rows = catalog.active(now)
        return Candidates(catalog.ids[rows], rows.astype(np.int64))
    ids = np.empty(len(request.candidate_ids), dtype=object)
    ids[:] = list(request.candidate_ids)
    return Candidates(ids, catalog.lookup(ids))


# ------------------------------------------------------------------ eligibility
def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in(values: np.ndarray, allowed: Sequence[str]) -> np.ndarray:
    if len(allowed) == 0:
        return np.zeros(len(values), dtype=bool)
    allowed_set = frozenset(allowed)
    return np.fromiter((v in allowed_set for v in values), dtype=bool, count=len(values))


def eligibility(request: RankRequest, catalog: Catalog, cands: Candidates, now: float,
                ucp_redemptions: np.ndarray | None = None,
                budget_used_frac: np.ndarray | None = None,
                member: tuple[float, float] | None = None) -> Eligibility:
    """Keep-mask and reason per candidate (rules in the module docstring). ``member``:
    the user's (tier rank, segment mask) to check audiences against; None: not checked."""
    n = len(cands)
    unknown = cands.rows < 0
    if len(catalog) == 0 or unknown.all():
        return Eligibility(np.zeros(n, dtype=bool), np.full(n, int(Reason.UNKNOWN_COUPON), dtype=np.int8),
                           ["no coupon with this id in the catalogue"] * n)
    rows = np.where(unknown, 0, cands.rows)

    def col(name: str) -> np.ndarray:
        return catalog.columns[name][rows]

    vf = col("coupon_valid_from_unix").astype(np.float64)
    vt = col("coupon_valid_to_unix").astype(np.float64)
    min_spend = col("coupon_min_spend").astype(np.float64)
    expired = now >= vt
    not_yet = now < vf

    out_of_scope = np.zeros(n, dtype=bool)
    if request.placement in SCOPE_CHECKED_PLACEMENTS:
        scope, value = col("coupon_scope"), col("coupon_scope_value")
        in_scope = scope == "all"
        for kind, cart in (("category", request.cart_categories), ("brand", request.cart_brands),
                           ("merchant", request.cart_merchants)):
            is_kind = scope == kind
            if is_kind.any():
                in_scope[is_kind] = _in(value[is_kind], cart)
        out_of_scope = ~in_scope

    min_spend_not_met = request.cart_total < min_spend  # NaN min spend: False
    used = np.full(n, np.nan) if ucp_redemptions is None else np.asarray(ucp_redemptions, np.float64)
    limit = col("coupon_per_user_limit").astype(np.float64)
    limit_reached = used >= limit  # NaN (unknown): False
    budget = np.full(n, np.nan) if budget_used_frac is None else np.asarray(budget_used_frac, np.float64)
    budget_out = budget >= 1.0
    not_in_audience = np.zeros(n, dtype=bool)
    if member is not None:
        not_in_audience = ~membership.admitted(col("coupon_audience_min_tier"), col("coupon_audience_segment_mask"),
                                               *member)

    conditions = [unknown, expired, not_yet, out_of_scope, min_spend_not_met, not_in_audience, limit_reached,
                  budget_out]
    reasons = [Reason.UNKNOWN_COUPON, Reason.EXPIRED, Reason.NOT_YET_VALID, Reason.OUT_OF_SCOPE,
               Reason.MIN_SPEND_NOT_MET, Reason.NOT_IN_AUDIENCE, Reason.PER_USER_LIMIT_REACHED,
               Reason.BUDGET_EXHAUSTED]
    reason = np.select(conditions, [int(r) for r in reasons], default=int(Reason.ELIGIBLE)).astype(np.int8)
    keep = reason == Reason.ELIGIBLE

    detail = [""] * n
    for i in np.flatnonzero(~keep):
        r = Reason(int(reason[i]))
        if r is Reason.UNKNOWN_COUPON:
            detail[i] = "no coupon with this id in the catalogue"
        elif r is Reason.EXPIRED:
            detail[i] = f"valid until {_iso(vt[i])}"
        elif r is Reason.NOT_YET_VALID:
            detail[i] = f"valid from {_iso(vf[i])}"
        elif r is Reason.OUT_OF_SCOPE:
            detail[i] = f"limited to {catalog.columns['coupon_scope'][rows[i]]} " \
                        f"{catalog.columns['coupon_scope_value'][rows[i]]!r}, not in the cart"
        elif r is Reason.MIN_SPEND_NOT_MET:
            detail[i] = (f"cart total {request.cart_total:.2f} is {min_spend[i] - request.cart_total:.2f} "
                         f"below the minimum spend {min_spend[i]:.2f}")
        elif r is Reason.NOT_IN_AUDIENCE:
            detail[i] = membership.describe(catalog.columns["coupon_audience"][rows[i]])
        elif r is Reason.PER_USER_LIMIT_REACHED:
            detail[i] = f"redeemed {used[i]:.0f} time(s), limit {limit[i]:.0f}"
        else:
            detail[i] = f"{budget[i]:.0%} of the budget used"
    return Eligibility(keep, reason, detail)


# ------------------------------------------------------------------ features -> matrix
def assemble(features: Mapping[str, np.ndarray], order: Sequence[str]) -> np.ndarray:
    """The model's input matrix: one float64 column per name in ``order`` (the
    artifact's feature order); raises KeyError naming any feature not provided."""
    missing = [name for name in order if name not in features]
    if missing:
        raise KeyError(f"features not provided: {', '.join(missing)}")
    n = len(features[order[0]]) if order else 0
    X = np.empty((n, len(order)), dtype=np.float64)
    for j, name in enumerate(order):
        X[:, j] = features[name]
    return X


def score(model, X: np.ndarray) -> np.ndarray:
    """Raw model scores, one per row (``model.predict`` of a Booster or RankerModel)."""
    if len(X) == 0:
        return np.empty(0, dtype=np.float64)
    return np.asarray(model.predict(X), dtype=np.float64).reshape(len(X))


def order(scores: np.ndarray, ids: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """Positions of the best ``top_k`` candidates, best first: score descending, ties
    (and NaN scores, which go last) broken by coupon id ascending. Deterministic."""
    scores = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(scores), np.inf, -scores)
    idx = np.lexsort((np.asarray(ids, dtype=str), key))
    return idx if top_k is None or top_k <= 0 else idx[:top_k]


# ------------------------------------------------------------------ an empty answer
def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")


def empty_note(request: RankRequest, catalog: Catalog, n_candidates: int, now: float) -> str:
    """Why a ranking came out empty, in words for people (RankCouponsResponse.note).

    ``n_candidates``: how many candidates there were (named by the request, or active
    at ``now`` when it named none); each one not ranked is in the answer's ineligible
    list with its own reason, so the note only says which case this is."""
    at = _iso(now)
    if len(catalog) == 0:
        return "the catalogue holds no coupon"
    if request.candidate_ids:
        if n_candidates == 1:
            return f"the one candidate is not eligible at {at}; see ineligible_coupons"
        return f"none of the {n_candidates} candidates is eligible at {at}; see ineligible_coupons"
    if n_candidates == 0:
        vf, vt = catalog.columns["coupon_valid_from_unix"], catalog.columns["coupon_valid_to_unix"]
        return (f"no coupon is active at {at}; the catalogue's coupons are valid "
                f"{_day(np.nanmin(vf))} .. {_day(np.nanmax(vt))}")
    return f"none of the {n_candidates} coupons active at {at} is eligible; see ineligible_coupons"
