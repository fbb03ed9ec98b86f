"""Notices an online store that holds no features: emptied (a Redis restarted
without its data, a store file swapped for an empty one) or never materialized.

Reads alone cannot tell: a store that answers "no row" for every key looks like a
shop full of new users and coupons, and the server would rank everyone as a cold
start, undegraded. So every ``check_seconds`` (default 5 s) :class:`StoreWatch`
probes the coupon-keyed views for a sample of catalogue coupons (the coupon views
hold a row per coupon after any materialization). No value at all -> the store is
empty: answers degrade (FEATURE_STORE_UNAVAILABLE, popularity ranking) and health
reads NOT_SERVING, so load balancers move to a replica whose store is filled;
the next probe that finds values turns both back. A probe that fails (the store is
down) changes nothing: the read path degrades on its own, and health stays as it
is, so that replicas sharing a dead store do not all leave the pool at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from couponrank.server.periodic import Periodic

log = logging.getLogger(__name__)

DEFAULT_CHECK_SECONDS = 5.0
SAMPLE = 64  # catalogue coupons probed: the first ones by id
EMPTY_DETAIL = ("the online store holds no features (emptied, or never materialized: run "
                "`couponrank materialize`)")


def store_is_empty(ranker) -> bool | None:
    """True: no sampled coupon has a value in any coupon-keyed view; False: some has;
    None: cannot tell (no coupon-keyed view, an empty catalogue, or the read failed)."""
    coupons = ranker.online.coupons
    ids = sorted(ranker.catalog.current.ids)[:SAMPLE]
    if not coupons.views or not ids:
        return None
    try:
        values = coupons.read_live(ids)
    except Exception as exc:  # the store is down: the read path reports that itself
        log.debug("online store probe failed: %s: %s", type(exc).__name__, exc)
        return None
    return bool(np.isnan(values).all())


class StoreWatch:
    """Sets ``ranker.store_empty`` ("" or why) and calls ``on_change(empty)`` when it flips."""

    def __init__(self, ranker, on_change: Callable[[bool], None], check_seconds: float = DEFAULT_CHECK_SECONDS):
        self.ranker = ranker
        self.on_change = on_change
        self._periodic = Periodic("online-store-watch", check_seconds, self.check)

    def check(self) -> None:
        empty = store_is_empty(self.ranker)
        if empty is None or empty == bool(self.ranker.store_empty):
            return
        self.ranker.store_empty = EMPTY_DETAIL if empty else ""
        if empty:
            log.error("the online store holds no features: answers degrade and health reads NOT_SERVING "
                      "until it is materialized")
        else:
            log.info("the online store holds features again: serving")
        self.on_change(empty)

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
