"""The README's main command, end to end on the tiny data set."""

from __future__ import annotations

import re

from couponrank.cli import main
from couponrank.training.artifact import load_artifact


def test_demo_runs_end_to_end(tmp_path, capsys):
    raw, repo, models = tmp_path / "raw", tmp_path / "features", tmp_path / "models"
    code = main(["demo", "--size", "tiny", "--quiet", "--raw", str(raw), "--repo", str(repo),
                 "--models", str(models)])
    out = capsys.readouterr().out
    assert code == 0
    for step in ("1. generate", "2. build features", "3. feast apply", "4. feast materialize",
                 "5. online features", "6. train", "7. serve RankCoupons"):
        assert step in out
    assert (repo / "data" / "registry.db").is_file() and (repo / "data" / "online_store.db").is_file()
    # the online lookup found the user's redemption of that coupon
    assert re.search(r'"ucp_redemptions_total": [1-9]', out)
    art = load_artifact(models)
    assert "lightgbm_ranker" in out and art.version in out
    # the server answered all three users with the trained model
    assert out.count(f"model {art.version}") == 3 and "at checkout" in out
