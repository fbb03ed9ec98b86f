"""CouponRank's Feast objects: entities, offline sources, feature views, the ranker's
feature service and the on-demand request-context view.

Run ``feast apply`` in this folder after ``couponrank build-features`` has written
the Parquet sources under ``data/``. Every source is a daily snapshot: a row stamped
at midnight T holds aggregates over events strictly before T, so Feast's
point-in-time join never lets a training row see its own future.
"""

from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, String

from couponrank.features import coupon_today, coverage, recent, request_features

# ---------------------------------------------------------------- entities
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
              description="A shopper (users.user_id).")
coupon = Entity(name="coupon", join_keys=["coupon_id"], value_type=ValueType.STRING,
                description="A coupon (coupons.coupon_id).")
# An entity keyed by something other than the user or the coupon says where a
# candidate's value comes from (features/services.py FROM_COUPON_TAG): a column of the
# coupon's attributes, filled in training from coupon_attributes and in serving from
# the catalogue.
category = Entity(name="category", join_keys=["category"], value_type=ValueType.STRING,
                  description="An item category; for a coupon, its target category.",
                  tags={"couponrank.from_coupon": "coupon_target_category"})


# Absolute paths: the DuckDB offline store resolves relative ones against the
# working directory, not the repository. Re-run `feast apply` after moving the repo.
DATA_DIR = Path(__file__).resolve().parent / "data"


def _source(name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str(DATA_DIR / f"{name}.parquet"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
    )


# Snapshot views only emit a row when something changed within their widest window
# (plus one all-zero row after), so their TTL must be unbounded: timedelta(0).
NO_TTL = timedelta(0)

# ---------------------------------------------------------------- user views
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=NO_TTL,
    schema=[
        Field(name="user_views_7d", dtype=Float64),
        Field(name="user_carts_7d", dtype=Float64),
        Field(name="user_favourites_7d", dtype=Float64),
        Field(name="user_orders_7d", dtype=Float64),
        Field(name="user_spend_7d", dtype=Float64),
        Field(name="user_views_30d", dtype=Float64),
        Field(name="user_carts_30d", dtype=Float64),
        Field(name="user_favourites_30d", dtype=Float64),
        Field(name="user_orders_30d", dtype=Float64),
        Field(name="user_spend_30d", dtype=Float64),
        Field(name="user_avg_order_value_30d", dtype=Float64),
        Field(name="user_last_event_unix", dtype=Float64),
        Field(name="user_last_order_unix", dtype=Float64),
    ],
    source=_source("user_activity"),
    description="Shopping activity over 7 and 30 days (views, carts, favourites, orders, spend) and recency.",
)

user_coupon_behaviour = FeatureView(
    name="user_coupon_behaviour",
    entities=[user],
    ttl=NO_TTL,
    schema=[
        Field(name="user_impressions_7d", dtype=Float64),
        Field(name="user_impressions_30d", dtype=Float64),
        Field(name="user_claims_30d", dtype=Float64),
        Field(name="user_redemptions_30d", dtype=Float64),
        Field(name="user_claim_rate_30d", dtype=Float64),
        Field(name="user_redemption_rate_30d", dtype=Float64),
        Field(name="user_avg_discount_redeemed_30d", dtype=Float64),
        Field(name="user_redemptions_total", dtype=Float64),
        Field(name="user_last_redemption_unix", dtype=Float64),
    ],
    source=_source("user_coupon_behaviour"),
    description="How the user responds to coupons: impressions, claims, redemptions, smoothed rates, typical discount.",
)

user_category_affinity = FeatureView(
    name="user_category_affinity",
    entities=[user, category],
    ttl=NO_TTL,
    schema=[
        Field(name="ucat_views_30d", dtype=Float64),
        Field(name="ucat_carts_30d", dtype=Float64),
        Field(name="ucat_orders_30d", dtype=Float64),
        Field(name="ucat_share_30d", dtype=Float64),
    ],
    source=_source("user_category_affinity"),
    description="The user's 30-day activity in one category and that category's share of all their activity.",
)

user_coupon_usage = FeatureView(
    name="user_coupon_usage",
    entities=[user, coupon],
    ttl=NO_TTL,
    schema=[
        Field(name="ucp_impressions_7d", dtype=Float64),
        Field(name="ucp_impressions_total", dtype=Float64),
        Field(name="ucp_claims_total", dtype=Float64),
        Field(name="ucp_redemptions_total", dtype=Float64),
    ],
    source=_source("user_coupon_usage"),
    description="One user's history with one coupon: fatigue, claims, redemptions (per-user limit).",
)

user_coupon_coverage = FeatureView(
    name="user_coupon_coverage",
    entities=[user, coupon],
    ttl=NO_TTL,
    schema=[
        Field(name="ucov_lines_30d", dtype=Float64),
        Field(name="ucov_lines_90d", dtype=Float64),
        Field(name="ucov_lines_365d", dtype=Float64),
        Field(name="ucov_spend_90d", dtype=Float64),
        Field(name="ucov_spend_365d", dtype=Float64),
        Field(name=coverage.OBSERVED_FROM, dtype=Float64),
    ],
    source=_source("user_coupon_coverage"),
    description="The user's purchases of the items a coupon covers (raw coupon_items): order lines and spend "
                "over 30, 90 and 365 days, and the data's first order line (unix seconds; for "
                "coverage_rate_features, not a model input). Empty when the raw data lists no coupon items.",
)

user_membership = FeatureView(
    name="user_membership",
    entities=[user],
    ttl=NO_TTL,
    schema=[
        Field(name="membership_tier_rank", dtype=Float64),
        Field(name="membership_segment_mask", dtype=Float64),
        Field(name="membership_segment_count", dtype=Float64),
    ],
    source=_source("user_membership"),
    description="The user's loyalty membership (raw memberships, from each change on): tier rank in "
                "membership.yaml (0: not a member), segments (bit mask of membership.yaml's, and count). "
                "The server checks coupon audiences with it.",
)

# Fresh values pushed by the server as events arrive (RecordEvents, issue 11): Feast's
# push API writes them into the online store; build-features writes their history (the
# batch source) with the same definition, features/recent.py. A row says what the last
# hour and day held at the user's latest event (in the category) and when that was; a
# model reads them through recent_activity_features below, which ages them to the
# request. Their TTL is unbounded, as the server's reads are: a row's age is a feature.
user_recent_activity_push = PushSource(
    name="user_recent_activity_push",
    batch_source=_source("user_recent_activity"),
    description="The user's recent-activity counts, pushed by the server after each batch of behaviour events.",
)

user_recent_activity = FeatureView(
    name="user_recent_activity",
    entities=[user],
    ttl=NO_TTL,
    schema=[Field(name=name, dtype=Float64) for name in recent.ALL_FEATURES],
    source=user_recent_activity_push,
    description="Views, add-to-carts and order lines in the hour and the day up to the user's latest event, "
                "and its time (features/recent.py); pushed fresh by the server as events are recorded.",
)

user_category_recent_activity_push = PushSource(
    name="user_category_recent_activity_push",
    batch_source=_source("user_category_recent_activity"),
    description="The user's recent-activity counts per category, pushed by the server after behaviour events.",
)

user_category_recent_activity = FeatureView(
    name="user_category_recent_activity",
    entities=[user, category],
    ttl=NO_TTL,
    schema=[Field(name=name, dtype=Float64) for name in recent.ALL_CATEGORY_FEATURES],
    source=user_category_recent_activity_push,
    description="Views, add-to-carts and order lines of the category's items in the hour and the day up to the "
                "user's latest event in it, and its time (features/recent.py); pushed fresh by the server.",
)

# ---------------------------------------------------------------- coupon views
coupon_stats = FeatureView(
    name="coupon_stats",
    entities=[coupon],
    ttl=NO_TTL,
    schema=[
        Field(name="coupon_impressions_7d", dtype=Float64),
        Field(name="coupon_redemptions_7d", dtype=Float64),
        Field(name="coupon_redemption_rate_7d", dtype=Float64),
        Field(name="coupon_impressions_30d", dtype=Float64),
        Field(name="coupon_claims_30d", dtype=Float64),
        Field(name="coupon_redemptions_30d", dtype=Float64),
        Field(name="coupon_redemption_rate_30d", dtype=Float64),
        Field(name="coupon_trend_7d_vs_30d", dtype=Float64),
        Field(name="coupon_budget_used_frac", dtype=Float64),
    ],
    source=_source("coupon_stats"),
    description="Exposure, smoothed redemption rates, popularity trend and budget use of a coupon.",
)

coupon_attributes = FeatureView(
    name="coupon_attributes",
    entities=[coupon],
    ttl=NO_TTL,
    schema=[
        Field(name="coupon_type", dtype=String),
        Field(name="coupon_value", dtype=Float64),
        Field(name="coupon_min_spend", dtype=Float64),
        Field(name="coupon_scope", dtype=String),
        Field(name="coupon_scope_value", dtype=String),
        Field(name="coupon_target_category", dtype=String),
        Field(name="coupon_valid_from_unix", dtype=Float64),
        Field(name="coupon_valid_to_unix", dtype=Float64),
        Field(name="coupon_per_user_limit", dtype=Float64),
        Field(name="coupon_budget", dtype=Float64),
        Field(name="coupon_campaign_id", dtype=String),
        Field(name="coupon_audience", dtype=String),
        Field(name="coupon_audience_min_tier", dtype=Float64),
        Field(name="coupon_audience_segment_mask", dtype=Float64),
        Field(name="coupon_audience_segment_count", dtype=Float64),
    ],
    source=_source("coupon_attributes"),
    description="What the coupon is: type, value, minimum spend, scope, validity, limits, audience "
                "(stamped when created).",
)

# A coupon's impressions and redemptions today (UTC), pushed by the server from the event
# log's day counters as impressions and redemptions are recorded; build-features writes
# the history with the same definition (features/coupon_today.py). Tagged live: the
# server reads it per request, not from its 60-s coupon cache. A row of another day than
# the request's counts 0 (coupon_today_features), so rows older than a day need not be
# joined: the TTL bounds the training join, and training and serving agree.
coupon_today_activity_push = PushSource(
    name="coupon_today_activity_push",
    batch_source=_source("coupon_today_activity"),
    description="A coupon's counts today, pushed by the server after impressions and redemptions are recorded.",
)

coupon_today_activity = FeatureView(
    name="coupon_today_activity",
    entities=[coupon],
    ttl=timedelta(seconds=coupon_today.DAY),
    schema=[Field(name=name, dtype=Float64) for name in coupon_today.ALL_FEATURES],
    source=coupon_today_activity_push,
    tags=dict([coupon_today.LIVE_TAG]),
    description="A coupon's impressions and redemptions so far today (UTC) at its latest event, and that "
                "event's time (features/coupon_today.py); pushed fresh by the server, read per request.",
)

# ---------------------------------------------------------------- request context
request_context = RequestSource(
    name="request_context",
    schema=[
        Field(name="cart_value", dtype=Float64),
        Field(name="cart_categories", dtype=String),
        Field(name="placement", dtype=String),
        Field(name="request_ts_unix", dtype=Float64),
    ],
    description="Sent with each ranking request: cart total, '|'-joined cart categories, placement, time.",
)


@on_demand_feature_view(
    sources=[coupon_attributes, user_activity, user_coupon_behaviour, request_context],
    schema=[Field(name=name, dtype=Float64) for name in request_features.OUTPUTS],
    mode="pandas",
    description="Cart versus minimum spend, discount worth, hours to expiry, placement, recency. "
    "Computed by couponrank.features.request_features.compute, which the server also calls.",
)
def request_context_features(inputs: pd.DataFrame) -> pd.DataFrame:
    # Imports live inside: Feast stores this function's source and may rebuild it
    # without this module's globals.
    import pandas as pd

    from couponrank.features import recent, request_features

    columns = {name: inputs[name].to_numpy() for name in request_features.INPUTS}
    return pd.DataFrame(request_features.compute(columns), index=inputs.index)


@on_demand_feature_view(
    sources=[user_recent_activity, user_category_recent_activity, request_context],
    schema=[Field(name=name, dtype=Float64) for name in recent.OUTPUTS],
    mode="pandas",
    description="The user's recent activity, overall and in the coupon's target category, as it stands at the "
    "request, and the hours since each. Computed by couponrank.features.recent.context, which the server also calls.",
)
def recent_activity_features(inputs: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    from couponrank.features import recent

    return pd.DataFrame(recent.context({name: inputs[name].to_numpy() for name in recent.INPUTS}), index=inputs.index)


@on_demand_feature_view(
    sources=[coupon_today_activity, request_context],
    schema=[Field(name=name, dtype=Float64) for name in coupon_today.OUTPUTS],
    mode="pandas",
    description="A coupon's impressions and redemptions today as they stand at the request, and redemptions per "
    "impression. Computed by couponrank.features.coupon_today.context, which the server also calls.",
)
def coupon_today_features(inputs: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    from couponrank.features import coupon_today

    return pd.DataFrame(coupon_today.context({name: inputs[name].to_numpy() for name in coupon_today.INPUTS}),
                        index=inputs.index)


@on_demand_feature_view(
    sources=[user_coupon_coverage[list(coverage.VIEW_INPUTS)], request_context],
    schema=[Field(name=name, dtype=Float64) for name in coverage.OUTPUTS],
    mode="pandas",
    description="The user's order lines and spend on a coupon's items per day of purchase data observed in the "
    "365 days before the request. Computed by couponrank.features.coverage.context, which the server also calls.",
)
def coverage_rate_features(inputs: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    from couponrank.features import coverage

    return pd.DataFrame(coverage.context({name: inputs[name].to_numpy() for name in coverage.INPUTS}),
                        index=inputs.index)


# ---------------------------------------------------------------- the ranker's features
# Feature services are versioned: a model records the service it was trained on (the
# training config's feature_service) and the server serves it with that one, so a new
# service never stops an older model from serving or being rolled back to. Never change
# a published service; add ranker_v3 instead.
#
# ranker_v2: ranker_v1 without the absolute timestamps (*_unix). They drift under a time
# split (a test period's values all lie beyond the training period's: issue 10); the
# relative ctx_days_since_* computed from them stay, and the server still reads them as
# inputs of the on-demand view.
# ucov_observed_from_unix (issue 10) was never an input of any service: it came after
# them, for coverage_rate_features, so every service lists user_coupon_coverage without it.
ABSOLUTE_TIMES = ("user_last_event_unix", "user_last_order_unix", "user_last_redemption_unix",
                  coverage.OBSERVED_FROM)


def _without(view: FeatureView, names=ABSOLUTE_TIMES):
    return view[[f.name for f in view.features if f.name not in names]]


ranker_features = FeatureService(
    name="ranker_v1",
    features=[
        user_activity,
        user_coupon_behaviour,
        user_category_affinity,
        user_coupon_usage,
        _without(user_coupon_coverage),
        coupon_stats,
        coupon_attributes[["coupon_value", "coupon_min_spend", "coupon_per_user_limit"]],
        request_context_features,
    ],
    description="Everything the LightGBM ranker reads, in one service (models trained before ranker_v2).",
)

ranker_features_v2 = FeatureService(
    name="ranker_v2",
    features=[
        _without(user_activity),
        _without(user_coupon_behaviour),
        user_category_affinity,
        user_coupon_usage,
        _without(user_coupon_coverage),
        coupon_stats,
        coupon_attributes[["coupon_value", "coupon_min_spend", "coupon_per_user_limit"]],
        request_context_features,
    ],
    description="ranker_v1 without absolute timestamps (the relative ctx_days_since_* stay).",
)


# ranker_v3: ranker_v2 plus membership (issue 13): the user's tier rank and segment count,
# the coupon's audience (lowest tier rank admitted, segments named). A restricted coupon
# is only ever ranked for users its audience admits, so these say "an exclusive offer
# for a member of this tier".
ranker_features_v3 = FeatureService(
    name="ranker_v3",
    features=[
        _without(user_activity),
        _without(user_coupon_behaviour),
        user_category_affinity,
        user_coupon_usage,
        _without(user_coupon_coverage),
        user_membership[["membership_tier_rank", "membership_segment_count"]],
        coupon_stats,
        coupon_attributes[["coupon_value", "coupon_min_spend", "coupon_per_user_limit",
                           "coupon_audience_min_tier", "coupon_audience_segment_count"]],
        request_context_features,
    ],
    description="ranker_v2 plus the user's membership and the coupon's audience.",
)


# ranker_v4: ranker_v3 plus the user's recent activity (issue 11), overall and in the
# coupon's target category, pushed fresh as events are recorded: a user browsing a
# category now sees its coupons' scores move (on synthetic data a tie with ranker_v3 in
# NDCG@5: docs/quality.md).
ranker_features_v4 = FeatureService(
    name="ranker_v4",
    features=[
        _without(user_activity),
        _without(user_coupon_behaviour),
        user_category_affinity,
        user_coupon_usage,
        _without(user_coupon_coverage),
        user_membership[["membership_tier_rank", "membership_segment_count"]],
        coupon_stats,
        coupon_attributes[["coupon_value", "coupon_min_spend", "coupon_per_user_limit",
                           "coupon_audience_min_tier", "coupon_audience_segment_count"]],
        request_context_features,
        recent_activity_features,
    ],
    description="ranker_v3 plus the user's recent activity, overall and in the coupon's category, at the request.",
)


# ranker_v5: ranker_v4 plus the coupon's impressions and redemptions today (issue 11),
# pushed as they are recorded and read per request: a coupon taking off today (or
# shown all day and never redeemed) moves before its daily coupon_stats snapshot does.
# On synthetic data a tie with ranker_v4 (docs/quality.md): not the shipped config's.
ranker_features_v5 = FeatureService(
    name="ranker_v5",
    features=[
        _without(user_activity),
        _without(user_coupon_behaviour),
        user_category_affinity,
        user_coupon_usage,
        _without(user_coupon_coverage),
        user_membership[["membership_tier_rank", "membership_segment_count"]],
        coupon_stats,
        coupon_attributes[["coupon_value", "coupon_min_spend", "coupon_per_user_limit",
                           "coupon_audience_min_tier", "coupon_audience_segment_count"]],
        request_context_features,
        recent_activity_features,
        coupon_today_features,
    ],
    description="ranker_v4 plus the coupon's impressions and redemptions today, at the request.",
)


# ranker_v6: ranker_v2 plus the user's purchases of the coupon's items per day observed
# (issue 10), for a retailer's purchase log: Complete Journey's config trains on it. The
# 365-day sums drift where the data is younger than a year; their rates at the request
# do not. It starts from ranker_v2, not ranker_v5: such logs have no memberships, no
# browsing and no live coupon counts, and on Complete Journey v3..v5's extra inputs only
# added noise (docs/quality.md). A model wanting both adds a service of its own.
ranker_features_v6 = FeatureService(
    name="ranker_v6",
    features=[
        _without(user_activity),
        _without(user_coupon_behaviour),
        user_category_affinity,
        user_coupon_usage,
        _without(user_coupon_coverage),
        coupon_stats,
        coupon_attributes[["coupon_value", "coupon_min_spend", "coupon_per_user_limit"]],
        request_context_features,
        coverage_rate_features,
    ],
    description="ranker_v2 plus the user's purchases of the coupon's items per day observed, at the request.",
)
