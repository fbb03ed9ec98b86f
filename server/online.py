"""Online features for one user x N candidate coupons, and the request features.

:class:`OnlineFeatures` is the only place the ranking path does I/O. The model's feature
service (the artifact names it) is resolved once at start into the stored views to read and
the rest of the model's inputs:

* stored views keyed by the user, user x category or user x coupon are read per
  request, straight from the online store's tables in one batched read per view
  (server/store_reader.py): one key for a user view, one per distinct target
  category, one per candidate;
* stored views keyed by the coupon alone (``coupon_stats``) are the same for every
  user, so they are served from :class:`CouponFeatureCache`, re-read from the online
  store every ``refresh_seconds`` (default 60 s): **freshness bound** -- a coupon
  feature served is at most ``refresh_seconds`` (plus one read) older than the online
  store. Coupons the cache has not seen yet (added since the last refresh) are read
  live in the request. A coupon-keyed view tagged ``couponrank.serving: live`` (values
  pushed as events arrive: coupon_today_activity) is read per request instead, one key
  per candidate;
* the ``coupon_attributes`` features come from the in-memory catalogue
  (server/catalog.py), which holds the same latest row per coupon;
* the on-demand ``request_context_features`` come from
  ``couponrank.features.request_features.compute`` -- the very function Feast's
  on-demand view calls in training -- on whole arrays (:func:`join_features`);
* the on-demand ``recent_activity_features`` and ``coupon_today_features`` come from
  ``couponrank.features.recent.context`` and ``coupon_today.context`` likewise
  (:class:`ProjectView`);
* any other on-demand view (a feature engineer's) runs Feast's own transformation
  (``OnDemandFeatureView.transform_arrow``, what ``get_historical_features`` runs in
  training) on its inputs: its source views' features, read like the rest, and the
  request fields of :data:`REQUEST_FIELDS` (:class:`OnDemandView`). A view needing an
  input the server cannot provide is refused at start.

Missing values: the online store has no row for an entity it never saw; that is
NaN, which is what Feast's historical retrieval gives training for a missing row. A
user with no ``user_activity`` row is a cold start (:func:`cold_start`); the model
still ranks them (LightGBM routes NaN down its learnt default branches).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from couponrank.features import coupon_today, coverage, recent, request_features
from couponrank.features.services import DEFAULT_FEATURE_SERVICE, declared_keys, get_service, mapped_keys
from couponrank.server.catalog import FLOAT_COLUMNS, STRING_COLUMNS, Catalog
from couponrank.server.periodic import Periodic
from couponrank.server.stages import RankRequest
from couponrank.server.store_reader import StoreReader, StoreReadError, open_reader

log = logging.getLogger(__name__)

CATALOG_VIEW = "coupon_attributes"
USER_VIEW = "user_activity"  # no row here for the user = cold start
DEFAULT_COUPON_REFRESH_SECONDS = 60.0

# Where each join key's value comes from in a request.
USER_KEY, COUPON_KEY, CATEGORY_KEY = "user_id", "coupon_id", "category"

# What the eligibility rules (server/stages.py) read, by view: read for every model,
# whether or not its feature service holds them, so that a service without them cannot
# silently turn a rule off; a registry without them is refused at start.
RULE_INPUTS = {"ucp_redemptions_total": "user_coupon_usage", "coupon_budget_used_frac": "coupon_stats"}
# The audience rule's inputs (issue 13), read likewise when the registry has them. A
# registry applied before user_membership existed has not: every user is then a
# non-member, and a catalogue with audiences refuses the start (server/main.py).
# membership_segment_count rides along in the same row read, so that a hot swap to a
# model using it (ranker_v3) needs no restart.
MEMBERSHIP_INPUTS = {"membership_tier_rank": "user_membership", "membership_segment_mask": "user_membership",
                     "membership_segment_count": "user_membership"}


class RegistryError(ValueError):
    """The feature registry cannot serve this model; the message says why."""


# The project's own on-demand view (request_features.compute runs it on arrays).
REQUEST_CONTEXT_VIEW = "request_context_features"
# Request fields an on-demand view may read (the request_context RequestSource's).
REQUEST_FIELDS = ("cart_value", "cart_categories", "placement", "request_ts_unix")


class OnDemandView:
    """A feature engineer's on-demand view, run with Feast's own transformation on the
    candidates' inputs (one row per candidate)."""

    def __init__(self, odfv, outputs: Sequence[str]):
        self.odfv = odfv
        self.name = odfv.name
        self.outputs = list(outputs)
        self.view_inputs: dict[str, list[str]] = {}  # stored view -> features it reads
        for name, projection in odfv.source_feature_view_projections.items():
            self.view_inputs[name] = [f.name for f in projection.features]
        self.request_inputs = [f.name for source in odfv.source_request_sources.values() for f in source.schema]
        unknown = [f for f in self.request_inputs if f not in REQUEST_FIELDS]
        if unknown:
            raise RegistryError(f"on-demand view {self.name} reads request field(s) {', '.join(unknown)}, which a "
                                f"RankCouponsRequest does not carry (it can read {', '.join(REQUEST_FIELDS)})")

    def compute(self, features: dict[str, np.ndarray], request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pyarrow as pa

        columns = {name: features[name] for names in self.view_inputs.values() for name in names}
        columns.update({name: request[name] for name in self.request_inputs})
        table = self.odfv.transform_arrow(pa.table(columns))
        return {name: np.asarray(table.column(name).to_numpy(), dtype=np.float64)
                for name in self.outputs}


class ProjectView(OnDemandView):
    """One of the project's own on-demand views (recent_activity_features,
    coupon_today_features, coverage_rate_features): the function Feast's on-demand view calls in training
    (:data:`PROJECT_VIEWS`) run straight on the arrays, without Feast's per-request
    conversions."""

    def compute(self, features: dict[str, np.ndarray], request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = {name: features[name] for names in self.view_inputs.values() for name in names}
        values["request_ts_unix"] = request["request_ts_unix"]
        out = PROJECT_VIEWS[self.name](values)
        return {name: out[name] for name in self.outputs}


# The project's own on-demand views other than request_context_features, run on arrays.
PROJECT_VIEWS = {recent.CONTEXT_VIEW: recent.context, coupon_today.CONTEXT_VIEW: coupon_today.context,
                 coverage.CONTEXT_VIEW: coverage.context}


def is_live(view) -> bool:
    """Whether a feature view is tagged to be read per request (pushed values)."""
    key, value = coupon_today.LIVE_TAG
    return view is not None and (view.tags or {}).get(key) == value


class CouponFeatureCache:
    """The coupon-keyed views' features of every catalogue coupon, in memory.

    ``values`` has one row per coupon in ``index`` plus a last all-NaN row, so row -1
    (not cached) reads as missing. Swapped whole on refresh; a failed refresh keeps
    the previous values and logs why.
    """

    def __init__(self, reader: StoreReader, views: Sequence[str], coupon_ids: Callable[[], Sequence[str]],
                 refresh_seconds: float = DEFAULT_COUPON_REFRESH_SECONDS):
        self.reader = reader
        self.views = list(views)
        self.coupon_ids = coupon_ids
        self.refresh_seconds = float(refresh_seconds)
        self.names = [f for v in self.views for f in reader.views[v].features]
        self.index: dict[str, int] = {}
        self.values: np.ndarray | None = None  # None until the first successful read
        self.loaded_at = 0.0  # time.monotonic() of the last successful read
        self._periodic = Periodic("coupon-features-refresh", self.refresh_seconds, self._refresh_or_keep)

    def read_live(self, ids: Sequence[str]) -> np.ndarray:
        """The coupon views' features of ``ids`` from the store (len(ids) x names)."""
        ids = list(ids)
        parts = self.reader.read_many([(v, {COUPON_KEY: ids}, len(ids)) for v in self.views])
        return np.hstack(parts) if parts else np.empty((len(ids), 0))

    def refresh(self) -> None:
        """Re-read every catalogue coupon; raises StoreReadError when the store fails."""
        ids = list(self.coupon_ids())
        values = np.vstack([self.read_live(ids), np.full((1, len(self.names)), np.nan)])
        self.index, self.values = {c: i for i, c in enumerate(ids)}, values  # readers see old or new, never half
        self.loaded_at = time.monotonic()

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        """(len(ids) x names) for ``ids``: cached rows, the rest read live."""
        if self.values is None:
            self.refresh()  # the store was down at start; this request pays for the first load
        index, values = self.index, self.values
        rows = np.fromiter((index.get(c, -1) for c in ids), dtype=np.int64, count=len(ids))
        out = values[rows]
        missing = np.flatnonzero(rows < 0)
        if len(missing):
            out[missing] = self.read_live([ids[i] for i in missing])
        return out

    def _refresh_or_keep(self) -> None:
        try:
            self.refresh()
        except StoreReadError as exc:
            log.warning("coupon feature refresh failed, serving the previous values: %s", exc)

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()


class OnlineFeatures:
    """Resolves the feature service once (at start), then reads per request."""

    def __init__(self, store, coupon_ids: Callable[[], Sequence[str]] = list,
                 service_name: str = DEFAULT_FEATURE_SERVICE,
                 refresh_seconds: float = DEFAULT_COUPON_REFRESH_SECONDS, timeout: float = 0.25,
                 reader: StoreReader | None = None):
        self.store = store
        self.service_name = service_name
        try:
            service = get_service(store, service_name)
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
        self.catalog_features: list[str] = []  # from the catalogue
        self.computed_features: list[str] = []  # request_features.compute outputs
        self.on_demand: list[OnDemandView] = []  # other on-demand views, run through Feast
        self.view_features: dict[str, list[str]] = {}  # stored views -> features read
        for projection in service.feature_view_projections:
            names = [f.name for f in projection.features]
            if projection.name == REQUEST_CONTEXT_VIEW:
                self.computed_features += names
            elif projection.name in odfvs:
                view_class = ProjectView if projection.name in PROJECT_VIEWS else OnDemandView
                self.on_demand.append(view_class(odfvs[projection.name], names))
            elif projection.name == CATALOG_VIEW:
                self.catalog_features += names
            else:
                self.view_features[projection.name] = names
        # The recent-activity features are computed whatever the service when the registry
        # has them (as the membership inputs are read), so that a hot swap between a model
        # reading them (ranker_v4) and one that does not needs no restart.
        stored = {v.name for v in store.list_feature_views()}
        if (recent.CONTEXT_VIEW in odfvs and {recent.VIEW, recent.CATEGORY_VIEW} <= stored
                and not any(v.name == recent.CONTEXT_VIEW for v in self.on_demand)):
            self.on_demand.append(ProjectView(odfvs[recent.CONTEXT_VIEW], list(recent.OUTPUTS)))
        online_names = {n for names in self.view_features.values() for n in names}
        for view in self.on_demand:  # the other on-demand views' stored inputs
            for source, names in view.view_inputs.items():
                if source == CATALOG_VIEW:
                    unknown = [n for n in names if n not in self.catalog_features]
                    self.catalog_features += unknown
                    continue
                for name in names:
                    if name not in online_names:
                        self.view_features.setdefault(source, []).append(name)
                        online_names.add(name)
        for name, source in request_features.INPUTS.items():  # inputs of compute() not in the service
            if source not in ("request", CATALOG_VIEW) and name not in online_names:
                self.view_features.setdefault(source, []).append(name)
                online_names.add(name)
        views = {v.name: v for v in store.list_feature_views()}
        for name, source in RULE_INPUTS.items():  # the rules' inputs, model input or not
            if source not in views or name not in {f.name for f in views[source].features}:
                raise RegistryError(f"the eligibility rules read {source}.{name}, which the feature registry lacks; "
                                    "apply a feature repository that defines it")
            if name not in online_names:
                self.view_features.setdefault(source, []).append(name)
                online_names.add(name)
        # Every numeric catalogue column is served, in the service or not: they are in
        # memory, and a hot swap to a model of a newer service reading another coupon
        # attribute (ranker_v3's audience) then needs no restart.
        self.catalog_features += [c for c in FLOAT_COLUMNS if c not in self.catalog_features]
        self.reads_membership = all(source in views and name in {f.name for f in views[source].features}
                                    for name, source in MEMBERSHIP_INPUTS.items())
        if self.reads_membership:
            for name, source in MEMBERSHIP_INPUTS.items():
                if name not in online_names:
                    self.view_features.setdefault(source, []).append(name)
                    online_names.add(name)
        self.names = [n for names in self.view_features.values() for n in names]
        self.reader = reader or open_reader(store, self.view_features, timeout)
        self.join_keys = {v: self.reader.views[v].join_keys for v in self.view_features}
        # join keys other than the user and the coupon: from a column of the candidate
        # coupon's attributes, as the entity declares (features/services.py mapped_keys)
        try:
            self.key_columns = mapped_keys(store, service_name)
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        declared = declared_keys(store)  # the views read whatever the service (recent activity) too
        for view, keys in self.join_keys.items():  # the rules' and the request view's inputs too
            for key in set(keys) - {USER_KEY, COUPON_KEY} - set(self.key_columns):
                if key in declared:
                    self.key_columns[key] = declared[key]
            unknown = sorted(set(keys) - {USER_KEY, COUPON_KEY} - set(self.key_columns))
            if unknown:
                raise RegistryError(f"feature view {view}: join key(s) {unknown} cannot be filled from a "
                                    f"RankCoupons request or a declared entity")
        not_in_catalog = sorted(c for c in set(self.key_columns.values()) if c not in STRING_COLUMNS)
        if not_in_catalog:
            raise RegistryError(f"entities are declared to come from coupon_attributes column(s) the catalogue does "
                                f"not hold: {', '.join(not_in_catalog)} (it holds {', '.join(STRING_COLUMNS)})")
        # read per request: every view keyed by more than the coupon, and coupon views tagged live
        self.live_views = [v for v, keys in self.join_keys.items()
                           if set(keys) != {COUPON_KEY} or is_live(views.get(v))]
        # What any caller may see in explanations (server/callers.py): the coupon's own
        # features and those computed from the request and the coupon alone; the rest
        # describe the user's behaviour.
        self.public_features = sorted(
            {n for v, keys in self.join_keys.items() if USER_KEY not in keys for n in self.view_features[v]}
            | set(self.catalog_features)
            | (set(self.computed_features) - set(request_features.USER_OUTPUTS)))
        # every name a request's features hold (join_features): what a model may use
        self.provided = (frozenset(self.names) | set(self.catalog_features) | set(request_features.OUTPUTS)
                         | {n for view in self.on_demand for n in view.outputs})
        self.coupons = CouponFeatureCache(self.reader, [v for v in self.view_features if v not in self.live_views],
                                          coupon_ids, refresh_seconds)

    def key_values(self, catalog: Catalog, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The declared join keys' values for the candidates at catalogue ``rows``."""
        return {key: catalog.take(column, rows) for key, column in self.key_columns.items()}

    def read(self, user_id: str, coupon_ids: Sequence[str],
             keys: Mapping[str, Sequence[str]] | Sequence[str] = ()) -> dict[str, np.ndarray]:
        """Every stored feature for the user x each coupon: float64 arrays, NaN for missing.
        ``keys``: the declared join keys' values per candidate (:meth:`key_values`); a plain
        sequence is the candidates' categories."""
        n = len(coupon_ids)
        coupon_ids = list(coupon_ids)
        if not isinstance(keys, Mapping):
            keys = {CATEGORY_KEY: keys}
        requests, expand = [], []  # per live view: the read, and how its rows map to the candidates
        for view in self.live_views:
            view_keys = self.join_keys[view]
            mapped = [k for k in view_keys if k in self.key_columns]
            if COUPON_KEY in view_keys:
                requests.append((view, {USER_KEY: user_id, COUPON_KEY: coupon_ids,
                                        **{k: [str(v) for v in keys[k]] for k in mapped}}, n))
                expand.append(None)
            elif mapped:  # one read per distinct value (tuple of values) among the candidates
                if len(mapped) == 1:
                    distinct, inverse = np.unique(np.asarray(keys[mapped[0]], dtype=object).astype(str),
                                                  return_inverse=True)
                    values = {mapped[0]: list(distinct)}
                else:
                    combined = np.asarray(["\x1f".join(str(keys[k][i]) for k in mapped) for i in range(n)])
                    distinct, inverse = np.unique(combined, return_inverse=True)
                    parts = [d.split("\x1f") for d in distinct]
                    values = {k: [p[j] for p in parts] for j, k in enumerate(mapped)}
                if USER_KEY in view_keys:
                    values[USER_KEY] = user_id
                requests.append((view, values, len(distinct)))
                expand.append(inverse)
            else:
                requests.append((view, {USER_KEY: user_id}, 1))
                expand.append(np.zeros(n, dtype=np.int64))
        out: dict[str, np.ndarray] = {}
        for view, values, rows in zip(self.live_views, self.reader.read_many(requests), expand):
            if rows is not None:
                values = values[rows]
            for j, name in enumerate(self.view_features[view]):
                out[name] = values[:, j]
        if self.coupons.views:
            values = self.coupons.lookup(coupon_ids)
            for j, name in enumerate(self.coupons.names):
                out[name] = values[:, j]
        return {name: out[name] for name in self.names}

    def check_on_demand(self) -> None:
        """Run every other on-demand view once on a row of missing inputs (an empty cart
        on the home page), so that a view that cannot run is refused at start rather
        than failing every request."""
        request = {"cart_value": np.zeros(1), "cart_categories": np.array([""], dtype=object),
                   "placement": np.array(["home"], dtype=object), "request_ts_unix": np.zeros(1)}
        for view in self.on_demand:
            features = {n: np.full(1, np.nan) for names in view.view_inputs.values() for n in names}
            try:
                out = view.compute(features, request)
            except Exception as exc:  # the view's own code: any error
                raise RegistryError(f"on-demand view {view.name} fails on a row of missing inputs "
                                    f"({type(exc).__name__}: {exc}); the server would fail every request") from None
            missing = [n for n in view.outputs if n not in out or len(out[n]) != 1]
            if missing:
                raise RegistryError(f"on-demand view {view.name} does not return {', '.join(missing)}")

    def cold_start(self, read: dict[str, np.ndarray]) -> bool:
        return cold_start(read, self.view_features.get(USER_VIEW, []))

    def start(self) -> None:
        self.coupons.start()

    def close(self) -> None:
        self.coupons.stop()
        self.reader.close()


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
                  catalog_features: Sequence[str], on_demand: Sequence[OnDemandView] = ()) -> dict[str, np.ndarray]:
    """Every model input by name: online values, catalogue attributes, request features,
    the other on-demand views' outputs."""
    features = dict(read)
    for name in catalog_features:
        features[name] = catalog.take(name, rows).astype(np.float64)
    inputs = request_inputs(read, catalog, rows, request)
    features.update(request_features.compute(inputs))
    for view in on_demand:
        features.update(view.compute(features, inputs))
    return features
