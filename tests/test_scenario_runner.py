"""The Python scenario runner (couponrank.client.scenario) without a server: the
membership keys, the member-centre placement and the RecordEvents scenarios, as the Go
(internal/scenario) and Java (ScenarioRunner) runners read them. The rest of the runner
is tested in test_contract.py."""

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


# ------------------------------------------------------------------ RecordEvents scenarios
def test_events_scenarios_parse_and_reject_wrong_shapes():
    got = scenario.parse('[{"name": "e", "deadline_ms": 50, "events": [{"event_id": "e1", "position": 2, '
                         '"placement": null}]}, {"events": []}]')
    assert got == [{"name": "e", "deadline_ms": 50, "events": [{"event_id": "e1", "position": 2}]}, {"events": []}]
    for bad, message in (('[{"events": {}}]', "scenarios[0].events: want a list of objects"),
                         ('[{"events": [1]}]', "scenarios[0].events[0]: not an object"),
                         ('[{"events": [{"event_ids": "e1"}]}]', 'scenarios[0].events[0]: unknown key "event_ids"'),
                         ('[{"events": [{"position": "1"}]}]', "scenarios[0].events[0].position: want an integer"),
                         ('[{"events": [{"position": true}]}]', "scenarios[0].events[0].position: want an integer"),
                         ('[{"events": [{}, {"item_id": 7}]}]', "scenarios[0].events[1].item_id: want a string"),
                         ('[{"events": [], "user_id": "u1"}]', 'scenarios[0].user_id: not used with "events"'),
                         ('[{"events": [], "top_k": 3}]', 'scenarios[0].top_k: not used with "events"')):
        with pytest.raises(ValueError, match=re.escape(message)):
            scenario.parse(bad)


def test_each_kind_becomes_its_event_and_the_prefix_goes_on_non_empty_ids():
    events = [
        {"event_id": "i1", "user_id": "u1", "event_time": "2026-07-01T09:59:00Z", "kind": "impression",
         "coupon_id": "c1", "request_id": "r1", "position": 2, "placement": "home"},
        {"event_id": "c1", "user_id": "u1", "kind": "claim", "coupon_id": "c1", "impression_event_id": "i1"},
        {"event_id": "r1", "user_id": "u1", "kind": "redemption", "coupon_id": "c1", "discount_minor": 100,
         "currency_code": "USD"},
        {"event_id": "", "user_id": "u1", "kind": "behaviour", "behaviour_type": "BEHAVIOUR_TYPE_ORDER",
         "item_id": "i9", "order_id": "o1", "amount_minor": 0},
        {"kind": "claim"},
        {"event_id": "x"},
    ]
    request = scenario.to_events_request({"events": events}, "go/")
    imp, claim, red, order, empty_claim, no_kind = request.events
    assert (imp.event_id, imp.event_time.seconds, imp.WhichOneof("kind")) == ("go/i1", 1782899940, "impression")
    assert (imp.impression.coupon_id, imp.impression.request_id, imp.impression.position,
            imp.impression.placement) == ("c1", "r1", 2, pb.PLACEMENT_HOME)
    assert (claim.event_id, claim.claim.impression_event_id) == ("go/c1", "go/i1")
    assert not claim.HasField("event_time")  # absent: not set (the server rejects it)
    assert red.redemption.discount == pb.Money(currency_code="USD", amount_minor=100)
    assert not red.redemption.HasField("order_total")  # a Money only when its *_minor key is there
    assert red.redemption.impression_event_id == ""  # empty stays empty, prefix or not
    assert order.event_id == ""
    assert (order.behaviour.type, order.behaviour.order_id) == (pb.BEHAVIOUR_TYPE_ORDER, "o1")
    assert order.behaviour.HasField("amount") and order.behaviour.amount.amount_minor == 0
    assert empty_claim.WhichOneof("kind") == "claim"  # a claim without fields is still a claim
    assert no_kind.WhichOneof("kind") is None
    assert scenario.to_events_request({"events": events}).events[0].event_id == "i1"  # no prefix
    for name in ("view", "VIEW", " add_to_cart ", "BEHAVIOUR_TYPE_FAVOURITE"):
        assert scenario.to_event({"kind": "behaviour", "behaviour_type": name}).behaviour.type != 0
    assert scenario.to_event({"kind": "behaviour"}).behaviour.type == pb.BEHAVIOUR_TYPE_UNSPECIFIED


@pytest.mark.parametrize("event, message", [
    ({"kind": "purchase"}, "events[0].kind: unknown kind 'purchase'"),
    ({"kind": "claim", "item_id": "i1"}, "events[0].item_id: not a field of claim events"),
    ({"kind": "impression", "discount_minor": 1}, "events[0].discount_minor: not a field of impression events"),
    ({"coupon_id": "c1"}, "events[0].coupon_id: not a field of an event without a kind"),
    ({"kind": "impression", "placement": "basket"}, "events[0].placement: unknown placement 'basket'"),
    ({"kind": "behaviour", "behaviour_type": "like"}, "events[0].behaviour_type: unknown behaviour type 'like'"),
    ({"event_time": "2026-07-01T10:00:00"}, "events[0].event_time: '2026-07-01T10:00:00' has no time zone"),
])
def test_an_event_that_cannot_be_sent_is_a_client_error(event, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        scenario.to_events_request({"events": [event]})

    class Unreachable:
        def record_events(self, *args, **kwargs):
            raise AssertionError("nothing may be sent")

    line = scenario.run(Unreachable(), 3, {"name": "n", "events": [event]})
    assert (line["index"], line["ok"], line["error_code"]) == (3, False, "CLIENT_ERROR")
    assert message in line["error_message"]


def test_an_events_line_takes_the_prefix_off_and_names_statuses_in_full():
    results = [client_module.EventResult("py/e1", "ACCEPTED"), client_module.EventResult("", "REJECTED",
                                                                                         "event_id: must not be empty"),
               client_module.EventResult("other/e2", "DUPLICATE"), client_module.EventResult("py/e3", "7")]
    assert scenario.events_line(2, "n", results, "py/") == {"index": 2, "name": "n", "ok": True, "results": [
        {"event_id": "e1", "status": "EVENT_STATUS_ACCEPTED", "detail": ""},
        {"event_id": "", "status": "EVENT_STATUS_REJECTED", "detail": "event_id: must not be empty"},
        {"event_id": "other/e2", "status": "EVENT_STATUS_DUPLICATE", "detail": ""},  # not ours: as answered
        {"event_id": "e3", "status": "7", "detail": ""}]}  # a status newer than this client: its number
