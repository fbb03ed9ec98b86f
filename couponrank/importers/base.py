"""The import interface: an adapter reads one source and returns the raw tables.

An adapter (one module in this package per source, see docs/import.md) turns a
retailer's campaign log into the tables of :mod:`couponrank.schema` plus a few extra
files the schema has no place for (:data:`EXTRA_TABLES`), and says in an
:class:`ImportReport` what it could not carry over: every source row is either used
or dropped under a named reason, and a drop that makes other rows unusable names
those knock-on drops too. :mod:`couponrank.importers.writer` validates the result
against the schema and writes the raw folder.

Nothing here names a data set: the adapters do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from couponrank import schema
from couponrank.features.cleaning import TableReport
from couponrank.schema import TS, Table


class SourceError(ValueError):
    """A source cannot be used; the message names the table (file) and the column."""


# ----------------------------------------------------------------------------- extra files
# Written beside the raw tables; build-features does not read them (yet).
COUPON_ITEMS = schema.COUPON_ITEMS  # optional raw table: build-features reads it
USER_ATTRIBUTES = Table(
    "user_attributes",
    pa.schema([("user_id", pa.string()), ("attribute", pa.string()), ("value", pa.string())]),
    key=("user_id", "attribute"),
)
CAMPAIGNS = Table(
    "campaigns",
    pa.schema([("campaign_id", pa.string()), ("campaign_type", pa.string()),
               ("valid_from", TS), ("valid_to", TS)]),
    key=("campaign_id",),
)
EXTRA_TABLES = (COUPON_ITEMS, USER_ATTRIBUTES, CAMPAIGNS)
EXTRA_DESCRIPTIONS = {
    "coupon_items": "every item each coupon covers (the schema's scope holds one category); build-features "
                    "derives the user_coupon_coverage view from it",
    "user_attributes": "user attributes as (user_id, attribute, value) strings; not read by build-features yet",
    "campaigns": "each campaign's type and window; not read by build-features yet",
}


# ----------------------------------------------------------------------------- the report
# One source table: rows read, rows used, rows dropped by reason, values filled; the
# same counts the cleaning step keeps per raw table.
SourceCount = TableReport


@dataclass
class ImportReport:
    """What an import kept, dropped and filled.

    ``sources[t]``: for source table ``t``, ``rows_in == rows_out + sum(dropped)``
    (:meth:`check` asserts it). ``knock_on["t: reason"]`` maps a drop to the rows of
    other tables it made unusable (each counted once more under its own table's
    reason too). ``notes``: counts that are neither drops nor fills (how redemptions
    were linked to orders, how many households were sampled, ...)."""

    sources: dict[str, SourceCount] = field(default_factory=dict)
    knock_on: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, int | str | float] = field(default_factory=dict)

    def table(self, name: str) -> SourceCount:
        return self.sources.setdefault(name, SourceCount())

    def start(self, name: str, rows: int) -> None:
        self.table(name).rows_in = rows

    def drop(self, name: str, reason: str, rows: int, knock_on: Mapping[str, int] | None = None) -> None:
        if rows:
            t = self.table(name)
            t.dropped[reason] = t.dropped.get(reason, 0) + int(rows)
        effects = {k: int(v) for k, v in (knock_on or {}).items() if v}
        if effects:
            key = f"{name}: {reason}"
            merged = self.knock_on.setdefault(key, {})
            for k, v in effects.items():
                merged[k] = merged.get(k, 0) + v

    def fill(self, name: str, what: str, rows: int) -> None:
        if rows:
            t = self.table(name)
            t.filled[what] = t.filled.get(what, 0) + int(rows)

    def done(self, name: str, rows: int) -> None:
        self.table(name).rows_out = int(rows)

    def check(self) -> None:
        """Every source row is either used or dropped under a reason."""
        for name, t in self.sources.items():
            if t.rows_in != t.rows_out + sum(t.dropped.values()):
                raise AssertionError(f"import report: {name}: {t.rows_in} rows in != {t.rows_out} used + "
                                     f"{sum(t.dropped.values())} dropped")

    def to_dict(self) -> dict:
        return {"sources": {n: vars(t) for n, t in self.sources.items()}, "knock_on": self.knock_on,
                "notes": self.notes}

    def lines(self) -> list[str]:
        out = []
        for name, t in self.sources.items():
            out.append(f"{name}: {t.rows_in:,} rows in, {t.rows_out:,} used")
            for reason, n in sorted(t.dropped.items()):
                out.append(f"  dropped {n:,} ({reason})")
                for effect, m in sorted(self.knock_on.get(f"{name}: {reason}", {}).items()):
                    out.append(f"    knock-on: {m:,} {effect}")
            out += [f"  filled {n:,} ({what})" for what, n in sorted(t.filled.items())]
        out += [f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}" for k, v in self.notes.items()]
        return out


# ----------------------------------------------------------------------------- adapters
@dataclass
class Imported:
    """An adapter's answer: every raw table of couponrank.schema as an Arrow table of
    exactly its schema, the extra tables (a subset of :data:`EXTRA_TABLES`), the
    report, and what the manifest should say about the source (``source``,
    ``currency``, the constants the adapter chose, ...)."""

    tables: dict[str, pa.Table]
    extra: dict[str, pa.Table]
    report: ImportReport
    manifest: dict


@dataclass(frozen=True)
class Adapter:
    """One source. ``load(source)`` reads the source's tables (``source`` None: the
    adapter's default location) into pandas frames; ``convert(frames, households,
    seed)`` maps them, keeping a seeded sample of ``households`` users (None: all).
    Both raise :class:`SourceError` on unusable input."""

    name: str
    description: str
    load: Callable[[Path | None], dict[str, pd.DataFrame]]
    convert: Callable[..., Imported]

    def run(self, source: Path | None = None, households: int | None = None, seed: int = 0) -> Imported:
        return self.convert(self.load(source), households=households, seed=seed)


# ----------------------------------------------------------------------------- source helpers
# Column kinds a source declares, checked on files and on frames alike.
INT, NUM, STR, TIME, ANY = "integer", "number", "string", "timestamp", "any"


def _kind_ok(series: pd.Series, kind: str) -> bool:
    dtype = series.dtype
    if kind == ANY:
        return True
    if kind == INT:
        # ids may arrive as floats when they hold nulls; whole numbers only
        if pd.api.types.is_integer_dtype(dtype):
            return True
        if pd.api.types.is_float_dtype(dtype):
            v = series.dropna().to_numpy()
            return bool(np.all(np.mod(v, 1) == 0))
        return False
    if kind == NUM:
        return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if kind == STR:
        return (pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
                or isinstance(dtype, pd.CategoricalDtype))
    if kind == TIME:
        return pd.api.types.is_datetime64_any_dtype(dtype)
    raise ValueError(kind)


def check_frames(frames: Mapping[str, pd.DataFrame], required: Mapping[str, Mapping[str, str]],
                 where: str = "source") -> dict[str, pd.DataFrame]:
    """The required tables with their required columns (and only those), each of the
    declared kind; a :class:`SourceError` naming table and column otherwise."""
    out = {}
    for table, columns in required.items():
        if table not in frames:
            raise SourceError(f"{where}: table '{table}' is missing")
        frame = frames[table]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise SourceError(f"{where}: table '{table}': missing column(s) {', '.join(missing)}")
        for col, kind in columns.items():
            if not _kind_ok(frame[col], kind):
                raise SourceError(f"{where}: table '{table}': column {col} has type {frame[col].dtype}, "
                                  f"expected {kind}")
        out[table] = frame[list(columns)].reset_index(drop=True)
    return out


def read_parquet_tables(folder: Path, required: Mapping[str, Mapping[str, str]]) -> dict[str, pd.DataFrame]:
    """``<table>.parquet`` from ``folder`` for each required table, reading only the
    required columns (``{"*": ANY}`` reads them all); errors name file and column."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder}: not a folder")
    frames = {}
    for table, columns in required.items():
        path = folder / f"{table}.parquet"
        if not path.is_file():
            raise SourceError(f"{path}: file not found (the source table '{table}')")
        try:
            present = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise SourceError(f"{path}: not a readable Parquet file ({exc})") from exc
        missing = [c for c in columns if c not in present]
        if missing:
            raise SourceError(f"{path}: table '{table}': missing column(s) {', '.join(missing)}")
        frames[table] = pq.read_table(path, columns=list(columns)).to_pandas()
    return frames


def sample_ids(ids: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """A seeded sample of ``n`` of the distinct ``ids`` (sorted); all of them for None."""
    universe = np.unique(ids)
    if n is None:
        return universe
    if n < 1:
        raise SourceError(f"--households must be at least 1, got {n}")
    if n > len(universe):
        raise SourceError(f"--households {n}: the source has only {len(universe):,} households")
    return np.sort(np.random.default_rng(seed).choice(universe, size=n, replace=False))


def arrow_table(table: Table, columns: Mapping[str, object]) -> pa.Table:
    """An Arrow table of exactly ``table``'s schema from column values (arrays,
    Series, or a scalar / None repeated for every row); an optional column not given
    is null (coupons.audience: every coupon for everyone)."""
    n = next(len(v) for v in columns.values() if hasattr(v, "__len__") and not isinstance(v, str))
    arrays = []
    for f in table.schema:
        v = columns[f.name] if f.name not in table.optional else columns.get(f.name)
        if v is None or np.isscalar(v):
            arrays.append(pa.array([v] * n, f.type) if v is not None else pa.nulls(n, f.type))
            continue
        if isinstance(v, pd.Series):
            v = v.to_numpy(dtype=object) if f.type == pa.string() else v
        arrays.append(pa.array(v, type=f.type, from_pandas=True))
    return pa.table(arrays, schema=table.schema)


RAW_TABLE_NAMES = tuple(t.name for t in schema.RAW_TABLES)
