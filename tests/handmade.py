"""A small raw data set written by hand, so that expected feature values can be
worked out on paper. Days are counted from 2026-06-01 00:00 UTC (day 0)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from couponrank import schema

ORIGIN = pd.Timestamp("2026-06-01", tz="UTC")


def at(day: float, hour: float = 0.0) -> pd.Timestamp:
    return ORIGIN + pd.Timedelta(days=day, hours=hour)


def _write(out: Path, table: schema.Table, rows: list[dict]) -> None:
    df = pd.DataFrame(rows, columns=table.schema.names)
    pq.write_table(pa.Table.from_pandas(df, schema=table.schema, preserve_index=False), out / table.file)


def users():
    return [{"user_id": u, "signup_ts": at(-100), "country": "NL"} for u in ("u1", "u2", "u3")]


def items():
    return [
        {"item_id": "i1", "category": "shoes", "brand": "b1", "merchant_id": "m1", "price": 80.0},
        {"item_id": "i2", "category": "shoes", "brand": "b1", "merchant_id": "m1", "price": 40.0},
        {"item_id": "i3", "category": "books", "brand": "b2", "merchant_id": "m2", "price": 12.0},
    ]


def coupons():
    base = {"valid_from": at(0), "valid_to": at(40), "per_user_limit": 1, "campaign_id": "camp1", "budget": 1000.0}
    return [
        {**base, "coupon_id": "c1", "coupon_type": "percent_off", "value": 10.0, "min_spend": 0.0,
         "scope": "category", "scope_value": "shoes"},
        {**base, "coupon_id": "c2", "coupon_type": "amount_off", "value": 5.0, "min_spend": 30.0,
         "scope": "brand", "scope_value": "b2"},
        {**base, "coupon_id": "c3", "coupon_type": "free_shipping", "value": 0.0, "min_spend": 0.0,
         "scope": "all", "scope_value": None, "valid_from": at(5), "valid_to": at(6)},
    ]


def behaviour_events():
    def ev(eid, user, item, etype, ts, order=None, amount=None):
        return {"event_id": eid, "user_id": user, "item_id": item, "event_type": etype, "event_ts": ts,
                "order_id": order, "amount": amount}
    return [
        ev("b1", "u1", "i1", "view", at(1, 10)),
        ev("b2", "u1", "i2", "view", at(1, 11)),
        ev("b3", "u1", "i1", "add_to_cart", at(1, 12)),
        ev("b4", "u1", "i1", "order", at(1, 13), "o1", 80.0),
        ev("b5", "u1", "i2", "order", at(1, 13), "o1", 40.0),   # same order: 2 lines, 1 order
        ev("b6", "u1", "i3", "view", at(10, 9)),
        ev("b7", "u2", "i3", "favourite", at(3, 8)),
        ev("b8", "u2", "i3", "order", at(20, 8), "o2", 12.0),
    ]


def coupon_events():
    def ev(eid, user, coupon, etype, ts, **kw):
        row = {"event_id": eid, "user_id": user, "coupon_id": coupon, "event_type": etype, "event_ts": ts}
        row.update(kw)
        return row
    imp = dict(request_id="r1", placement="cart", cart_value=120.0, cart_categories="shoes")
    return [
        ev("e1", "u1", "c1", "impression", at(1, 12, ), position=1, **imp),
        ev("e2", "u1", "c2", "impression", at(1, 12), position=2, **imp),
        ev("e3", "u1", "c1", "claim", at(1, 12.5), impression_id="e1"),
        ev("e4", "u1", "c1", "redemption", at(1, 13), impression_id="e1", order_id="o1", discount_amount=12.0),
        ev("e5", "u2", "c2", "impression", at(3, 8), request_id="r2", placement="home", position=1,
           cart_value=0.0, cart_categories=""),
    ]


def write(out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write(out, schema.USERS, users())
    _write(out, schema.ITEMS, items())
    _write(out, schema.COUPONS, coupons())
    _write(out, schema.BEHAVIOUR_EVENTS, behaviour_events())
    _write(out, schema.COUPON_EVENTS, coupon_events())
    return out
