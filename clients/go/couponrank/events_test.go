package couponrank_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func eventBatch() []*couponrankv1.Event {
	return []*couponrankv1.Event{
		couponrank.Impression("imp-1", "u-1", t0, &couponrankv1.ImpressionEvent{
			RequestId: "r-1", CouponId: "c1", Position: 1, Placement: couponrankv1.Placement_PLACEMENT_CHECKOUT,
		}),
		couponrank.Claim("clm-1", "u-1", t0.Add(5*time.Second), &couponrankv1.ClaimEvent{CouponId: "c1", ImpressionEventId: "imp-1"}),
		{EventId: "bad-1", UserId: "u-1", EventTime: couponrank.RequestTime(t0)}, // no kind: rejected
		couponrank.Redemption("red-1", "u-1", t0.Add(3*time.Minute), &couponrankv1.RedemptionEvent{
			CouponId: "c1", OrderId: "o-1", Discount: couponrank.Money("USD", 500), OrderTotal: couponrank.Money("USD", 4599),
		}),
		couponrank.Behaviour("beh-1", "u-1", t0.Add(3*time.Minute), &couponrankv1.BehaviourEvent{
			Type: couponrankv1.BehaviourType_BEHAVIOUR_TYPE_ORDER, ItemId: "item-9", OrderId: "o-1", Amount: couponrank.Money("USD", 4599),
		}),
	}
}

func statuses(results []couponrank.EventResult) []string {
	out := make([]string, len(results))
	for i, r := range results {
		out[i] = r.EventID + " " + strings.TrimPrefix(r.Status.String(), "EVENT_STATUS_")
	}
	return out
}

func sameStrings(a, b []string) bool {
	return strings.Join(a, "|") == strings.Join(b, "|")
}

func TestRecordEventsResultsInOrder(t *testing.T) {
	srv := couponranktest.Start(t)
	c := dialFake(t, srv, couponrank.WithTimeout(10*time.Second))

	results, err := c.RecordEvents(context.Background(), eventBatch())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"imp-1 ACCEPTED", "clm-1 ACCEPTED", "bad-1 REJECTED", "red-1 ACCEPTED", "beh-1 ACCEPTED"}
	if got := statuses(results); !sameStrings(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
	if d := results[2].Detail; !strings.HasPrefix(d, "kind:") {
		t.Errorf("rejection detail %q, want it to name kind", d)
	}
	if results[0].Detail != "" {
		t.Errorf("accepted event with detail %q", results[0].Detail)
	}

	// Sent again, as after a lost answer: nothing is recorded twice.
	again, err := c.RecordEvents(context.Background(), append(eventBatch()[:2], couponrank.Claim("clm-2", "u-1", t0, &couponrankv1.ClaimEvent{CouponId: "c2"})))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := statuses(again), []string{"imp-1 DUPLICATE", "clm-1 DUPLICATE", "clm-2 ACCEPTED"}; !sameStrings(got, want) {
		t.Errorf("results %v, want %v", got, want)
	}
	if n := len(srv.RecordedEvents()); n != 5 {
		t.Errorf("%d events recorded, want 5", n)
	}
}

func TestEventHelpersFillTheEvent(t *testing.T) {
	evs := eventBatch()
	imp := evs[0]
	if imp.GetEventId() != "imp-1" || imp.GetUserId() != "u-1" || !imp.GetEventTime().AsTime().Equal(t0) {
		t.Errorf("impression header %v", imp)
	}
	if got := imp.GetImpression(); got.GetCouponId() != "c1" || got.GetPosition() != 1 || got.GetRequestId() != "r-1" ||
		got.GetPlacement() != couponrankv1.Placement_PLACEMENT_CHECKOUT {
		t.Errorf("impression %v", got)
	}
	if got := evs[1].GetClaim(); got.GetCouponId() != "c1" || got.GetImpressionEventId() != "imp-1" {
		t.Errorf("claim %v", got)
	}
	if got := evs[3].GetRedemption(); got.GetDiscount().GetAmountMinor() != 500 || got.GetOrderTotal().GetAmountMinor() != 4599 {
		t.Errorf("redemption %v", got)
	}
	if got := evs[4].GetBehaviour(); got.GetType() != couponrankv1.BehaviourType_BEHAVIOUR_TYPE_ORDER || got.GetOrderId() != "o-1" {
		t.Errorf("behaviour %v", got)
	}
	// The zero time leaves event_time unset; a nil kind message is an empty one,
	// so the event still says what it is (and the server names the missing fields).
	ev := couponrank.Claim("e", "u", time.Time{}, nil)
	if ev.GetEventTime() != nil || ev.GetClaim() == nil {
		t.Errorf("Claim with zero time and nil message: %v", ev)
	}
	if _, err := proto.Marshal(couponrank.Behaviour("e", "u", t0, nil)); err != nil {
		t.Errorf("marshal: %v", err)
	}
}

func TestRecordEventsRetriesUnavailableWithTheSameBatch(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNextEvents(2, status.Error(codes.Unavailable, "restarting"))
	c := dialFake(t, srv, couponrank.WithTimeout(10*time.Second), couponrank.WithBearerToken("tok-1"))

	results, err := c.RecordEvents(context.Background(), eventBatch())
	if err != nil {
		t.Fatal(err)
	}
	calls := srv.EventCalls()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	for i, call := range calls {
		if !proto.Equal(call.Request, calls[0].Request) {
			t.Errorf("attempt %d sent another batch", i+1)
		}
		if got := call.Metadata.Get("authorization"); len(got) != 1 || got[0] != "Bearer tok-1" {
			t.Errorf("attempt %d: authorization %q", i+1, got)
		}
		if call.Deadline.IsZero() || time.Until(call.Deadline) > 10*time.Second {
			t.Errorf("attempt %d: deadline %v, want the client's timeout", i+1, call.Deadline)
		}
	}
	if got := statuses(results); got[0] != "imp-1 ACCEPTED" || len(got) != 5 {
		t.Errorf("results %v", got)
	}
}

func TestRecordEventsAttemptsRunOutThenSendAgain(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNextEvents(3, status.Error(codes.Unavailable, "restarting"))
	c := dialFake(t, srv, couponrank.WithTimeout(10*time.Second), couponrank.WithMaxAttempts(3))
	evs := eventBatch()[:1]

	if _, err := c.RecordEvents(context.Background(), evs); status.Code(err) != codes.Unavailable {
		t.Fatalf("err %v, want UNAVAILABLE after 3 attempts", err)
	}
	for _, want := range []string{"imp-1 ACCEPTED", "imp-1 DUPLICATE"} {
		res, err := c.RecordEvents(context.Background(), evs)
		if err != nil {
			t.Fatal(err)
		}
		if got := statuses(res); len(got) != 1 || got[0] != want {
			t.Errorf("results %v, want %s", got, want)
		}
	}
}

func TestRecordEventsOtherErrorsAreFinal(t *testing.T) {
	for _, code := range []codes.Code{codes.PermissionDenied, codes.InvalidArgument, codes.Unauthenticated, codes.ResourceExhausted} {
		t.Run(couponrank.CodeName(code), func(t *testing.T) {
			srv := couponranktest.Start(t)
			srv.FailNextEvents(1, status.Error(code, "no"))
			c := dialFake(t, srv, couponrank.WithTimeout(10*time.Second))
			res, err := c.RecordEvents(context.Background(), eventBatch())
			if status.Code(err) != code || res != nil {
				t.Errorf("got %v, %v; want %v", res, err, code)
			}
			if n := len(srv.EventCalls()); n != 1 {
				t.Errorf("%d calls, want 1 (not retried)", n)
			}
			if n := len(srv.RecordedEvents()); n != 0 {
				t.Errorf("%d events recorded by a failed call", n)
			}
		})
	}
}

func TestRecordEventsBatchSizeIsTheServers(t *testing.T) {
	srv := couponranktest.Start(t)
	c := dialFake(t, srv, couponrank.WithTimeout(10*time.Second))
	many := make([]*couponrankv1.Event, couponrank.MaxEventsPerCall+1)
	for i := range many {
		many[i] = couponrank.Claim(fmt.Sprintf("e-%d", i), "u-1", t0, &couponrankv1.ClaimEvent{CouponId: "c1"})
	}
	for _, evs := range [][]*couponrankv1.Event{nil, many} {
		if _, err := c.RecordEvents(context.Background(), evs); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%d events: err %v, want INVALID_ARGUMENT", len(evs), err)
		}
	}
	res, err := c.RecordEvents(context.Background(), many[:couponrank.MaxEventsPerCall])
	if err != nil || len(res) != couponrank.MaxEventsPerCall {
		t.Errorf("%d events: %d results, %v", couponrank.MaxEventsPerCall, len(res), err)
	}
}

// shortAnswer is a server whose RecordEvents answers one result too few.
type shortAnswer struct {
	couponrankv1.UnimplementedCouponRankingServiceServer
}

func (shortAnswer) RecordEvents(_ context.Context, req *couponrankv1.RecordEventsRequest) (*couponrankv1.RecordEventsResponse, error) {
	resp := &couponrankv1.RecordEventsResponse{}
	for _, ev := range req.GetEvents()[1:] {
		resp.Results = append(resp.Results, &couponrankv1.EventResult{EventId: ev.GetEventId(), Status: couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED})
	}
	return resp, nil
}

func TestRecordEventsWantsOneResultPerEvent(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	couponrankv1.RegisterCouponRankingServiceServer(gs, shortAnswer{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	c, err := couponrank.Dial(lis.Addr().String(), couponrank.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.RecordEvents(context.Background(), eventBatch())
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "4 results for 5 events") {
		t.Errorf("err %v, want INTERNAL naming the counts", err)
	}
}

func TestEventResultString(t *testing.T) {
	ok := couponrank.EventResult{EventID: "e1", Status: couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED}
	bad := couponrank.EventResult{EventID: "e2", Status: couponrankv1.EventStatus_EVENT_STATUS_REJECTED, Detail: "kind: required"}
	if ok.String() != "e1 EVENT_STATUS_ACCEPTED" || bad.String() != "e2 EVENT_STATUS_REJECTED: kind: required" {
		t.Errorf("%q, %q", ok, bad)
	}
}
