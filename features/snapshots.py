"""Daily point-in-time snapshots of windowed aggregates, computed on whole arrays.

Events are binned by day index (0 = the first day of the data). Snapshot ``k``
(k = 1 .. n_days) is stamped at the midnight that starts day ``k`` and aggregates
days ``< k`` only, so a row stamped T never contains an event at or after T.

A row is emitted for a key at snapshot ``k`` only when one of its windows changed:
an event on day ``k - 1`` (enters every window) or on day ``k - 1 - W`` (leaves a
W-day window). Between two emitted rows every window keeps its value, so the latest
row at or before any time holds the right values (including the row where the
windows drained to zero), which is why the Feast views need no TTL.

Keys are processed in chunks so that memory stays bounded (chunk x days x measures).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """``measure`` summed over the last ``days`` days (None = since the beginning)."""

    measure: str
    days: int | None


def snapshot_windows(
    key: np.ndarray,
    day: np.ndarray,
    measures: Mapping[str, np.ndarray],
    windows: Mapping[str, Window],
    n_keys: int,
    n_days: int,
    last_time: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    also_emit: np.ndarray | None = None,
    chunk_cells: int = 20_000_000,
) -> dict[str, np.ndarray]:
    """Windowed sums per (key, snapshot day).

    key, day: int arrays, one entry per event (day in [0, n_days)).
    measures: name -> per-event weight (1.0 for counts, an amount for sums).
    windows: output name -> Window over one measure.
    last_time: output name -> (mask over events, per-event unix seconds): the
        latest such time strictly before the snapshot, NaN if none.
    also_emit: optional (n_keys, n_days) bool-like accessor, indexed by a key range
        slice, of extra snapshots at which to emit (a value derived from another key's
        windows changed there; e.g. a category's share of the user's total).
    Returns arrays "key", "snapshot" and one per window / last_time output.
    """
    last_time = last_time or {}
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    chunk = max(1, chunk_cells // (n_days + 1))
    parts: list[dict[str, np.ndarray]] = []
    for lo in range(0, n_keys, chunk):
        hi = min(lo + chunk, n_keys)
        a, b = np.searchsorted(key_sorted, [lo, hi])
        idx = order[a:b]
        parts.append(
            _chunk(key[idx] - lo, day[idx], {m: v[idx] for m, v in measures.items()},
                   windows, hi - lo, n_days,
                   {n: (mask[idx], t[idx]) for n, (mask, t) in last_time.items()}, lo,
                   None if also_emit is None else also_emit[lo:hi])
        )
    names = ["key", "snapshot", *windows, *last_time]
    if not parts:  # no events at all: no rows, with the dtypes real rows have (key and day are indices)
        return {n: np.empty(0, dtype=np.int64 if n in ("key", "snapshot") else np.float64) for n in names}
    return {n: np.concatenate([p[n] for p in parts]) for n in names}


def _daily(k: np.ndarray, d: np.ndarray, w: np.ndarray, n_keys: int, n_days: int) -> np.ndarray:
    flat = np.bincount(k * n_days + d, weights=w, minlength=n_keys * n_days)
    return flat.reshape(n_keys, n_days)


def _cumulative(daily: np.ndarray) -> np.ndarray:
    # cum[:, k] = sum of days < k, for k = 0 .. n_days
    out = np.zeros((daily.shape[0], daily.shape[1] + 1))
    np.cumsum(daily, axis=1, out=out[:, 1:])
    return out


def _window(cum: np.ndarray, days: int | None) -> np.ndarray:
    n_days = cum.shape[1] - 1
    ks = np.arange(1, n_days + 1)
    if days is None:
        return cum[:, ks]
    return cum[:, ks] - cum[:, np.maximum(ks - days, 0)]


def change_days(key: np.ndarray, day: np.ndarray, n_keys: int, n_days: int, windows: set[int]) -> np.ndarray:
    """(n_keys, n_days) bool: snapshots at which a key's windows of these sizes change."""
    active = np.zeros((n_keys, n_days), dtype=bool)
    active[key, day] = True
    emit = active.copy()
    for days in windows:
        if days < n_days:
            emit[:, days:] |= active[:, :-days]
    return emit


def _chunk(k, d, measures, windows, n_keys, n_days, last_time, offset, also_emit=None):
    # column c of emit answers snapshot k = c + 1, whose newest day is c
    emit = change_days(k, d, n_keys, n_days, {w.days for w in windows.values() if w.days is not None})
    if also_emit is not None:
        # only once the key exists: a row before its first event would reveal the future
        seen = np.zeros((n_keys, n_days), dtype=bool)
        seen[k, d] = True
        emit |= np.asarray(also_emit, dtype=bool) & np.logical_or.accumulate(seen, axis=1)
    rows_key, rows_snap = np.nonzero(emit)
    out = {"key": rows_key + offset, "snapshot": rows_snap + 1}
    cums = {m: _cumulative(_daily(k, d, w, n_keys, n_days)) for m, w in measures.items()}
    for name, win in windows.items():
        out[name] = _window(cums[win.measure], win.days)[emit]
    for name, (mask, t) in last_time.items():
        latest = np.full((n_keys, n_days), -np.inf)
        np.maximum.at(latest, (k[mask], d[mask]), t[mask])
        # column c answers snapshot k = c + 1, i.e. days <= c: a running maximum
        vals = np.maximum.accumulate(latest, axis=1)[emit]
        vals[np.isinf(vals)] = np.nan
        out[name] = vals
    return out
