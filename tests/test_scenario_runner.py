"""The Python scenario runner (couponrank.client.scenario) without a server: the
membership keys and the member-centre placement, as the Go (internal/scenario) and
Java (ScenarioRunner) runners read them. The rest of the runner is tested in
test_contract.py."""

from __future__ import annotations

import re

import pytest

from couponrank.client import client as client_module
from couponrank.client import scenario
from couponrank.v1 import coupon_ranking_service_pb2 as pb


def test_membership_keys_parse_and_reject_wrong_types():
    got = scenario.parse('[{"user_id": "u1", "membership_tier": "gold", "membership_segment_ids": ["s1", "s2"]},'
                         ' {"user_id": "u2", "membership_tier": null, "membership_segment_ids": null}]')
    assert got == [{"user_id": "u1", "membership_tier": "gold", "membership_segment_ids": ["s1", "s2"]},
                   {"user_id": "u2"}]  # null is absent
    for bad, message in (('[{"membership_tier": 1}]', "membership_tier: want a string"),
                         ('[{"membership_tier": ["gold"]}]', "membership_tier: want a string"),
                         ('[{"membership_segment_ids": "s1"}]', "membership_segment_ids: want a list of strings"),
                         ('[{"membership_segment_ids": ["s1", 2]}]', "membership_segment_ids: want a list of strings"),
                         ('[{"membership": {"tier": "gold"}}]', 'unknown key "membership"')):
        with pytest.raises(ValueError, match=re.escape(message)):
            scenario.parse(bad)


@pytest.mark.parametrize("keys, tier, segments", [
    ({"membership_tier": "gold", "membership_segment_ids": ["s1", "s2"]}, "gold", ["s1", "s2"]),
    ({"membership_tier": ""}, "", []),  # explicitly not a member
    ({"membership_segment_ids": ["s1"]}, "", ["s1"]),
    ({"membership_segment_ids": []}, "", []),
])
def test_membership_is_sent_when_either_key_is_present(keys, tier, segments):
    (s,) = scenario.parse(scenario.dumps([{"user_id": "u1", **keys}]))
    ctx = scenario.to_request(s).context
    assert ctx.HasField("membership")
    assert (ctx.membership.tier, list(ctx.membership.segment_ids)) == (tier, segments)


def test_without_membership_keys_the_servers_membership_is_used():
    for text in ('[{"user_id": "u1"}]', '[{"user_id": "u1", "membership_tier": null, "membership_segment_ids": null}]'):
        (s,) = scenario.parse(text)
        assert not scenario.to_request(s).context.HasField("membership")


def test_member_centre_placement_by_every_spelling():
    for name in ("member_centre", "MEMBER_CENTRE", "PLACEMENT_MEMBER_CENTRE"):
        assert scenario.placement(name) == pb.PLACEMENT_MEMBER_CENTRE == 7
        assert scenario.to_request({"user_id": "u", "placement": name}).context.placement == pb.PLACEMENT_MEMBER_CENTRE


def test_not_in_audience_is_written_with_its_enum_name():
    resp = pb.RankCouponsResponse(model_version="m1", ineligible_coupons=[
        pb.IneligibleCoupon(coupon_id="c9", reason=pb.INELIGIBILITY_REASON_NOT_IN_AUDIENCE,
                            detail="for members of tier gold or above"),
        pb.IneligibleCoupon(coupon_id="c10", reason=99)])  # a reason newer than this client: its number
    line = scenario.result_line(0, "n", client_module.to_result(resp), explain=False)
    assert line["ineligible"] == [{"coupon_id": "c9", "reason": "INELIGIBILITY_REASON_NOT_IN_AUDIENCE"},
                                  {"coupon_id": "c10", "reason": "99"}]
