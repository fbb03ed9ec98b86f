"""Online features for one user x N candidate coupons, and the request features.

:class:`OnlineFeatures` is the only place the ranking path does I/O: ONE batched
``FeatureStore.get_online_features`` call per request, with one entity row per
candidate (``user_id``, ``coupon_id``, ``category`` = the coupon's target category)
and every feature of the ``ranker_v1`` feature service's stored views
(user_activity, user_coupon_behaviour, user_category_affinity, user_coupon_usage,
coupon_stats). The rest of the model's inputs come without I/O:

* the ``coupon_attributes`` features of the service come from the in-memory
  catalogue (server/catalog.py), which holds the same latest row per coupon;
* the on-demand ``request_context_features`` come from
  ``couponrank.features.request_features.compute`` -- the very function Feast's
  on-demand view calls in training -- on whole arrays (:func:`join_features`).

Missing values: the online store answers None for an entity it has no row for;
they become NaN, which is what Feast's historical retrieval gives training for a
missing row. A user with no ``user_activity`` row is a cold start (:func:`cold_start`);
the model still ranks them (LightGBM routes NaN down its learnt default branches).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from couponrank.features import request_features
from couponrank.server.catalog import Catalog
from couponrank.server.stages import RankRequest

FEATURE_SERVICE = "ranker_v1"
CATALOG_VIEW = "coupon_attributes"
USER_VIEW = "user_activity"  # no row here for the user = cold start


class OnlineFeatures:
    """Resolves the feature service once (at start), then reads per request."""

    def __init__(self, store, service_name: str = FEATURE_SERVICE):
        self.store = store
        service = store.get_feature_service(service_name)
        odfvs = {v.name for v in store.list_on_demand_feature_views()}
        self.refs: list[str] = []  # "view:feature" read from the online store
        self.catalog_features: list[str] = []  # from the catalogue
        self.computed_features: list[str] = []  # request_features.compute outputs
        self.view_features: dict[str, list[str]] = {}
        for projection in service.feature_view_projections:
            names = [f.name for f in projection.features]
            if projection.name in odfvs:
                self.computed_features += names
            elif projection.name == CATALOG_VIEW:
                self.catalog_features += names
            else:
                self.view_features[projection.name] = names
                self.refs += [f"{projection.name}:{n}" for n in names]
        online_names = {r.split(":", 1)[1] for r in self.refs}
        for name, source in request_features.INPUTS.items():  # inputs of compute() not in the service
            if source not in ("request", CATALOG_VIEW) and name not in online_names:
                self.refs.append(f"{source}:{name}")
                self.view_features.setdefault(source, []).append(name)
        self.names = [r.split(":", 1)[1] for r in self.refs]

    def read(self, user_id: str, coupon_ids: Sequence[str], categories: Sequence[str]) -> dict[str, np.ndarray]:
        """One batched online read; float64 arrays with NaN for missing values."""
        n = len(coupon_ids)
        rows = {"user_id": [user_id] * n, "coupon_id": list(coupon_ids), "category": list(categories)}
        result = self.store.get_online_features(features=self.refs, entity_rows=rows).to_dict()
        return {name: np.array(result[name], dtype=np.float64) for name in self.names}

    def cold_start(self, read: dict[str, np.ndarray]) -> bool:
        return cold_start(read, self.view_features.get(USER_VIEW, []))


def cold_start(read: dict[str, np.ndarray], user_features: Sequence[str]) -> bool:
    """True when every user_activity feature is missing: the store has no row for the user."""
    return bool(user_features) and all(np.isnan(read[name]).all() for name in user_features)


def request_inputs(read: dict[str, np.ndarray], catalog: Catalog, rows: np.ndarray,
                   request: RankRequest) -> dict[str, np.ndarray]:
    """The inputs of request_features.compute, one element per candidate."""
    n = len(rows)
    scalars = {
        "cart_value": np.full(n, float(request.cart_total)),
        "cart_categories": np.full(n, "|".join(request.cart_categories), dtype=object),
        "placement": np.full(n, request.placement, dtype=object),
        "request_ts_unix": np.full(n, float(request.now)),
    }
    out = {}
    for name, source in request_features.INPUTS.items():
        if source == "request":
            out[name] = scalars[name]
        elif source == CATALOG_VIEW:
            out[name] = catalog.take(name, rows)
        else:
            out[name] = read[name]
    return out


def join_features(read: dict[str, np.ndarray], catalog: Catalog, rows: np.ndarray, request: RankRequest,
                  catalog_features: Sequence[str]) -> dict[str, np.ndarray]:
    """Every model input by name: online values, catalogue attributes, request features."""
    features = dict(read)
    for name in catalog_features:
        features[name] = catalog.take(name, rows).astype(np.float64)
    features.update(request_features.compute(request_inputs(read, catalog, rows, request)))
    return features
