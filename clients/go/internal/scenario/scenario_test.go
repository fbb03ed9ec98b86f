package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

const input = `[
  {"name": "full", "request_id": "r-1", "user_id": "u1", "candidate_coupon_ids": ["c1", "c2", "c3"],
   "placement": "cart", "cart_total_minor": 4599, "currency_code": "USD",
   "cart_categories": ["shoes"], "cart_brands": ["acme"], "cart_merchant_ids": ["m1"],
   "request_time": "2026-11-01T12:00:00Z", "top_k": 2, "explain": true, "max_reasons": 3, "deadline_ms": 2000},
  {"user_id": "u2", "placement": null, "candidate_coupon_ids": null},
  {"name": "fails", "user_id": "bad"},
  {"name": "bad placement", "user_id": "u3", "placement": "basket"}
]`

func TestParseAndRequest(t *testing.T) {
	list, err := Parse(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 {
		t.Fatalf("parsed %d scenarios", len(list))
	}
	req, err := list[0].Request()
	if err != nil {
		t.Fatal(err)
	}
	ctx := req.GetContext()
	if req.GetRequestId() != "r-1" || req.GetUserId() != "u1" || len(req.GetCandidateCouponIds()) != 3 ||
		ctx.GetPlacement() != couponrankv1.Placement_PLACEMENT_CART ||
		ctx.GetCartTotal().GetAmountMinor() != 4599 || ctx.GetCartTotal().GetCurrencyCode() != "USD" ||
		ctx.GetCartCategories()[0] != "shoes" || ctx.GetCartBrands()[0] != "acme" || ctx.GetCartMerchantIds()[0] != "m1" ||
		!ctx.GetRequestTime().AsTime().Equal(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)) ||
		req.GetTopK() != 2 || !req.GetExplain() || req.GetMaxReasons() != 3 {
		t.Errorf("request %v", req)
	}
	req, err = list[1].Request()
	if err != nil {
		t.Fatal(err)
	}
	if req.GetContext().GetCartTotal() != nil || req.GetContext().GetRequestTime() != nil ||
		req.GetContext().GetPlacement() != couponrankv1.Placement_PLACEMENT_UNSPECIFIED {
		t.Errorf("minimal request %v", req)
	}
	if _, err := list[3].Request(); err == nil {
		t.Error("bad placement accepted")
	}
}

func TestMembershipKeys(t *testing.T) {
	list, err := Parse(strings.NewReader(`[
	  {"user_id": "u1", "membership_tier": "gold", "membership_segment_ids": ["s1", "s2"], "placement": "member_centre"},
	  {"user_id": "u2", "membership_tier": ""},
	  {"user_id": "u3", "membership_segment_ids": ["s1"]},
	  {"user_id": "u4", "membership_segment_ids": []},
	  {"user_id": "u5"},
	  {"user_id": "u6", "membership_tier": null, "membership_segment_ids": null}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		set      bool
		tier     string
		segments string
	}
	for i, w := range []want{{true, "gold", "s1,s2"}, {true, "", ""}, {true, "", "s1"}, {true, "", ""}, {false, "", ""}, {false, "", ""}} {
		req, err := list[i].Request()
		if err != nil {
			t.Fatal(err)
		}
		m := req.GetContext().GetMembership()
		if (m != nil) != w.set || m.GetTier() != w.tier || strings.Join(m.GetSegmentIds(), ",") != w.segments {
			t.Errorf("scenario %d: membership %v, want set=%v tier %q segments %q", i, m, w.set, w.tier, w.segments)
		}
	}
	req, _ := list[0].Request()
	if req.GetContext().GetPlacement() != couponrankv1.Placement_PLACEMENT_MEMBER_CENTRE {
		t.Errorf("placement %v", req.GetContext().GetPlacement())
	}
	for _, bad := range []string{
		`[{"user_id": "u", "membership_tier": 1}]`,
		`[{"user_id": "u", "membership_segment_ids": "s1"}]`,
		`[{"user_id": "u", "membership_segment_ids": ["s1", 2]}]`,
		`[{"user_id": "u", "membership": {"tier": "gold"}}]`,
	} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// The new reason is written by its enum name, as every other.
func TestNotInAudienceLine(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.SetResponses(&couponrankv1.RankCouponsResponse{IneligibleCoupons: []*couponrankv1.IneligibleCoupon{
		{CouponId: "c9", Reason: couponrankv1.IneligibilityReason_INELIGIBILITY_REASON_NOT_IN_AUDIENCE, Detail: "members only"}}})
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tier := "gold"
	res := Run(context.Background(), c, 0, Scenario{UserID: "u", MembershipTier: &tier}, "")
	if len(res.Ineligible) != 1 || res.Ineligible[0] != (Ineligible{CouponID: "c9", Reason: "INELIGIBILITY_REASON_NOT_IN_AUDIENCE"}) {
		t.Errorf("ineligible %+v", res.Ineligible)
	}
	if got := srv.Requests()[0].GetContext().GetMembership().GetTier(); got != "gold" {
		t.Errorf("server got tier %q", got)
	}
}

func TestParseRejectsUnknownKeys(t *testing.T) {
	if _, err := Parse(strings.NewReader(`[{"user_id": "u", "topk": 3}]`)); err == nil {
		t.Error("unknown key accepted")
	}
	if _, err := Parse(strings.NewReader(`{"user_id": "u"}`)); err == nil {
		t.Error("non-list accepted")
	}
}

func TestRunAllOutput(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.SetHandler(func(_ context.Context, _ int, req *couponrankv1.RankCouponsRequest) (*couponrankv1.RankCouponsResponse, error) {
		if req.GetUserId() == "bad" {
			return nil, status.Error(codes.InvalidArgument, "bad user")
		}
		return &couponrankv1.RankCouponsResponse{
			RequestId: req.GetRequestId(),
			RankedCoupons: []*couponrankv1.RankedCoupon{
				{CouponId: "c2", Rank: 1, Score: 1.5, Reasons: []*couponrankv1.Reason{{Feature: "f1", Value: math.NaN(), Contribution: 0.25}}},
				{CouponId: "c1", Rank: 2, Score: 1e-7},
			},
			IneligibleCoupons: []*couponrankv1.IneligibleCoupon{{CouponId: "c3", Reason: couponrankv1.IneligibilityReason_INELIGIBILITY_REASON_MIN_SPEND_NOT_MET}},
			ModelVersion:      "m1",
			ColdStart:         req.GetUserId() == "u2",
		}, nil
	})
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := Parse(strings.NewReader(input))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	failed, err := RunAll(context.Background(), c, list, &buf, "")
	if err != nil {
		t.Fatal(err)
	}
	if failed != 2 {
		t.Errorf("failed = %d, want 2", failed)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	var got []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, m)
	}

	want0 := `{"index":0,"name":"full","ok":true,` +
		`"ranked":[{"coupon_id":"c2","rank":1,"score":1.5,"reasons":[{"feature":"f1","value":null,"contribution":0.25}]},` +
		`{"coupon_id":"c1","rank":2,"score":1e-7,"reasons":[]}],` +
		`"ineligible":[{"coupon_id":"c3","reason":"INELIGIBILITY_REASON_MIN_SPEND_NOT_MET"}],` +
		`"model_version":"m1","cold_start":false,"degraded":false,"degraded_reason":"DEGRADED_REASON_UNSPECIFIED","note":""}`
	if lines[0] != want0 {
		t.Errorf("line 0:\n got %s\nwant %s", lines[0], want0)
	}
	// Without explain, no reasons key; cold_start passes through.
	if strings.Contains(lines[1], "reasons") || got[1]["cold_start"] != true || got[1]["name"] != "" {
		t.Errorf("line 1: %s", lines[1])
	}
	if got[2]["ok"] != false || got[2]["error_code"] != "INVALID_ARGUMENT" || got[2]["error_message"] != "bad user" {
		t.Errorf("line 2: %s", lines[2])
	}
	for _, k := range []string{"ranked", "note"} {
		if _, has := got[2][k]; has {
			t.Errorf("error line has %q: %s", k, lines[2])
		}
	}
	if _, has := got[3]["note"]; has {
		t.Errorf("client error line has a note: %s", lines[3])
	}
	if got[3]["error_code"] != "CLIENT_ERROR" {
		t.Errorf("line 3: %s", lines[3])
	}
	// The scenario's deadline_ms reached the server.
	dl := srv.Calls()[0].Deadline
	if dl.IsZero() || time.Until(dl) > 2*time.Second {
		t.Errorf("scenario deadline not propagated: %v", dl)
	}
}

// An empty ranking prints empty lists and the server's note saying why.
func TestEmptyRankingPrintsEmptyLists(t *testing.T) {
	srv := couponranktest.Start(t) // answers nothing ranked, Note couponranktest.EmptyCatalogueNote
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := json.Marshal(Run(context.Background(), c, 0, Scenario{UserID: "u"}, ""))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"index":0,"name":"","ok":true,"ranked":[],"ineligible":[],"model_version":"","cold_start":false,"degraded":false,"degraded_reason":"DEGRADED_REASON_UNSPECIFIED","note":"the catalogue holds no coupon"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

// The parse errors read as the Python runner's (couponrank.client.scenario.parse).
func TestParseErrorsReadAsPython(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"user_id": "u1"}`, "scenarios: want a JSON array of objects"},
		{`[1]`, "scenarios[0]: not an object"},
		{`[{"user_id": "u1", "topk": 3}]`, `scenarios[0]: unknown key "topk"`},
		{`[{"top_k": "3"}]`, "scenarios[0].top_k: want an integer"},
		{`[{"top_k": true}]`, "scenarios[0].top_k: want an integer"},
		{`[{"top_k": 3.0}]`, "scenarios[0].top_k: want an integer"},
		{`[{"explain": 1}]`, "scenarios[0].explain: want true or false"},
		{`[{"cart_brands": ["a", 1]}]`, "scenarios[0].cart_brands: want a list of strings"},
		{`[{"membership_tier": ["gold"]}]`, "scenarios[0].membership_tier: want a string"},
		{`[{"membership": {"tier": "gold"}}]`, `scenarios[0]: unknown key "membership"`},
		// events: what may go with them, then the events themselves
		{`[{"user_id": "u"}, {"events": [], "user_id": "u", "top_k": 1}]`, `scenarios[1].top_k: not used with "events"`},
		{`[{"events": [], "name": "n", "deadline_ms": 5, "explain": null, "placement": "home"}]`, `scenarios[0].placement: not used with "events"`},
		{`[{"events": [{"kind": "claim"}], "top_k": "x"}]`, `scenarios[0].top_k: not used with "events"`},
		{`[{"events": [{"x": 1}], "topk": 1}]`, `scenarios[0]: unknown key "topk"`},             // the scenario's keys first
		{`[{"user_id": "u", "events": [{"x": 1}]}]`, `scenarios[0].events[0]: unknown key "x"`}, // then the events
		{`[{"events": {}}]`, "scenarios[0].events: want a list of objects"},
		{`[{"events": "e-1"}]`, "scenarios[0].events: want a list of objects"},
		{`[{"events": [{}, 1]}]`, "scenarios[0].events[1]: not an object"},
		{`[{"events": [{"zz": 1, "evnt_id": "e", "event_id": "e"}]}]`, `scenarios[0].events[0]: unknown key "evnt_id"`},
		{`[{"events": [{"event_id": 1}]}]`, "scenarios[0].events[0].event_id: want a string"},
		{`[{"events": [{}, {"kind": ["claim"]}]}]`, "scenarios[0].events[1].kind: want a string"},
		{`[{"events": [{"position": "1"}]}]`, "scenarios[0].events[0].position: want an integer"},
		{`[{"events": [{"discount_minor": 1.5}]}]`, "scenarios[0].events[0].discount_minor: want an integer"},
		{`[{"events": [{"amount_minor": false}]}]`, "scenarios[0].events[0].amount_minor: want an integer"},
		{`[{"events": [{"position": true}]}]`, "scenarios[0].events[0].position: want an integer"},
		{`[{"events": [{}, {"item_id": 7}]}]`, "scenarios[0].events[1].item_id: want a string"},
		{`[{"events": [], "user_id": "u1"}]`, `scenarios[0].user_id: not used with "events"`},
	} {
		_, err := Parse(strings.NewReader(c.in))
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: error %v, want %q", c.in, err, c.want)
		}
	}
}

func TestParseEvents(t *testing.T) {
	list, err := Parse(strings.NewReader(`[
	  {"name": "ev", "deadline_ms": 250, "events": [
	    {"event_id": "e-1", "user_id": "u1", "event_time": "2026-11-01T12:00:00Z", "kind": "impression",
	     "coupon_id": "c1", "request_id": "r-1", "position": 2, "placement": "home"},
	    {"event_id": null, "kind": "claim", "order_total_minor": null}]},
	  {"events": []},
	  {"user_id": "u", "events": null}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	s := list[0]
	if s.Name != "ev" || s.DeadlineMS != 250 || len(s.Events) != 2 {
		t.Fatalf("scenario %+v", s)
	}
	e := s.Events[0]
	if *e.EventID != "e-1" || *e.Kind != "impression" || *e.Position != 2 || *e.Placement != "home" || e.ItemID != nil {
		t.Errorf("event 0 %+v", e)
	}
	if got := s.Events[1]; got.EventID != nil || got.OrderTotalMinor != nil || *got.Kind != "claim" { // null: absent
		t.Errorf("event 1 %+v", got)
	}
	if list[1].Events == nil || len(list[1].Events) != 0 {
		t.Errorf("an empty events list is an events scenario: %+v", list[1])
	}
	if list[2].Events != nil || list[2].UserID != "u" { // "events": null is a RankCoupons scenario
		t.Errorf("events null: %+v", list[2])
	}
}

func events(t *testing.T, text string) Scenario {
	t.Helper()
	list, err := Parse(strings.NewReader(`[{"events": ` + text + `}]`))
	if err != nil {
		t.Fatal(err)
	}
	return list[0]
}

func TestEventsRequest(t *testing.T) {
	s := events(t, `[
	  {"event_id": "e-imp", "user_id": "u1", "event_time": "2026-11-01T12:00:00.5+02:00", "kind": "impression",
	   "coupon_id": "c1", "request_id": "r-1", "position": 2, "placement": "PLACEMENT_CART"},
	  {"event_id": "e-claim", "kind": "claim", "coupon_id": "c1", "impression_event_id": "e-imp"},
	  {"event_id": "e-red", "kind": "redemption", "coupon_id": "c1", "order_id": "o-1",
	   "impression_event_id": "", "discount_minor": 100, "currency_code": "USD"},
	  {"event_id": "", "kind": "behaviour", "behaviour_type": " add_to_cart ", "item_id": "i1", "order_id": "o-1",
	   "amount_minor": 0},
	  {"kind": "behaviour", "behaviour_type": "ORDER", "amount_minor": 5, "currency_code": ""},
	  {"kind": "behaviour", "behaviour_type": "BEHAVIOUR_TYPE_VIEW"},
	  {"kind": "behaviour"},
	  {"kind": "claim"},
	  {"kind": "redemption", "currency_code": "USD"},
	  {"event_id": "e-none", "user_id": "u1"}
	]`)
	req, err := s.EventsRequest("go/")
	if err != nil {
		t.Fatal(err)
	}
	evs := req.GetEvents()
	if len(evs) != 10 {
		t.Fatalf("%d events", len(evs))
	}
	imp := evs[0].GetImpression()
	if evs[0].GetEventId() != "go/e-imp" || evs[0].GetUserId() != "u1" ||
		!evs[0].GetEventTime().AsTime().Equal(time.Date(2026, 11, 1, 10, 0, 0, 5e8, time.UTC)) ||
		imp.GetCouponId() != "c1" || imp.GetRequestId() != "r-1" || imp.GetPosition() != 2 ||
		imp.GetPlacement() != couponrankv1.Placement_PLACEMENT_CART {
		t.Errorf("impression %v", evs[0])
	}
	// The prefix goes on event ids and impression event ids, not on other ids; an empty id stays empty.
	if c := evs[1].GetClaim(); evs[1].GetEventId() != "go/e-claim" || c.GetImpressionEventId() != "go/e-imp" || c.GetCouponId() != "c1" ||
		evs[1].GetEventTime() != nil || evs[1].GetUserId() != "" {
		t.Errorf("claim %v", evs[1])
	}
	red := evs[2].GetRedemption()
	if evs[2].GetEventId() != "go/e-red" || red.GetImpressionEventId() != "" || red.GetOrderId() != "o-1" ||
		red.GetDiscount().GetAmountMinor() != 100 || red.GetDiscount().GetCurrencyCode() != "USD" {
		t.Errorf("redemption %v", evs[2])
	}
	if red.GetOrderTotal() != nil { // money only when its *_minor key is present
		t.Errorf("order_total set without order_total_minor: %v", red.GetOrderTotal())
	}
	b := evs[3].GetBehaviour()
	if evs[3].GetEventId() != "" || b.GetType() != couponrankv1.BehaviourType_BEHAVIOUR_TYPE_ADD_TO_CART || b.GetItemId() != "i1" ||
		b.GetOrderId() != "o-1" || b.GetAmount() == nil || b.GetAmount().GetAmountMinor() != 0 || b.GetAmount().GetCurrencyCode() != "" {
		t.Errorf("behaviour %v", evs[3])
	}
	if b := evs[4].GetBehaviour(); b.GetType() != couponrankv1.BehaviourType_BEHAVIOUR_TYPE_ORDER || b.GetAmount().GetAmountMinor() != 5 {
		t.Errorf("order %v", evs[4])
	}
	if b := evs[5].GetBehaviour(); b.GetType() != couponrankv1.BehaviourType_BEHAVIOUR_TYPE_VIEW || b.GetAmount() != nil {
		t.Errorf("view %v", evs[5])
	}
	if b := evs[6].GetBehaviour(); b == nil || b.GetType() != couponrankv1.BehaviourType_BEHAVIOUR_TYPE_UNSPECIFIED {
		t.Errorf("bare behaviour %v", evs[6])
	}
	if _, ok := evs[7].GetKind().(*couponrankv1.Event_Claim); !ok || evs[7].GetClaim() == nil { // a claim with no field is still a claim
		t.Errorf("bare claim %v", evs[7])
	}
	if r := evs[8].GetRedemption(); r == nil || r.GetDiscount() != nil || r.GetOrderTotal() != nil { // currency alone: no Money
		t.Errorf("redemption with currency only %v", evs[8])
	}
	if evs[9].GetKind() != nil || evs[9].GetEventId() != "go/e-none" { // no kind: no oneof
		t.Errorf("event without kind %v", evs[9])
	}
	// Without a prefix the ids go as written.
	req, err = s.EventsRequest("")
	if err != nil {
		t.Fatal(err)
	}
	if req.GetEvents()[1].GetEventId() != "e-claim" || req.GetEvents()[1].GetClaim().GetImpressionEventId() != "e-imp" {
		t.Errorf("no prefix: %v", req.GetEvents()[1])
	}
}

// An event that cannot become a couponrank.v1.Event: the message (the Python
// runner's) names it.
func TestEventsRequestErrors(t *testing.T) {
	for _, c := range []struct{ events, want string }{
		{`[{"kind": "claim"}, {"kind": "purchase"}]`, "events[1].kind: unknown kind 'purchase' (impression, claim, redemption or behaviour)"},
		{`[{"kind": ""}]`, "events[0].kind: unknown kind '' (impression, claim, redemption or behaviour)"},
		{`[{"kind": "Claim"}]`, "events[0].kind: unknown kind 'Claim' (impression, claim, redemption or behaviour)"},
		{`[{"kind": "claim", "position": 1, "order_id": "o"}]`, "events[0].order_id: not a field of claim events"},
		{`[{"kind": "impression", "discount_minor": 1}]`, "events[0].discount_minor: not a field of impression events"},
		{`[{"kind": "behaviour", "coupon_id": "c1"}]`, "events[0].coupon_id: not a field of behaviour events"},
		{`[{"kind": "redemption", "item_id": "i1"}]`, "events[0].item_id: not a field of redemption events"},
		{`[{"event_id": "e", "coupon_id": "c1"}]`, "events[0].coupon_id: not a field of an event without a kind"},
		{`[{"kind": "behaviour", "behaviour_type": "walk"}]`, "events[0].behaviour_type: unknown behaviour type 'walk'"},
		{`[{"kind": "impression", "placement": "basket"}]`, "events[0].placement: unknown placement 'basket'"},
		{`[{"kind": "behaviour", "behaviour_type": "it's"}]`, `events[0].behaviour_type: unknown behaviour type "it's"`},
		{`[{"kind": "claim", "event_time": "2026-11-01T12:00:00"}]`, "events[0].event_time: '2026-11-01T12:00:00' has no time zone (want RFC 3339)"},
		{`[{"kind": "claim", "event_time": "2026-11-01"}]`, "events[0].event_time: '2026-11-01' has no time zone (want RFC 3339)"},
		{`[{"kind": "claim", "event_time": "July"}]`, "events[0].event_time: Invalid isoformat string: 'July'"},
		{`[{"kind": "impression", "position": 2147483648}]`, "events[0].position: 2147483648 is out of range"},
	} {
		s := events(t, c.events)
		_, err := s.EventsRequest("go/")
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.events, err, c.want)
		}
	}
}

func TestRunEvents(t *testing.T) {
	srv := couponranktest.Start(t)
	c, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := Parse(strings.NewReader(`[
	  {"name": "batch", "deadline_ms": 15000, "events": [
	    {"event_id": "e-imp", "user_id": "u1", "event_time": "2026-11-01T12:00:00Z", "kind": "impression",
	     "coupon_id": "c1", "position": 1, "placement": "cart"},
	    {"event_id": "e-claim", "user_id": "u1", "event_time": "2026-11-01T12:00:00Z", "kind": "claim",
	     "coupon_id": "c1", "impression_event_id": "e-imp"},
	    {"event_id": "", "user_id": "u1", "event_time": "2026-11-01T12:00:00Z", "kind": "claim", "coupon_id": "c1"},
	    {"event_id": "e-no-user", "event_time": "2026-11-01T12:00:00Z", "kind": "claim", "coupon_id": "c1"}]},
	  {"name": "again", "events": [
	    {"event_id": "e-imp", "user_id": "u1", "event_time": "2026-11-01T12:00:00Z", "kind": "impression",
	     "coupon_id": "c1", "position": 1, "placement": "cart"}]},
	  {"name": "empty", "events": []},
	  {"name": "refused", "events": [{"event_id": "e-ok", "kind": "claim"}, {"event_id": "e-p", "kind": "purchase"}]},
	  {"name": "stray", "events": [{"event_id": "e-s", "kind": "claim", "amount_minor": 5}]}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	failed, err := RunAll(context.Background(), c, list, &buf, "go/")
	if err != nil {
		t.Fatal(err)
	}
	if failed != 3 {
		t.Errorf("failed = %d, want 3", failed)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	want := []string{
		`{"index":0,"name":"batch","ok":true,"results":[` +
			`{"event_id":"e-imp","status":"EVENT_STATUS_ACCEPTED","detail":""},` +
			`{"event_id":"e-claim","status":"EVENT_STATUS_ACCEPTED","detail":""},` +
			`{"event_id":"","status":"EVENT_STATUS_REJECTED","detail":"event_id: required"},` +
			`{"event_id":"e-no-user","status":"EVENT_STATUS_REJECTED","detail":"user_id: required"}]}`,
		`{"index":1,"name":"again","ok":true,"results":[{"event_id":"e-imp","status":"EVENT_STATUS_DUPLICATE","detail":""}]}`,
		`{"index":2,"name":"empty","ok":false,"error_code":"INVALID_ARGUMENT","error_message":"events: at least one event is required"}`,
		`{"index":3,"name":"refused","ok":false,"error_code":"CLIENT_ERROR","error_message":"events[1].kind: unknown kind 'purchase' (impression, claim, redemption or behaviour)"}`,
		`{"index":4,"name":"stray","ok":false,"error_code":"CLIENT_ERROR","error_message":"events[0].amount_minor: not a field of claim events"}`,
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, lines[i], want[i])
		}
	}
	// The server got the prefixed ids (an empty one stays empty); the client
	// errors sent nothing; deadline_ms became the call's deadline.
	calls := srv.EventCalls()
	if len(calls) != 3 {
		t.Fatalf("%d RecordEvents calls, want 3 (none for the client errors)", len(calls))
	}
	sent := calls[0].Request.GetEvents()
	if sent[0].GetEventId() != "go/e-imp" || sent[1].GetEventId() != "go/e-claim" ||
		sent[1].GetClaim().GetImpressionEventId() != "go/e-imp" || sent[2].GetEventId() != "" {
		t.Errorf("sent %v", sent)
	}
	// (15 s, not the client's 500 ms default)
	if left := time.Until(calls[0].Deadline); left > 15*time.Second || left < 10*time.Second {
		t.Errorf("scenario deadline not propagated: %v left", left)
	}
	if rec := srv.RecordedEvents(); len(rec) != 2 || rec[0].GetEventId() != "go/e-imp" {
		t.Errorf("recorded %v", rec)
	}
	// Without a prefix the same ids are new to the server.
	res := Run(context.Background(), c, 0, list[1], "")
	if len(res.Results) != 1 || res.Results[0] != (EventLine{EventID: "e-imp", Status: "EVENT_STATUS_ACCEPTED"}) {
		t.Errorf("no prefix: %+v", res)
	}
}

func TestEventLines(t *testing.T) {
	got := eventLines([]couponrank.EventResult{
		{EventID: "go/e-1", Status: couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED},
		{EventID: "other/go/e-2", Status: couponrankv1.EventStatus_EVENT_STATUS_REJECTED, Detail: "kind: required"},
		{EventID: "go/", Status: 99}, // a status newer than this client: its number
	}, "go/")
	want := []EventLine{{"e-1", "EVENT_STATUS_ACCEPTED", ""}, {"other/go/e-2", "EVENT_STATUS_REJECTED", "kind: required"}, {"", "99", ""}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	b, err := json.Marshal(Result{Index: 3, Name: "n", OK: true, Results: eventLines(nil, "")})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"index":3,"name":"n","ok":true,"results":[]}` {
		t.Errorf("empty results: %s", b)
	}
}

func TestPyRepr(t *testing.T) {
	for in, want := range map[string]string{
		"view": "'view'", "": "''", "it's": `"it's"`, `say "hi"`: `'say "hi"'`, `it's "x"`: `'it\'s "x"'`,
		"a\\b": `'a\\b'`, "tab\there\n": `'tab\there\n'`, "\x00\x7f": `'\x00\x7f'`, "café": "'café'", "\u00a0": `'\xa0'`,
	} {
		if got := pyRepr(in); got != want {
			t.Errorf("pyRepr(%q) = %s, want %s", in, got, want)
		}
	}
}
