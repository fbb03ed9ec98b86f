"""The README's main command, end to end on the tiny data set, on a pinned day."""

from __future__ import annotations

import re

import pytest

from couponrank.cli import main
from couponrank.demo import run_demo
from couponrank.training.artifact import load_artifact
from pinned import CLOCK, END_DATE, NOW

pytestmark = pytest.mark.clock  # date-sensitive: run again with the clock moved ahead


def test_demo_runs_end_to_end_and_ranks_at_the_servers_clock(tmp_path, capsys):
    """`make demo` on the day it runs: the data ends that day (00:00 UTC) and the
    server ranks at its own clock, so coupons are valid now. Pinned here to a fixed
    day and clock; tests/test_generate.py shows the data is the same on any other day,
    shifted in time, and holds active coupons at every hour of its end day."""
    raw, repo, models = tmp_path / "raw", tmp_path / "features", tmp_path / "models"
    result = run_demo(raw, repo, models, size="tiny", progress=False, end_date=END_DATE, clock=CLOCK)
    out = capsys.readouterr().out
    for step in ("1. generate", "2. build features", "3. feast apply", "4. feast materialize",
                 "5. online features", "6. train", "7. serve RankCoupons"):
        assert step in out
    assert "2026-06-01 .. 2026-07-01" in out
    assert f"the server's clock reads {NOW:%Y-%m-%dT%H:%M:%SZ}" in out
    assert (repo / "data" / "registry.db").is_file() and (repo / "data" / "online_store.db").is_file()
    # the online lookup found the user's redemption of that coupon
    assert re.search(r'"ucp_redemptions_total": [1-9]', out)
    art = load_artifact(models)
    assert "lightgbm_ranker" in out and art.version in out
    # the server ranked coupons for all four requests with the trained model, at its clock
    assert out.count(f"model {art.version}") == 5 and "at checkout" in out and "at member_centre" in out
    answers = result["answers"]
    assert len(answers) == 5 and all(a.ranked and not a.note for a in answers)
    # the loop: the redemption recorded after the first answer drops that coupon from the last
    redeemed = re.search(r"redeems (\S+); RecordEvents: ACCEPTED, ACCEPTED", out).group(1)
    assert [i.reason for i in answers[-1].ineligible if i.coupon_id == redeemed] == ["PER_USER_LIMIT_REACHED"]
    # and recorded views and an add-to-cart reach the user's pushed features
    assert "RecordEvents: ACCEPTED, ACCEPTED, ACCEPTED, ACCEPTED; their recent activity" in out
    loop = result["recent_activity"]
    activity = loop["counts"]  # feature -> (before, after)
    # the last hour holds only the recorded events (the data ended 10 h before the clock);
    # the last day holds them and the batch's of the day before the data's end
    assert {f: after for f, (_, after) in activity.items() if f.endswith("_1h")} == {
        "recent_views_1h": 3, "recent_carts_1h": 1, "recent_orders_1h": 0,
        "recent_category_views_1h": 3, "recent_category_carts_1h": 1, "recent_category_orders_1h": 0}
    assert activity["recent_views_24h"][1] >= 3 and activity["recent_carts_24h"][1] >= 1
    assert activity["recent_views_1h"][0] != 3  # it did change
    # and the model reads them: the chosen category's coupon scores otherwise than before
    assert art.metadata["feature_service"] == "ranker_v4"
    rank_before, score_before, rank_after, score_after = loop["moved"]
    assert loop["coupon"] and rank_after is not None and score_after != score_before
    assert f"{loop['coupon']} (a {loop['category']} coupon) at home" in out


def test_demo_refuses_a_bad_end_date(tmp_path, capsys):
    assert main(["demo", "--size", "tiny", "--quiet", "--end-date", "2026-02-30", "--raw", str(tmp_path / "raw"),
                 "--repo", str(tmp_path / "features"), "--models", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert "--end-date" in err and "2026-02-30" in err
    assert not (tmp_path / "raw").exists()
