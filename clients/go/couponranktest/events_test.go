package couponranktest_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

var when = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func claim(id string) *couponrankv1.Event {
	return couponrank.Claim(id, "u-1", when, &couponrankv1.ClaimEvent{CouponId: "c1"})
}

func TestCheckEvent(t *testing.T) {
	long := strings.Repeat("x", 129)
	imp := func(e *couponrankv1.ImpressionEvent) *couponrankv1.Event {
		return couponrank.Impression("e", "u", when, e)
	}
	red := func(e *couponrankv1.RedemptionEvent) *couponrankv1.Event {
		return couponrank.Redemption("e", "u", when, e)
	}
	beh := func(e *couponrankv1.BehaviourEvent) *couponrankv1.Event {
		return couponrank.Behaviour("e", "u", when, e)
	}
	goodImp := &couponrankv1.ImpressionEvent{CouponId: "c1", Position: 1, Placement: couponrankv1.Placement_PLACEMENT_CART}
	view := couponrankv1.BehaviourType_BEHAVIOUR_TYPE_VIEW
	order := couponrankv1.BehaviourType_BEHAVIOUR_TYPE_ORDER
	for _, tc := range []struct {
		ev   *couponrankv1.Event
		want string // "" accepted, else the detail's start
	}{
		{imp(goodImp), ""},
		{claim("e"), ""},
		{red(&couponrankv1.RedemptionEvent{CouponId: "c1", Discount: couponrank.Money("USD", 0)}), ""},
		{beh(&couponrankv1.BehaviourEvent{Type: view, ItemId: "i1"}), ""},
		{beh(&couponrankv1.BehaviourEvent{Type: order, ItemId: "i1", OrderId: "o1", Amount: couponrank.Money("USD", 100)}), ""},
		{couponrank.Claim("", "u", when, &couponrankv1.ClaimEvent{CouponId: "c1"}), "event_id: required"},
		{couponrank.Claim(long, "u", when, &couponrankv1.ClaimEvent{CouponId: "c1"}), "event_id: 129 bytes"},
		{couponrank.Claim("e", "", when, &couponrankv1.ClaimEvent{CouponId: "c1"}), "user_id: required"},
		{couponrank.Claim("e", "u", time.Time{}, &couponrankv1.ClaimEvent{CouponId: "c1"}), "event_time: required"},
		{&couponrankv1.Event{EventId: "e", UserId: "u", EventTime: &timestamppb.Timestamp{Nanos: -1}, Kind: &couponrankv1.Event_Claim{Claim: &couponrankv1.ClaimEvent{CouponId: "c1"}}}, "event_time: "},
		{&couponrankv1.Event{EventId: "e", UserId: "u", EventTime: timestamppb.New(when)}, "kind: "},
		{imp(&couponrankv1.ImpressionEvent{Position: 1, Placement: couponrankv1.Placement_PLACEMENT_CART}), "impression.coupon_id: required"},
		{imp(&couponrankv1.ImpressionEvent{CouponId: "c1", Placement: couponrankv1.Placement_PLACEMENT_CART}), "impression.position: must be at least 1"},
		{imp(&couponrankv1.ImpressionEvent{CouponId: "c1", Position: 1}), "impression.placement: required"},
		{imp(&couponrankv1.ImpressionEvent{RequestId: long, CouponId: "c1", Position: 1, Placement: couponrankv1.Placement_PLACEMENT_CART}), "impression.request_id: 129 bytes"},
		{couponrank.Claim("e", "u", when, nil), "claim.coupon_id: required"},
		{red(nil), "redemption.coupon_id: required"},
		{red(&couponrankv1.RedemptionEvent{CouponId: "c1", Discount: couponrank.Money("USD", -1)}), "redemption.discount: must not be negative"},
		{red(&couponrankv1.RedemptionEvent{CouponId: "c1", OrderTotal: couponrank.Money("USD", -1)}), "redemption.order_total: must not be negative"},
		{beh(&couponrankv1.BehaviourEvent{ItemId: "i1"}), "behaviour.type: required"},
		{beh(&couponrankv1.BehaviourEvent{Type: view}), "behaviour.item_id: required"},
		{beh(&couponrankv1.BehaviourEvent{Type: order, ItemId: "i1"}), "behaviour.order_id: required"},
		{beh(&couponrankv1.BehaviourEvent{Type: order, ItemId: "i1", OrderId: "o1", Amount: couponrank.Money("USD", -5)}), "behaviour.amount: must not be negative"},
	} {
		got := couponranktest.CheckEvent(tc.ev)
		if (tc.want == "") != (got == "") || !strings.HasPrefix(got, tc.want) {
			t.Errorf("CheckEvent(%v) = %q, want %q", tc.ev, got, tc.want)
		}
	}
}

func TestRecordEventsDuplicatesByID(t *testing.T) {
	srv := couponranktest.Start(t)
	c := client(t, srv)
	ctx := context.Background()
	// The same id twice in one batch: the second is the duplicate.
	res, err := c.RecordEvents(ctx, []*couponrankv1.Event{claim("e1"), claim("e1"), claim("e2")})
	if err != nil {
		t.Fatal(err)
	}
	want := []couponrankv1.EventStatus{couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED, couponrankv1.EventStatus_EVENT_STATUS_DUPLICATE, couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("result %d: %v, want %v", i, r, want[i])
		}
	}
	got := srv.RecordedEvents()
	if len(got) != 2 || got[0].GetEventId() != "e1" || got[1].GetEventId() != "e2" {
		t.Errorf("recorded %v", got)
	}
	got[0].EventId = "changed" // a copy
	if srv.RecordedEvents()[0].GetEventId() != "e1" {
		t.Error("RecordedEvents returned the server's own events")
	}
	if n := len(srv.Calls()); n != 0 {
		t.Errorf("RecordEvents counted among the RankCoupons calls: %d", n)
	}
}

func TestRejectedEventsAreNotRecorded(t *testing.T) {
	srv := couponranktest.Start(t)
	c := client(t, srv)
	bad := couponrank.Claim("e1", "u-1", when, nil) // no coupon_id
	for range 2 {                                   // the same answer again
		res, err := c.RecordEvents(context.Background(), []*couponrankv1.Event{bad})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Status != couponrankv1.EventStatus_EVENT_STATUS_REJECTED || res[0].Detail != "claim.coupon_id: required" {
			t.Errorf("result %v", res[0])
		}
	}
	if n := len(srv.RecordedEvents()); n != 0 {
		t.Errorf("%d rejected events recorded", n)
	}
}

func TestSetEventCheck(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.SetEventCheck(func(ev *couponrankv1.Event) string {
		if d := couponranktest.CheckEvent(ev); d != "" {
			return d
		}
		if ev.GetClaim().GetCouponId() == "c-gone" {
			return "claim.coupon_id: c-gone is not in the catalogue"
		}
		return ""
	})
	c := client(t, srv)
	gone := couponrank.Claim("e2", "u-1", when, &couponrankv1.ClaimEvent{CouponId: "c-gone"})
	res, err := c.RecordEvents(context.Background(), []*couponrankv1.Event{claim("e1"), gone, couponrank.Claim("e3", "u-1", when, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED ||
		res[1].Detail != "claim.coupon_id: c-gone is not in the catalogue" || res[2].Detail != "claim.coupon_id: required" {
		t.Errorf("results %v", res)
	}
	srv.SetEventCheck(nil) // CheckEvent again
	if res, _ := c.RecordEvents(context.Background(), []*couponrankv1.Event{gone}); res[0].Status != couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED {
		t.Errorf("after SetEventCheck(nil): %v", res)
	}
}

func TestFailNextEventsIsItsOwnQueue(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNextEvents(1, status.Error(codes.PermissionDenied, "caller may not record events"))
	c := client(t, srv)
	if _, err := rank(t, c, "r-1"); err != nil {
		t.Errorf("RankCoupons failed by FailNextEvents: %v", err)
	}
	_, err := c.RecordEvents(context.Background(), []*couponrankv1.Event{claim("e1")})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("err %v, want PERMISSION_DENIED", err)
	}
	srv.FailNext(1, status.Error(codes.Internal, "boom"))
	if _, err := c.RecordEvents(context.Background(), []*couponrankv1.Event{claim("e1")}); err != nil {
		t.Errorf("RecordEvents failed by FailNext: %v", err)
	}
	if n := len(srv.EventCalls()); n != 2 {
		t.Errorf("%d event calls, want 2", n)
	}
}

func TestConcurrentBatchesRecordEachEventOnce(t *testing.T) {
	srv := couponranktest.Start(t)
	c := client(t, srv)
	var wg sync.WaitGroup
	accepted := make(chan string, 100)
	for range 10 {
		wg.Go(func() {
			res, err := c.RecordEvents(context.Background(), []*couponrankv1.Event{claim("a"), claim("b"), claim("c")})
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range res {
				if r.Status == couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED {
					accepted <- r.EventID
				}
			}
		})
	}
	wg.Wait()
	close(accepted)
	var n int
	for range accepted {
		n++
	}
	if n != 3 || len(srv.RecordedEvents()) != 3 {
		t.Errorf("%d accepted, %d recorded; want 3", n, len(srv.RecordedEvents()))
	}
}
