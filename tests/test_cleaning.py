"""Bad raw input: unusable files raise errors naming file and column; bad rows are
dropped and counted, gaps filled and counted."""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import handmade
from couponrank.cli import main
from couponrank.features.cleaning import RawDataError, clean_raw
from handmade import at


@pytest.fixture
def raw(tmp_path, handmade_raw):
    out = tmp_path / "raw"
    shutil.copytree(handmade_raw, out)
    return out


def _edit(raw, name, fn):
    path = raw / f"{name}.parquet"
    table = pq.read_table(path)
    df = fn(table.to_pandas())
    pq.write_table(pa.Table.from_pandas(df, schema=table.schema, preserve_index=False), path)


def test_clean_data_passes_untouched(raw):
    data = clean_raw(raw)
    for t in data.report.tables.values():
        assert t.rows_in == t.rows_out and not t.dropped and not t.filled


def test_missing_file_is_named(raw):
    (raw / "coupons.parquet").unlink()
    with pytest.raises(RawDataError, match=r"coupons\.parquet: file not found"):
        clean_raw(raw)


def test_missing_column_is_named(raw):
    df = pd.read_parquet(raw / "items.parquet").drop(columns=["price"])
    df.to_parquet(raw / "items.parquet", index=False)
    with pytest.raises(RawDataError, match=r"items\.parquet: missing column\(s\) price"):
        clean_raw(raw)


def test_wrong_type_is_named(raw):
    df = pd.read_parquet(raw / "items.parquet")
    df["price"] = "cheap"
    df.to_parquet(raw / "items.parquet", index=False)
    with pytest.raises(RawDataError, match=r"items\.parquet: column price has type string"):
        clean_raw(raw)


def test_naive_timestamps_are_refused(raw):
    df = pd.read_parquet(raw / "behaviour_events.parquet")
    df["event_ts"] = df["event_ts"].dt.tz_localize(None)
    df.to_parquet(raw / "behaviour_events.parquet", index=False)
    with pytest.raises(RawDataError, match=r"behaviour_events\.parquet: column event_ts has naive"):
        clean_raw(raw)


def test_not_parquet_is_named(raw):
    (raw / "users.parquet").write_text("user_id,signup_ts\n")
    with pytest.raises(RawDataError, match=r"users\.parquet: not a readable Parquet file"):
        clean_raw(raw)


def test_bad_rows_are_dropped_and_counted(raw):
    def items(df):
        bad = df.iloc[[0]].assign(item_id="i_bad", price=-3.0)
        return pd.concat([df, bad])

    def coupons(df):
        bad_type = df.iloc[[0]].assign(coupon_id="c_bad", coupon_type="bogo")
        backwards = df.iloc[[0]].assign(coupon_id="c_back", valid_from=at(10), valid_to=at(5))
        return pd.concat([df, bad_type, backwards])

    def behaviour(df):
        dup = df.iloc[[0, 1]]
        no_user = df.iloc[[2]].assign(event_id="x1", user_id=None)
        unknown = df.iloc[[2]].assign(event_id="x2", event_type="teleport")
        gap = df.iloc[[4]].assign(event_id="x3", amount=None)  # order line without amount
        return pd.concat([df, dup, no_user, unknown, gap])

    def coupon_events(df):
        early_claim = df.iloc[[2]].assign(event_id="y1", event_ts=at(1, 1))  # before impression e1
        orphan = df.iloc[[2]].assign(event_id="y2", impression_id="nope")
        red = df[df.event_type == "redemption"].iloc[[0]]
        no_order = red.assign(event_id="y3", order_id=None)  # kept: the order is optional
        return pd.concat([df, early_claim, orphan, no_order])

    _edit(raw, "items", items)
    _edit(raw, "coupons", coupons)
    _edit(raw, "behaviour_events", behaviour)
    _edit(raw, "coupon_events", coupon_events)
    data = clean_raw(raw)
    r = data.report.tables
    assert r["items"].dropped == {"price not positive or null": 1}
    assert r["coupons"].dropped == {"unknown coupon_type": 1, "valid_to not after valid_from": 1}
    assert r["behaviour_events"].dropped == {"exact duplicate row": 2, "null user_id": 1, "unknown event_type": 1}
    assert r["behaviour_events"].filled == {"amount: null order line -> item price": 1}
    assert data.behaviour_events.set_index("event_id").loc["x3", "amount"] == 40.0  # i2's price
    assert r["coupon_events"].dropped == {
        "timestamps out of order: before its impression": 1,
        "claim/redemption without a known impression": 1,
    }
    assert len(data.coupons) == len(handmade.coupons())
    kept = data.coupon_events.set_index("event_id")
    assert "y3" in kept.index and kept.loc["y3", "event_type"] == "redemption" and pd.isna(kept.loc["y3", "order_id"])


def test_cli_reports_bad_file_without_traceback(raw, tmp_path, capsys):
    df = pd.read_parquet(raw / "coupons.parquet").drop(columns=["coupon_type"])
    df.to_parquet(raw / "coupons.parquet", index=False)
    code = main(["build-features", "--raw", str(raw), "--repo", str(tmp_path / "repo"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "coupons.parquet: missing column(s) coupon_type" in err and "Traceback" not in err


def test_failed_build_keeps_previous_sources(raw, tmp_path):
    """Nothing already stored is lost: a failing rebuild leaves the old sources in place."""
    ws = tmp_path / "repo"
    assert main(["build-features", "--raw", str(raw), "--repo", str(ws), "--quiet"]) == 0
    before = (ws / "data" / "user_activity.parquet").read_bytes()
    (raw / "users.parquet").unlink()
    assert main(["build-features", "--raw", str(raw), "--repo", str(ws), "--quiet"]) == 2
    assert (ws / "data" / "user_activity.parquet").read_bytes() == before
