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
	res := Run(context.Background(), c, 0, Scenario{UserID: "u", MembershipTier: &tier})
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
	failed, err := RunAll(context.Background(), c, list, &buf)
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
	b, err := json.Marshal(Run(context.Background(), c, 0, Scenario{UserID: "u"}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"index":0,"name":"","ok":true,"ranked":[],"ineligible":[],"model_version":"","cold_start":false,"degraded":false,"degraded_reason":"DEGRADED_REASON_UNSPECIFIED","note":"the catalogue holds no coupon"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
