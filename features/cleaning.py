"""Load and clean the raw event tables.

Two kinds of bad input, two answers:

* a file that cannot be used at all (missing, unreadable, a required column
  missing or of a type that cannot be cast) raises :class:`RawDataError` naming the
  file and the column;
* a row that is wrong (null key, negative price, unknown coupon type, a claim
  before its impression, ...) is dropped and counted under a named reason; a gap
  that has an obvious value (an order line without an amount takes the item's
  price) is filled and counted.

Nothing is silently guessed: every drop and fill shows up in the
:class:`CleaningReport`, which ``couponrank build-features`` prints and saves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from couponrank import schema
from couponrank.features import membership
from couponrank.schema import Table


class RawDataError(ValueError):
    """A raw file cannot be used; the message names the file and column."""


@dataclass
class TableReport:
    rows_in: int = 0
    rows_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)


@dataclass
class CleaningReport:
    tables: dict[str, TableReport] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {name: vars(t) for name, t in self.tables.items()}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    def lines(self) -> list[str]:
        out = []
        for name, t in self.tables.items():
            out.append(f"{name}: {t.rows_in} rows in, {t.rows_out} kept")
            out += [f"  dropped {n} ({reason})" for reason, n in sorted(t.dropped.items())]
            out += [f"  filled {n} ({what})" for what, n in sorted(t.filled.items())]
        return out


@dataclass
class CleanData:
    users: pd.DataFrame
    items: pd.DataFrame
    coupons: pd.DataFrame
    behaviour_events: pd.DataFrame
    coupon_events: pd.DataFrame
    report: CleaningReport
    coupon_items: pd.DataFrame | None = None  # optional raw table; None when absent
    memberships: pd.DataFrame | None = None  # optional raw table; None when absent
    membership: membership.Membership = membership.Membership()  # membership.yaml's tiers and segments


def read_table(raw_dir: Path, table: Table) -> pd.DataFrame:
    """Read one raw table, checking and casting every schema column: its Parquet file
    and, for the tables `couponrank export-events` writes, their day partitions
    (``live/<table>/``, schema.Table.files_in)."""
    path, *parts = table.files_in(raw_dir)
    if not path.is_file():
        raise RawDataError(f"{path}: file not found (expected the raw table '{table.name}')")
    # Event logs are large: read repeated strings as categoricals (dictionary-encoded)
    # and the rest as Arrow-backed strings; 4x faster and far smaller than objects.
    repeated = [f.name for f in table.schema if pa.types.is_string(f.type) and f.name not in table.key] \
        if table.timestamp else []
    arrow = _read_file(path, table, repeated)
    if parts:  # one dictionary per column across the files
        tables = [arrow, *(_read_file(p, table, []) for p in parts)]
        plain = [pa.table([c.cast(f.type) if pa.types.is_dictionary(c.type) else c
                           for c, f in zip(t.columns, table.schema)], schema=table.schema) for t in tables]
        arrow = pa.concat_tables(plain)
        arrow = pa.table([arrow.column(f.name).dictionary_encode() if f.name in repeated else arrow.column(f.name)
                          for f in table.schema], names=table.schema.names)
    return arrow.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)


def _read_file(path: Path, table: Table, repeated: list[str]) -> pa.Table:
    """One Parquet file of ``table`` with exactly its columns and types (optional ones
    it lacks as nulls); RawDataError naming the file and column."""
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise RawDataError(f"{path}: not a readable Parquet file ({exc})") from exc
    present = set(pf.schema_arrow.names)
    missing = [f.name for f in table.schema if f.name not in present and f.name not in table.optional]
    if missing:
        raise RawDataError(f"{path}: missing column(s) {', '.join(missing)}")
    absent = [f for f in table.schema if f.name not in present]  # optional ones: read as nulls
    arrow = pq.read_table(path, columns=[n for n in table.schema.names if n in present], read_dictionary=repeated)
    for f in absent:
        arrow = arrow.append_column(f.name, pa.nulls(arrow.num_rows, f.type))
    columns = []
    for f in table.schema:
        col = arrow.column(f.name)
        if pa.types.is_dictionary(col.type) and col.type.value_type == f.type:
            columns.append(col)
            continue
        if col.type != f.type:
            if pa.types.is_timestamp(f.type) and pa.types.is_timestamp(col.type) and col.type.tz is None:
                raise RawDataError(f"{path}: column {f.name} has naive timestamps; expected UTC-aware")
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise RawDataError(
                    f"{path}: column {f.name} has type {col.type}, expected {f.type} ({exc})"
                ) from exc
        columns.append(col)
    return pa.table(columns, names=table.schema.names)


class _Cleaner:
    """Applies row rules to one table and keeps the tally."""

    def __init__(self, df: pd.DataFrame, report: TableReport):
        self.df = df
        self.report = report
        report.rows_in = len(df)

    def drop(self, mask, reason: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        n = int(mask.sum())
        if n:
            self.report.dropped[reason] = self.report.dropped.get(reason, 0) + n
            self.df = self.df.loc[~mask]

    def fill(self, column: str, mask, values, what: str) -> None:
        mask = np.asarray(mask, dtype=bool)
        n = int(mask.sum())
        if n:
            self.report.filled[what] = self.report.filled.get(what, 0) + n
            col = self.df[column]
            if isinstance(col.dtype, pd.CategoricalDtype) and np.isscalar(values) and values not in col.cat.categories:
                self.df[column] = col.cat.add_categories([values])
            self.df.loc[mask, column] = values if np.isscalar(values) else np.asarray(values)[mask]

    def dedupe(self, key: tuple[str, ...]) -> None:
        # An exact duplicate also repeats the key: compare whole rows only among
        # rows whose key repeats (full-row hashing of 10M rows costs seconds).
        repeated = self.df.duplicated(subset=list(key), keep=False).to_numpy()
        if repeated.any():
            exact = np.zeros(len(self.df), dtype=bool)
            exact[repeated] = self.df.loc[repeated].duplicated(keep="first").to_numpy()
            self.drop(exact, "exact duplicate row")
            self.drop(self.df.duplicated(subset=list(key), keep="first"), f"duplicate {'/'.join(key)}")

    def require(self, *columns: str) -> None:
        for c in columns:
            self.drop(self.df[c].isna(), f"null {c}")

    def done(self) -> pd.DataFrame:
        self.df = self.df.reset_index(drop=True)
        self.report.rows_out = len(self.df)
        return self.df


def _known(c: _Cleaner, column: str, allowed, what: str | None = None) -> None:
    """Drop rows whose value is not among ``allowed`` (an enum, or another table's ids)."""
    allowed = allowed if isinstance(allowed, pd.Series) else list(allowed)
    c.drop(~c.df[column].isin(allowed), f"unknown {what or column}")


def clean_raw(raw_dir: Path, config: membership.Membership | None = None) -> CleanData:
    """Read all raw tables from ``raw_dir`` and apply the cleaning rules (docs/data.md).
    ``config``: the tiers and segments users and audiences may name (default: the
    project's membership.yaml)."""
    raw_dir = Path(raw_dir)
    config = membership.load() if config is None else config
    report = CleaningReport()
    frames = {t.name: read_table(raw_dir, t) for t in schema.RAW_TABLES}

    def start(table: Table) -> _Cleaner:
        report.tables[table.name] = TableReport()
        return _Cleaner(frames[table.name], report.tables[table.name])

    # users
    c = start(schema.USERS)
    c.require("user_id")
    c.dedupe(schema.USERS.key)
    c.fill("country", c.df["country"].isna(), "unknown", "country: null -> 'unknown'")
    users = c.done()

    # items
    c = start(schema.ITEMS)
    c.require("item_id", "category")
    c.dedupe(schema.ITEMS.key)
    c.drop(~(c.df["price"] > 0), "price not positive or null")
    c.fill("brand", c.df["brand"].isna(), "unknown", "brand: null -> 'unknown'")
    c.fill("merchant_id", c.df["merchant_id"].isna(), "unknown", "merchant_id: null -> 'unknown'")
    items = c.done()

    # coupons
    c = start(schema.COUPONS)
    c.require("coupon_id", "valid_from", "valid_to")
    c.dedupe(schema.COUPONS.key)
    _known(c, "coupon_type", schema.COUPON_TYPES, "coupon_type")
    _known(c, "scope", schema.COUPON_SCOPES, "scope")
    c.drop(c.df["valid_to"] <= c.df["valid_from"], "valid_to not after valid_from")
    c.drop((c.df["scope"] != "all") & c.df["scope_value"].isna(), "scoped coupon without scope_value")
    pct = c.df["coupon_type"] == "percent_off"
    c.drop(pct & ~((c.df["value"] > 0) & (c.df["value"] <= 100)), "percent_off value outside (0, 100]")
    c.drop((c.df["coupon_type"] == "amount_off") & ~(c.df["value"] > 0), "amount_off value not positive")
    c.fill("value", c.df["value"].isna(), 0.0, "value: null -> 0 (free_shipping)")
    c.drop(c.df["min_spend"] < 0, "negative min_spend")
    c.fill("min_spend", c.df["min_spend"].isna(), 0.0, "min_spend: null -> 0")
    c.fill("per_user_limit", c.df["per_user_limit"].isna(), 1, "per_user_limit: null -> 1")
    c.drop(c.df["per_user_limit"] < 1, "per_user_limit below 1")
    c.fill("budget", c.df["budget"].isna(), np.inf, "budget: null -> unlimited")
    c.drop(c.df["budget"] < 0, "negative budget")
    c.fill("campaign_id", c.df["campaign_id"].isna(), "none", "campaign_id: null -> 'none'")
    audiences = _audiences(c.df["audience"], config)
    c.drop(audiences.isna(), "bad audience")
    c.df = c.df.assign(audience=audiences.loc[c.df.index].astype(object))
    coupons = c.done()
    coupons["per_user_limit"] = coupons["per_user_limit"].astype(np.int32)

    # behaviour events
    c = start(schema.BEHAVIOUR_EVENTS)
    c.require("event_id", "user_id", "item_id", "event_ts")
    c.dedupe(schema.BEHAVIOUR_EVENTS.key)
    _known(c, "event_type", schema.BEHAVIOUR_EVENT_TYPES, "event_type")
    _known(c, "user_id", users["user_id"])
    _known(c, "item_id", items["item_id"])
    is_order = c.df["event_type"] == "order"
    c.drop(is_order & c.df["order_id"].isna(), "order without order_id")
    c.drop(c.df["amount"] < 0, "negative amount")
    is_order = c.df["event_type"] == "order"
    price = c.df["item_id"].map(items.set_index("item_id")["price"])
    c.fill("amount", is_order & c.df["amount"].isna(), price, "amount: null order line -> item price")
    behaviour = c.done()

    # coupon events
    c = start(schema.COUPON_EVENTS)
    c.require("event_id", "user_id", "coupon_id", "event_ts")
    c.dedupe(schema.COUPON_EVENTS.key)
    _known(c, "event_type", schema.COUPON_EVENT_TYPES, "event_type")
    _known(c, "user_id", users["user_id"])
    _known(c, "coupon_id", coupons["coupon_id"])
    imp = c.df["event_type"] == "impression"
    c.drop(imp & c.df["request_id"].isna(), "impression without request_id")
    c.drop(imp & ~c.df["placement"].isin(list(schema.PLACEMENTS)), "impression with unknown placement")
    c.drop(imp & (c.df["cart_value"] < 0), "negative cart_value")
    imp = c.df["event_type"] == "impression"
    c.fill("cart_value", imp & c.df["cart_value"].isna(), 0.0, "cart_value: null -> 0 (empty cart)")
    c.fill("cart_categories", imp & c.df["cart_categories"].isna(), "", "cart_categories: null -> ''")
    follow = ~imp
    imp_ts = c.df.loc[imp].set_index("event_id")["event_ts"]
    parent_ts = c.df["impression_id"].map(imp_ts)
    c.drop(follow & parent_ts.isna(), "claim/redemption without a known impression")
    follow = c.df["event_type"] != "impression"
    parent_ts = parent_ts.loc[c.df.index]  # rows keep their index until done()
    c.drop(follow & (c.df["event_ts"] < parent_ts), "timestamps out of order: before its impression")
    # a redemption's order_id is optional: campaign data often dates a redemption without
    # naming the basket, and no feature reads it
    red = c.df["event_type"] == "redemption"
    c.fill("discount_amount", red & c.df["discount_amount"].isna(), 0.0, "discount_amount: null -> 0")
    coupon_events = c.done()

    def start_optional(table: Table) -> _Cleaner | None:
        """start() for a table a raw folder may lack: None when it does."""
        if not (raw_dir / table.file).is_file():
            return None
        frames[table.name] = read_table(raw_dir, table)
        return start(table)

    # coupon items (optional)
    coupon_items = None
    if (c := start_optional(schema.COUPON_ITEMS)) is not None:
        c.require("coupon_id", "item_id")
        c.dedupe(schema.COUPON_ITEMS.key)
        _known(c, "coupon_id", coupons["coupon_id"])
        _known(c, "item_id", items["item_id"])
        coupon_items = c.done()

    # memberships (optional)
    memberships = None
    if (c := start_optional(schema.MEMBERSHIPS)) is not None:
        c.require("user_id", "valid_from")
        c.dedupe(schema.MEMBERSHIPS.key)
        _known(c, "user_id", users["user_id"])
        c.df = c.df.assign(tier=c.df["tier"].astype(object).map(lambda v: v.strip() if isinstance(v, str) else ""))
        _known(c, "tier", ("",) + config.tiers, "tier")  # "": not a member from valid_from on
        segs = c.df["segments"].astype(object).map(membership.split)
        known = segs.map(lambda ids: tuple(s for s in ids if s in config.segments))
        c.df = c.df.assign(segments=segs.map(membership.SEPARATOR.join).astype(object))
        c.fill("segments", (segs.map(len) != known.map(len)).to_numpy(), known.map(membership.SEPARATOR.join),
               "segments: ids membership.yaml does not declare removed")
        memberships = c.done()

    return CleanData(users, items, coupons, behaviour, coupon_events, report, coupon_items, memberships, config)


def _audiences(values: pd.Series, config: membership.Membership) -> pd.Series:
    """Each coupon's audience in its canonical text (membership.parse_audience); NaN
    where it does not parse. Audiences repeat: parse each distinct text once."""
    text = values.astype(object).where(values.notna(), None)
    parsed = {}
    for v in pd.unique(text):
        try:
            parsed[v] = membership.parse_audience(v, config).text
        except membership.BadAudience:
            parsed[v] = np.nan
    return text.map(lambda v: parsed[v])
