"""Membership tiers, segments and coupon audiences (issue 13): membership.yaml, the raw
memberships table and coupons' audiences through cleaning and build-features, the
point-in-time user_membership view, and the audience rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import handmade
from couponrank import schema
from couponrank.features import membership
from couponrank.features.membership import Audience, BadAudience, Membership, MembershipConfigError

CONFIG = Membership(("silver", "gold", "platinum"), ("new_parents", "students", "pet_owners"))


# ------------------------------------------------------------------ membership.yaml
def test_the_project_file_declares_three_tiers_lowest_first_and_segments():
    config = membership.load()
    assert config.tiers == ("silver", "gold", "platinum")
    assert config.rank("") == 0 and config.rank(None) == 0
    assert [config.rank(t) for t in config.tiers] == [1, 2, 3]
    assert config.segments and config.mask(config.segments) == 2 ** len(config.segments) - 1


def test_a_workspace_without_the_file_reads_the_projects(tmp_path):
    assert membership.load(tmp_path) == membership.load()


@pytest.mark.parametrize("text, message", [
    ("tiers: gold", "tiers: want a list"),
    ("tiers: [gold, gold]", "listed twice"),
    ("tiers: [gold]\nlevels: [a]", "unknown key 'levels'"),
    ("tiers: ['a|b']", "contains '|'"),
    ("segments: [' x']", "segments: want a list"),
    ("[a, b]", "want a mapping"),
    ("tiers: [a\n", "cannot be read as YAML"),
])
def test_a_bad_file_is_refused_naming_it_and_the_key(tmp_path, text, message):
    (tmp_path / membership.MEMBERSHIP_FILE).write_text(text)
    with pytest.raises(MembershipConfigError, match=message) as err:
        membership.load(tmp_path)
    assert str(tmp_path / membership.MEMBERSHIP_FILE) in str(err.value)


def test_at_most_52_segments_so_that_masks_stay_exact_in_float64(tmp_path):
    (tmp_path / membership.MEMBERSHIP_FILE).write_text("segments: [" + ", ".join(f"s{i}" for i in range(53)) + "]")
    with pytest.raises(MembershipConfigError, match="53 declared, at most 52"):
        membership.load(tmp_path)
    (tmp_path / membership.MEMBERSHIP_FILE).write_text("segments: [" + ", ".join(f"s{i}" for i in range(52)) + "]")
    config = membership.load(tmp_path)
    top = float(config.mask(["s51"]))
    assert int(top) == 1 << 51 and membership.admitted([0.0], [top], 0.0, float(config.mask(["s51", "s0"])))[0]


# ------------------------------------------------------------------ audiences
@pytest.mark.parametrize("text, expected", [
    (None, Audience("all")),
    ("", Audience("all")),
    (" all ", Audience("all")),
    ("members", Audience("members", 1)),
    ("tier>=gold", Audience("tier>=gold", 2)),
    ("tier>= platinum", Audience("tier>=platinum", 3)),
    ("segments:students|new_parents|students", Audience("segments:new_parents|students", 0, 0b011, 2)),
])
def test_audiences_parse_to_a_lowest_tier_and_a_segment_mask(text, expected):
    assert membership.parse_audience(text, CONFIG) == expected


@pytest.mark.parametrize("text, message", [
    ("tier>=diamond", "unknown tier 'diamond'"),
    ("tier>=", "names no tier"),
    ("segments:|", "names no segment"),
    ("segments:chess_players", "unknown segment 'chess_players'"),
    ("vip", "none of all, members"),
])
def test_a_bad_audience_says_why(text, message):
    with pytest.raises(BadAudience, match=message):
        membership.parse_audience(text, CONFIG)


def test_members_needs_declared_tiers():
    with pytest.raises(BadAudience, match="declares no tiers"):
        membership.parse_audience("members", Membership())


def test_the_rule_rank_at_least_the_lowest_tier_and_a_shared_segment():
    audiences = [membership.parse_audience(t, CONFIG) for t in
                 ("all", "members", "tier>=gold", "tier>=platinum", "segments:students", "segments:pet_owners|students")]
    min_tier = np.array([a.min_tier for a in audiences], float)
    mask = np.array([a.segment_mask for a in audiences], float)

    def admitted(tier, segments=()):
        return membership.admitted(min_tier, mask, float(CONFIG.rank(tier)), float(CONFIG.mask(segments))).tolist()

    assert admitted("") == [True, False, False, False, False, False]
    assert admitted("silver") == [True, True, False, False, False, False]
    assert admitted("gold") == [True, True, True, False, False, False]
    assert admitted("platinum") == [True, True, True, True, False, False]
    assert admitted("", ["students"]) == [True, False, False, False, True, True]
    assert admitted("gold", ["pet_owners"]) == [True, True, True, False, False, True]
    # unknown user (NaN features): a non-member in no segment; an unknown audience admits everyone
    assert membership.admitted(min_tier, mask, np.nan, np.nan).tolist() == admitted("")
    assert membership.admitted([np.nan], [np.nan], 0.0, 0.0).tolist() == [True]


def test_the_words_name_the_coupons_audience_only():
    assert membership.describe("members") == "for members only"
    assert membership.describe("tier>=gold") == "for members of tier 'gold' or above"
    assert membership.describe("segments:new_parents|students") == "for users in segment 'new_parents' or 'students'"


# ------------------------------------------------------------------ raw data -> features
def _raw_with_memberships(root: Path) -> Path:
    raw = handmade.write(root / "raw")
    coupons = pq.read_table(raw / schema.COUPONS.file).to_pandas()
    coupons["audience"] = ["members", "tier>=gold", None]  # c1, c2, c3
    extra = coupons.iloc[[0, 0, 0]].assign(coupon_id=["c4", "c5", "c6"],
                                           audience=["tier>=diamond", "segments:students", "vip"])
    coupons = pd.concat([coupons, extra], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(coupons, schema=schema.COUPONS.schema, preserve_index=False),
                   raw / schema.COUPONS.file)
    rows = [
        ("u1", handmade.at(-10), "silver", "students"),
        ("u1", handmade.at(8), "gold", "students|nobody"),  # upgraded on day 8; an undeclared segment
        ("u2", handmade.at(3), None, "pet_owners"),  # not a member, in a segment
        ("u2", handmade.at(3), None, "pet_owners"),  # exact duplicate
        ("u3", handmade.at(1), "diamond", None),  # unknown tier
        ("u9", handmade.at(1), "gold", None),  # unknown user
        (None, handmade.at(1), "gold", None),
    ]
    df = pd.DataFrame(rows, columns=schema.MEMBERSHIPS.schema.names)
    pq.write_table(pa.Table.from_pandas(df, schema=schema.MEMBERSHIPS.schema, preserve_index=False),
                   raw / schema.MEMBERSHIPS.file)
    return raw


@pytest.fixture(scope="module")
def member_raw(tmp_path_factory) -> Path:
    return _raw_with_memberships(tmp_path_factory.mktemp("members"))


def test_cleaning_keeps_known_audiences_and_memberships_and_counts_the_rest(member_raw):
    from couponrank.features.cleaning import clean_raw

    data = clean_raw(member_raw, CONFIG)
    assert dict(zip(data.coupons.coupon_id, data.coupons.audience)) == {
        "c1": "members", "c2": "tier>=gold", "c3": "all", "c5": "segments:students"}
    assert data.report.tables["coupons"].dropped["bad audience"] == 2
    m = data.memberships
    assert list(zip(m.user_id, m.tier, m.segments)) == [("u1", "silver", "students"), ("u1", "gold", "students"),
                                                      ("u2", "", "pet_owners")]
    report = data.report.tables["memberships"]
    assert report.dropped == {"null user_id": 1, "exact duplicate row": 1, "unknown user_id": 1, "unknown tier": 1}
    assert report.filled == {"segments: ids membership.yaml does not declare removed": 1}


def test_a_raw_folder_without_the_audience_column_or_memberships_is_everyone_and_no_members(handmade_raw):
    from couponrank.features.build import coupon_attributes, user_membership
    from couponrank.features.cleaning import clean_raw

    data = clean_raw(handmade_raw, CONFIG)
    assert set(data.coupons.audience) == {"all"} and data.memberships is None
    attrs = coupon_attributes(data)
    assert (attrs.coupon_audience_min_tier == 0).all() and (attrs.coupon_audience_segment_mask == 0).all()
    assert user_membership(data).empty


def test_an_old_raw_file_lacking_the_audience_column_still_reads(tmp_path, handmade_raw):
    from couponrank.features.cleaning import clean_raw

    raw = tmp_path / "raw"
    shutil.copytree(handmade_raw, raw)
    table = pq.read_table(raw / schema.COUPONS.file)
    pq.write_table(table.drop(["audience"]), raw / schema.COUPONS.file)
    assert set(clean_raw(raw, CONFIG).coupons.audience) == {"all"}


def test_build_features_stores_ranks_and_masks_point_in_time(member_raw, tmp_path):
    from couponrank.features import repo
    from couponrank.features.build import build_features

    ws = repo.init_workspace(tmp_path / "ws")
    assert (ws / membership.MEMBERSHIP_FILE).read_text() == membership.PROJECT_FILE.read_text()
    build_features(member_raw, ws)
    um = pd.read_parquet(ws / "data" / "user_membership.parquet")
    assert list(zip(um.user_id, um.event_timestamp, um.membership_tier_rank, um.membership_segment_mask,
                    um.membership_segment_count)) == [
        ("u1", handmade.at(-10), 1.0, 2.0, 1.0), ("u1", handmade.at(8), 2.0, 2.0, 1.0),
        ("u2", handmade.at(3), 0.0, 4.0, 1.0)]
    attrs = pd.read_parquet(ws / "data" / "coupon_attributes.parquet").set_index("coupon_id")
    assert attrs.loc[["c1", "c2", "c3", "c5"], "coupon_audience_min_tier"].tolist() == [1.0, 2.0, 0.0, 0.0]
    assert attrs.loc["c5", "coupon_audience_segment_mask"] == 2.0 and attrs.loc["c5", "coupon_audience"] == \
        "segments:students"

    # Feast's point-in-time join: u1 is silver before day 8, gold from then on; u3 has no row
    repo.apply(ws)
    store = repo.store(ws)
    entities = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u3"],
                             "event_timestamp": [handmade.at(7, 23), handmade.at(8), handmade.at(20), handmade.at(20)]})
    got = store.get_historical_features(entities, features=["user_membership:membership_tier_rank"]).to_df()
    got = got.sort_values(["user_id", "event_timestamp"])
    assert got.membership_tier_rank.tolist()[:3] == [1.0, 2.0, 2.0] and np.isnan(got.membership_tier_rank.iloc[3])


def test_build_features_uses_the_workspaces_own_tiers(member_raw, tmp_path):
    from couponrank.features import repo
    from couponrank.features.build import build_features

    ws = repo.init_workspace(tmp_path / "ws")
    (ws / membership.MEMBERSHIP_FILE).write_text("tiers: [bronze, silver, gold, platinum]\nsegments: [students]\n")
    build_features(member_raw, ws)
    um = pd.read_parquet(ws / "data" / "user_membership.parquet")
    assert um.membership_tier_rank.tolist()[:2] == [2.0, 3.0]  # silver and gold one rank higher


def test_build_features_cli_names_a_bad_membership_file(member_raw, tmp_path, capsys):
    from couponrank.cli import main

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / membership.MEMBERSHIP_FILE).write_text("tiers: [gold, gold]\n")
    assert main(["build-features", "--quiet", "--raw", str(member_raw), "--repo", str(ws)]) == 2
    err = capsys.readouterr().err
    assert "membership.yaml: tiers: a name is listed twice" in err and "Traceback" not in err


def test_the_rank_command_offers_every_placement():
    from couponrank.cli import RANK_PLACEMENTS

    assert tuple(RANK_PLACEMENTS) == schema.PLACEMENTS
