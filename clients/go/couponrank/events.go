package couponrank

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// MaxEventsPerCall is the most events one RecordEvents call takes: the server
// fails a larger batch (or an empty one) with INVALID_ARGUMENT. Split longer
// lists into batches of at most this many.
const MaxEventsPerCall = 1000

// EventResult is what became of one event sent with RecordEvents.
type EventResult struct {
	// EventID is the event's event_id.
	EventID string
	// Status is EVENT_STATUS_ACCEPTED (recorded now), EVENT_STATUS_DUPLICATE
	// (an event with this id was recorded before; nothing is counted twice)
	// or EVENT_STATUS_REJECTED (not recorded; Detail says why). A status newer
	// than your copy of the client arrives as its number.
	Status couponrankv1.EventStatus
	// Detail says why the event was rejected, in words starting with the
	// field's name; empty otherwise. Not meant to be parsed.
	Detail string
}

// RecordEvents records a batch of events (impressions, claims, redemptions,
// shopping behaviour; build them with Impression, Claim, Redemption and
// Behaviour) and returns one result per event, in the order of events. Each
// event is answered on its own: one rejected event does not fail the call.
//
// Deadline and retries are RankCoupons': ctx's deadline or the client's
// timeout covers all attempts, and codes.Unavailable is retried with the same
// batch. That is safe because the call is idempotent by event_id: an event
// already recorded comes back EVENT_STATUS_DUPLICATE. For the same reason a
// caller may send a batch again as is after any Unavailable or
// DeadlineExceeded error. Other errors are returned at once: InvalidArgument
// for an empty batch or one of more than MaxEventsPerCall events (checked by
// the server, not here), PermissionDenied when the server names its callers
// and this one may not record events, and Internal when the answer does not
// hold one result per event.
func (c *Client) RecordEvents(ctx context.Context, events []*couponrankv1.Event, callOpts ...grpc.CallOption) ([]EventResult, error) {
	req := &couponrankv1.RecordEventsRequest{Events: events}
	var resp *couponrankv1.RecordEventsResponse
	_, err := c.invoke(ctx, func(ctx context.Context) error {
		var err error
		resp, err = c.stub.RecordEvents(ctx, req, callOpts...)
		return err
	})
	if err != nil {
		return nil, err
	}
	if got := len(resp.GetResults()); got != len(events) {
		return nil, status.Errorf(codes.Internal, "couponrank: the server answered %d results for %d events", got, len(events))
	}
	results := make([]EventResult, len(events))
	for i, r := range resp.GetResults() {
		results[i] = EventResult{EventID: r.GetEventId(), Status: r.GetStatus(), Detail: r.GetDetail()}
	}
	return results, nil
}

// String returns "EVENT_ID STATUS" and, for a rejected event, ": DETAIL".
func (r EventResult) String() string {
	if r.Detail == "" {
		return fmt.Sprintf("%s %s", r.EventID, r.Status)
	}
	return fmt.Sprintf("%s %s: %s", r.EventID, r.Status, r.Detail)
}

// Impression returns an event: a coupon was shown to the user. eventID is
// the caller's id of the event, its idempotency key; userID the user, as in
// RankCouponsRequest.user_id; at when it happened (the zero time leaves
// event_time unset, which the server rejects). imp says which coupon, in
// which slot and placement, of which ranking (RequestId: the RankCoupons
// call's request_id):
//
//	couponrank.Impression("imp-1", "u-123", time.Now(), &couponrankv1.ImpressionEvent{
//		RequestId: res.RequestID, CouponId: "c1", Position: 1,
//		Placement: couponrankv1.Placement_PLACEMENT_CHECKOUT,
//	})
func Impression(eventID, userID string, at time.Time, imp *couponrankv1.ImpressionEvent) *couponrankv1.Event {
	if imp == nil {
		imp = &couponrankv1.ImpressionEvent{}
	}
	ev := newEvent(eventID, userID, at)
	ev.Kind = &couponrankv1.Event_Impression{Impression: imp}
	return ev
}

// Claim returns an event: the user claimed (saved) a coupon. See Impression
// for eventID, userID and at.
func Claim(eventID, userID string, at time.Time, claim *couponrankv1.ClaimEvent) *couponrankv1.Event {
	if claim == nil {
		claim = &couponrankv1.ClaimEvent{}
	}
	ev := newEvent(eventID, userID, at)
	ev.Kind = &couponrankv1.Event_Claim{Claim: claim}
	return ev
}

// Redemption returns an event: the user redeemed a coupon on an order, for
// a discount (Money; unset: zero) counted against the coupon's budget. See
// Impression for eventID, userID and at.
func Redemption(eventID, userID string, at time.Time, redemption *couponrankv1.RedemptionEvent) *couponrankv1.Event {
	if redemption == nil {
		redemption = &couponrankv1.RedemptionEvent{}
	}
	ev := newEvent(eventID, userID, at)
	ev.Kind = &couponrankv1.Event_Redemption{Redemption: redemption}
	return ev
}

// Behaviour returns an event: a step of the user's shopping (a view,
// add-to-cart, favourite, or an order line with its OrderId and Amount). See
// Impression for eventID, userID and at.
func Behaviour(eventID, userID string, at time.Time, behaviour *couponrankv1.BehaviourEvent) *couponrankv1.Event {
	if behaviour == nil {
		behaviour = &couponrankv1.BehaviourEvent{}
	}
	ev := newEvent(eventID, userID, at)
	ev.Kind = &couponrankv1.Event_Behaviour{Behaviour: behaviour}
	return ev
}

func newEvent(eventID, userID string, at time.Time) *couponrankv1.Event {
	return &couponrankv1.Event{EventId: eventID, UserId: userID, EventTime: RequestTime(at)}
}
