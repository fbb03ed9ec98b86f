"""The coupon catalogue: what every coupon is, held in memory as whole columns.

Loaded at start from the Feast repository's offline sources (Parquet under
``<repo>/data``, written by ``couponrank build-features``):

* ``coupon_attributes.parquet`` -- type, value, min spend, scope, scope value, target
  category, validity window, per-user limit, budget, campaign, audience. The latest row per
  coupon (by ``event_timestamp``, then ``created_timestamp``) wins, as in the online
  store after a full materialization.
* ``coupon_stats.parquet`` -- a cached copy of the latest ``coupon_redemption_rate_30d``
  (the popularity fallback when the online store cannot be read) and
  ``coupon_budget_used_frac`` (the budget check in that fallback). Coupons without
  stats get NaN.

Freshness bound: :class:`CatalogHolder` checks the two files' modification times
every ``refresh_seconds`` (default :data:`DEFAULT_REFRESH_SECONDS`, 300 s) in a
background thread and reloads when either changed, swapping the whole
:class:`Catalog` at once (requests never see a half-loaded catalogue). So the served
catalogue lags the offline sources by at most ``refresh_seconds`` plus the load time;
the offline sources themselves are as fresh as the last ``build-features`` run.
Requests never read files: they use the catalogue loaded last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from couponrank.clock import unix_now
from couponrank.server.periodic import Periodic

log = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 300.0

ATTRIBUTES_FILE = "coupon_attributes.parquet"
STATS_FILE = "coupon_stats.parquet"

# Catalogue columns, named as the coupon_attributes feature view names them.
STRING_COLUMNS = ("coupon_type", "coupon_scope", "coupon_scope_value", "coupon_target_category",
                  "coupon_campaign_id", "coupon_audience")
FLOAT_COLUMNS = ("coupon_value", "coupon_min_spend", "coupon_valid_from_unix", "coupon_valid_to_unix",
                 "coupon_per_user_limit", "coupon_budget", "coupon_audience_min_tier",
                 "coupon_audience_segment_mask", "coupon_audience_segment_count")
# Columns added after catalogues were first written (issue 13's audiences): a file built
# before them is read with these values, i.e. every coupon for everyone.
LATER_COLUMNS = {"coupon_audience": "all", "coupon_audience_min_tier": 0.0, "coupon_audience_segment_mask": 0.0,
                 "coupon_audience_segment_count": 0.0}
# Cached from coupon_stats (for the fallback path only).
STATS_COLUMNS = ("coupon_redemption_rate_30d", "coupon_budget_used_frac")


class CatalogError(RuntimeError):
    """The catalogue cannot be loaded; the message names the file."""


@dataclass(frozen=True)
class Catalog:
    """Every coupon's attributes, one array element per coupon (immutable)."""

    ids: np.ndarray  # object array of coupon ids, sorted
    columns: dict[str, np.ndarray]  # STRING_COLUMNS (object), FLOAT_COLUMNS + STATS_COLUMNS (float64)
    loaded_at: float  # unix time of the load
    mtimes: tuple[float, float] = (0.0, 0.0)  # of the attributes and stats files
    index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if not self.index:
            self.index.update({cid: i for i, cid in enumerate(self.ids)})

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, coupon_ids) -> np.ndarray:
        """Catalogue row of each id; -1 for ids the catalogue does not know."""
        get = self.index.get
        return np.fromiter((get(c, -1) for c in coupon_ids), dtype=np.int64, count=len(coupon_ids))

    def active(self, now: float) -> np.ndarray:
        """Rows of the coupons valid at ``now``: valid_from <= now < valid_to."""
        vf, vt = self.columns["coupon_valid_from_unix"], self.columns["coupon_valid_to_unix"]
        return np.flatnonzero((vf <= now) & (now < vt))

    @property
    def restricted(self) -> int:
        """How many coupons have an audience (members, a tier, segments)."""
        return int(((self.columns["coupon_audience_min_tier"] > 0)
                    | (self.columns["coupon_audience_segment_mask"] > 0)).sum())

    def take(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Column ``name`` at catalogue rows ``rows`` (all >= 0)."""
        return self.columns[name][rows]


def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    order = [c for c in ("event_timestamp", "created_timestamp") if c in frame]
    frame = frame.assign(coupon_id=frame["coupon_id"].astype(str))
    return frame.sort_values(order, kind="stable").drop_duplicates("coupon_id", keep="last")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def load_catalog(repo: Path) -> Catalog:
    """Read the catalogue from ``<repo>/data``; raises CatalogError naming the file."""
    data = Path(repo) / "data"
    attrs_path, stats_path = data / ATTRIBUTES_FILE, data / STATS_FILE
    try:
        attrs = pd.read_parquet(attrs_path)
    except Exception as exc:  # missing, unreadable
        raise CatalogError(f"{attrs_path}: cannot read the coupon catalogue ({exc})") from exc
    attrs = attrs.assign(**{c: v for c, v in LATER_COLUMNS.items() if c not in attrs})
    missing = [c for c in ("coupon_id", *STRING_COLUMNS, *FLOAT_COLUMNS) if c not in attrs]
    if missing:
        raise CatalogError(f"{attrs_path}: missing column(s) {', '.join(missing)}")
    attrs = _latest(attrs).sort_values("coupon_id").reset_index(drop=True)
    ids = attrs["coupon_id"].to_numpy(dtype=object)
    columns: dict[str, np.ndarray] = {}
    for c in STRING_COLUMNS:
        columns[c] = attrs[c].astype(object).where(attrs[c].notna(), "").to_numpy(dtype=object)
    for c in FLOAT_COLUMNS:
        columns[c] = attrs[c].to_numpy(dtype=np.float64)

    stats = None
    if stats_path.is_file():
        try:
            stats = _latest(pd.read_parquet(stats_path, columns=["coupon_id", "event_timestamp",
                                                                 "created_timestamp", *STATS_COLUMNS]))
        except Exception as exc:
            log.warning("%s: cannot read cached coupon stats (%s); fallback uses catalogue order", stats_path, exc)
    for c in STATS_COLUMNS:
        if stats is None:
            columns[c] = np.full(len(ids), np.nan)
        else:
            columns[c] = stats.set_index("coupon_id")[c].reindex(ids).to_numpy(dtype=np.float64)
    return Catalog(ids, columns, unix_now(), (_mtime(attrs_path), _mtime(stats_path)))


def _with_mtimes(catalog: Catalog, mtimes: tuple[float, float]) -> Catalog:
    return Catalog(catalog.ids, catalog.columns, catalog.loaded_at, mtimes, catalog.index)


class CatalogHolder:
    """The current catalogue, reloaded in the background when its files change.

    ``current`` is a plain attribute read (atomic in CPython): a request takes one
    catalogue at its start and uses it throughout.
    """

    def __init__(self, repo: Path, refresh_seconds: float = DEFAULT_REFRESH_SECONDS, min_kept: float = 0.5):
        self.repo = Path(repo)
        self.refresh_seconds = float(refresh_seconds)
        self.min_kept = float(min_kept)  # a reload keeping fewer than this share of the coupons is refused
        self.current: Catalog = load_catalog(self.repo)
        if not len(self.current):
            raise CatalogError(f"{self.repo / 'data' / ATTRIBUTES_FILE}: the catalogue holds no coupon; "
                               "refusing to serve empty answers (run `couponrank build-features`)")
        self._periodic = Periodic("catalog-refresh", self.refresh_seconds, self.refresh)

    def refresh(self, force: bool = False) -> bool:
        """Reload if a source file changed (or ``force``); True when reloaded.
        A failed reload keeps the previous catalogue and logs why."""
        data = self.repo / "data"
        mtimes = (_mtime(data / ATTRIBUTES_FILE), _mtime(data / STATS_FILE))
        if not force and mtimes == self.current.mtimes:
            return False
        try:
            new = load_catalog(self.repo)
        except CatalogError as exc:
            log.error("catalogue reload failed, keeping the previous one: %s", exc)
            return False
        if len(new) < self.min_kept * len(self.current):
            # an empty or sharply shrunken file is far more often a broken build than a
            # retailer dropping most of its coupons at once: keep serving the old one
            log.error("catalogue reload refused: %d coupons, down from %d (less than %.0f%%); keeping the "
                      "previous one until a restart loads it deliberately", len(new), len(self.current),
                      100 * self.min_kept)
            self.current = _with_mtimes(self.current, new.mtimes)  # not refused again until the files change
            return False
        self.current = new
        log.info("catalogue reloaded: %d coupons", len(self.current))
        return True

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
