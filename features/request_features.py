"""Request-context features: one definition shared by training and serving.

The Feast on-demand feature view in ``definitions.py`` calls :func:`compute` on the
columns of a historical-retrieval frame; the gRPC server calls the very same
function on arrays it gathered from the online store. Same code, same numbers: this
is what makes a served score equal the offline score for the same inputs.

Everything works on whole columns (numpy arrays), one element per (user, coupon)
candidate; missing upstream values arrive as NaN and propagate, except where a
default is stated below.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from couponrank.schema import COUPON_SCOPES, COUPON_TYPES, PLACEMENTS, SHIPPING_FEE

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0

# Target category of a coupon valid on any item (scope "all").
ALL_CATEGORIES = "__all__"

# Placement codes used as a categorical model feature; 0 = unspecified.
PLACEMENT_CODES = {name: i + 1 for i, name in enumerate(PLACEMENTS)}
COUPON_TYPE_CODES = {name: i + 1 for i, name in enumerate(COUPON_TYPES)}
COUPON_SCOPE_CODES = {name: i + 1 for i, name in enumerate(COUPON_SCOPES)}

# Inputs: name -> where it comes from (feature view, or the request).
INPUTS = {
    "coupon_type": "coupon_attributes",
    "coupon_scope": "coupon_attributes",
    "coupon_value": "coupon_attributes",
    "coupon_min_spend": "coupon_attributes",
    "coupon_target_category": "coupon_attributes",
    "coupon_valid_from_unix": "coupon_attributes",
    "coupon_valid_to_unix": "coupon_attributes",
    "user_last_event_unix": "user_activity",
    "user_last_order_unix": "user_activity",
    "user_last_redemption_unix": "user_coupon_behaviour",
    "cart_value": "request",
    "cart_categories": "request",  # "|"-joined categories in the cart
    "placement": "request",  # one of schema.PLACEMENTS, or "" when unspecified
    "request_ts_unix": "request",  # seconds since the epoch, UTC
}

# Outputs, in a fixed order (this is also their order in the model's feature list).
OUTPUTS = (
    "ctx_cart_value",
    "ctx_meets_min_spend",
    "ctx_min_spend_gap",
    "ctx_cart_to_min_spend",
    "ctx_effective_discount",
    "ctx_discount_to_cart",
    "ctx_hours_to_expiry",
    "ctx_hours_since_start",
    "ctx_placement",
    "ctx_coupon_type",
    "ctx_coupon_scope",
    "ctx_hour_of_day",
    "ctx_cart_has_target_category",
    "ctx_days_since_last_event",
    "ctx_days_since_last_order",
    "ctx_days_since_last_redemption",
)

# Outputs computed from the user's own behaviour (the rest come from the request and
# the coupon): the server names them in explanations only to callers allowed to see
# user features (server/callers.py).
USER_OUTPUTS = ("ctx_days_since_last_event", "ctx_days_since_last_order", "ctx_days_since_last_redemption")

# Outputs LightGBM treats as categorical.
CATEGORICAL_OUTPUTS = ("ctx_placement", "ctx_coupon_type", "ctx_coupon_scope")

# A cart this small still gives a percent-off coupon a nominal worth, so that the
# discount feature means something on the home page (empty cart).
NOMINAL_BASKET = 50.0


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _codes(values, codes: Mapping[str, int]) -> np.ndarray:
    """Categorical code per value; 0 for unknown or missing."""
    values = np.asarray(values, dtype=object)
    return np.fromiter((codes.get(v, 0) for v in values), dtype=np.float64, count=len(values))


def compute(inputs: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Return the request-context features for arrays of candidates.

    ``inputs`` maps every name in :data:`INPUTS` to an array-like of equal length
    (scalars from the request may be pre-broadcast by the caller).
    """
    cart = _f(inputs["cart_value"])
    min_spend = _f(inputs["coupon_min_spend"])
    value = _f(inputs["coupon_value"])
    now = _f(inputs["request_ts_unix"])
    ctype = np.asarray(inputs["coupon_type"], dtype=object)

    meets = (cart >= min_spend).astype(np.float64)
    meets[np.isnan(min_spend)] = np.nan
    gap = np.maximum(min_spend - cart, 0.0)
    cart_to_min = cart / np.maximum(min_spend, 1.0)

    basket = np.maximum(cart, NOMINAL_BASKET)
    discount = np.full(cart.shape, np.nan)
    is_pct = ctype == "percent_off"
    is_amt = ctype == "amount_off"
    is_ship = ctype == "free_shipping"
    discount[is_pct] = value[is_pct] / 100.0 * basket[is_pct]
    discount[is_amt] = value[is_amt]
    discount[is_ship] = SHIPPING_FEE
    discount_to_cart = discount / basket

    placement_code = _codes(inputs["placement"], PLACEMENT_CODES)

    target = np.asarray(inputs["coupon_target_category"], dtype=object)
    cart_cats = np.asarray(inputs["cart_categories"], dtype=object)
    has_target = np.fromiter(
        (
            1.0 if t == ALL_CATEGORIES else float(bool(c) and isinstance(t, str) and t in str(c).split("|"))
            for t, c in zip(target, cart_cats)
        ),
        dtype=np.float64,
        count=len(target),
    )

    hours_of_day = np.floor(np.mod(now, SECONDS_PER_DAY) / SECONDS_PER_HOUR)

    return {
        "ctx_cart_value": cart,
        "ctx_meets_min_spend": meets,
        "ctx_min_spend_gap": gap,
        "ctx_cart_to_min_spend": cart_to_min,
        "ctx_effective_discount": discount,
        "ctx_discount_to_cart": discount_to_cart,
        "ctx_hours_to_expiry": (_f(inputs["coupon_valid_to_unix"]) - now) / SECONDS_PER_HOUR,
        "ctx_hours_since_start": (now - _f(inputs["coupon_valid_from_unix"])) / SECONDS_PER_HOUR,
        "ctx_placement": placement_code,
        "ctx_coupon_type": _codes(ctype, COUPON_TYPE_CODES),
        "ctx_coupon_scope": _codes(inputs["coupon_scope"], COUPON_SCOPE_CODES),
        "ctx_hour_of_day": hours_of_day,
        "ctx_cart_has_target_category": has_target,
        "ctx_days_since_last_event": (now - _f(inputs["user_last_event_unix"])) / SECONDS_PER_DAY,
        "ctx_days_since_last_order": (now - _f(inputs["user_last_order_unix"])) / SECONDS_PER_DAY,
        "ctx_days_since_last_redemption": (now - _f(inputs["user_last_redemption_unix"]))
        / SECONDS_PER_DAY,
    }
