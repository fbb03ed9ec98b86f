"""The raw event schema: the contract between data producers and the batch pipeline.

Every raw table is a Parquet file in one directory (``data/raw`` by default). The
column lists below are the single source of truth: the generator writes them, the
cleaning step checks them (naming file and column on any mismatch), docs/data.md
describes them. Money is in major currency units (float64) of one currency per
data set; timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

COUPON_TYPES = ("percent_off", "amount_off", "free_shipping")
COUPON_SCOPES = ("all", "category", "brand", "merchant")
BEHAVIOUR_EVENT_TYPES = ("view", "add_to_cart", "favourite", "order")
COUPON_EVENT_TYPES = ("impression", "claim", "redemption")
# Placement names match the proto enum (couponrank.v1.Placement) without its prefix.
# New placements are appended (request_features.PLACEMENT_CODES numbers them in this order).
PLACEMENTS = ("home", "product_page", "cart", "checkout", "order_confirmation", "campaign", "member_centre")
# A coupon's audience (coupons.audience), one of: "all" (everyone; null means all),
# "members" (any membership tier), "tier>=<tier>" (that tier of membership.yaml or a
# later one), "segments:<id>|<id>..." (users in any of the segments).
AUDIENCE_ALL, AUDIENCE_MEMBERS, AUDIENCE_TIER_PREFIX, AUDIENCE_SEGMENTS_PREFIX = "all", "members", "tier>=", "segments:"
# Flat shipping fee used to value a free-shipping coupon (major units).
SHIPPING_FEE = 4.99
# Events recorded by the server (RecordEvents) and exported into a raw folder live here,
# one folder per event table, one file per UTC day.
LIVE_DIR = "live"


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.Schema
    key: tuple[str, ...]  # columns that identify a row (used for de-duplication)
    timestamp: str | None = None  # event-time column, if the table is an event log
    # Columns a file may lack (added after the table was first published): read as nulls.
    optional: tuple[str, ...] = ()
    # `couponrank export-events` writes into live/<table>/: the recorded events, and the
    # users first seen in them
    live: bool = False

    @property
    def file(self) -> str:
        return f"{self.name}.parquet"

    def files_in(self, raw_dir) -> list:
        """The table's files in a raw folder: its own file, then for the tables
        `couponrank export-events` writes (``live``) the day partitions of recorded events
        or of the users first seen in them (``live/<table>/<YYYY-MM-DD>.parquet``) in day
        order."""
        from pathlib import Path

        raw_dir = Path(raw_dir)
        parts = sorted((raw_dir / LIVE_DIR / self.name).glob("*.parquet")) if self.live else []
        return [raw_dir / self.file, *parts]


USERS = Table(
    "users",
    pa.schema(
        [
            ("user_id", pa.string()),
            ("signup_ts", TS),
            ("country", pa.string()),
        ]
    ),
    key=("user_id",),
    live=True,
)

ITEMS = Table(
    "items",
    pa.schema(
        [
            ("item_id", pa.string()),
            ("category", pa.string()),
            ("brand", pa.string()),
            ("merchant_id", pa.string()),
            ("price", pa.float64()),
        ]
    ),
    key=("item_id",),
)

COUPONS = Table(
    "coupons",
    pa.schema(
        [
            ("coupon_id", pa.string()),
            ("coupon_type", pa.string()),  # one of COUPON_TYPES
            ("value", pa.float64()),  # percent (0-100] for percent_off, amount for amount_off, 0 for free_shipping
            ("min_spend", pa.float64()),  # >= 0
            ("scope", pa.string()),  # one of COUPON_SCOPES
            ("scope_value", pa.string()),  # category / brand / merchant_id; null when scope == "all"
            ("valid_from", TS),
            ("valid_to", TS),
            ("per_user_limit", pa.int32()),  # >= 1
            ("campaign_id", pa.string()),
            ("budget", pa.float64()),  # total discount the campaign may give away with this coupon
            ("audience", pa.string()),  # who may use it (AUDIENCE_*); optional column, null = "all"
        ]
    ),
    key=("coupon_id",),
    optional=("audience",),
)

BEHAVIOUR_EVENTS = Table(
    "behaviour_events",
    pa.schema(
        [
            ("event_id", pa.string()),
            ("user_id", pa.string()),
            ("item_id", pa.string()),
            ("event_type", pa.string()),  # one of BEHAVIOUR_EVENT_TYPES
            ("event_ts", TS),
            ("order_id", pa.string()),  # set for event_type == "order", else null
            ("amount", pa.float64()),  # order line amount for "order", else null
        ]
    ),
    key=("event_id",),
    timestamp="event_ts",
    live=True,
)

COUPON_EVENTS = Table(
    "coupon_events",
    pa.schema(
        [
            ("event_id", pa.string()),
            ("user_id", pa.string()),
            ("coupon_id", pa.string()),
            ("event_type", pa.string()),  # one of COUPON_EVENT_TYPES
            ("event_ts", TS),
            ("request_id", pa.string()),  # impression: the ranking request that showed it (a ranking group)
            ("placement", pa.string()),  # impression: one of PLACEMENTS
            ("position", pa.int32()),  # impression: 1-based slot
            ("cart_value", pa.float64()),  # impression: cart total when shown
            ("cart_categories", pa.string()),  # impression: "|"-joined categories in the cart, may be empty
            ("impression_id", pa.string()),  # claim / redemption: the impression it follows
            ("order_id", pa.string()),  # redemption: the order it was applied to
            ("discount_amount", pa.float64()),  # redemption: discount given
        ]
    ),
    key=("event_id",),
    timestamp="event_ts",
    live=True,
)

# Written by the synthetic generator only: the true redemption probability of each
# impression, to compare models with an oracle. Never an input to features.
IMPRESSION_TRUTH = Table(
    "impression_truth",
    pa.schema([("impression_id", pa.string()), ("p_redeem", pa.float64())]),
    key=("impression_id",),
)

RAW_TABLES = (USERS, ITEMS, COUPONS, BEHAVIOUR_EVENTS, COUPON_EVENTS)

# Optional: every item a coupon covers (a scope holds one category, brand or merchant;
# a real coupon often lists its products). When present, build-features derives the
# user's purchases of each coupon's items (the user_coupon_coverage view).
COUPON_ITEMS = Table(
    "coupon_items",
    pa.schema([("coupon_id", pa.string()), ("item_id", pa.string())]),
    key=("coupon_id", "item_id"),
)

# Optional: each user's membership over time. A row says that from valid_from on the
# user holds `tier` (one of membership.yaml's tiers; null: not a member) and belongs to
# `segments` ("|"-joined segment ids; null or "": none), until the user's next row.
# Users without a row are not members. Read into the user_membership view.
MEMBERSHIPS = Table(
    "memberships",
    pa.schema(
        [
            ("user_id", pa.string()),
            ("valid_from", TS),
            ("tier", pa.string()),
            ("segments", pa.string()),
        ]
    ),
    key=("user_id", "valid_from"),
    timestamp="valid_from",
)
OPTIONAL_TABLES = (COUPON_ITEMS, MEMBERSHIPS)
