package couponranktest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// A checkout test: the fake answers a canned ranking, and records what the
// code under test sent. In a test function, couponranktest.Start(t) does the
// same as NewServer and closes the server when the test ends.
func ExampleNewServer() {
	srv, err := couponranktest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.SetResponses(&couponrankv1.RankCouponsResponse{
		RankedCoupons: []*couponrankv1.RankedCoupon{
			{CouponId: "c7", Rank: 1, Score: 0.9},
			{CouponId: "c2", Rank: 2, Score: 0.4},
		},
		ModelVersion: "m1",
	})

	client, err := srv.Client(couponrank.WithTimeout(5 * time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// The code under test would make this call.
	res, err := client.RankCoupons(context.Background(), &couponrankv1.RankCouponsRequest{
		RequestId: "r-1",
		UserId:    "u-1",
		Context: &couponrankv1.RequestContext{
			Placement: couponrankv1.Placement_PLACEMENT_CHECKOUT,
			CartTotal: couponrank.Money("USD", 4599),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.CouponIDs(), res.RequestID, res.ModelVersion)

	req := srv.Requests()[0]
	fmt.Println(req.GetUserId(), req.GetContext().GetPlacement(), req.GetContext().GetCartTotal().GetAmountMinor())
	// Output:
	// [c7 c2] r-1 m1
	// u-1 PLACEMENT_CHECKOUT 4599
}

// Failures: the client retries UNAVAILABLE (here twice, then the server
// answers); any other code is final.
func ExampleServer_FailNext() {
	srv, err := couponranktest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := srv.Client(couponrank.WithTimeout(5 * time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	req := &couponrankv1.RankCouponsRequest{UserId: "u-1"}

	srv.FailNext(2, status.Error(codes.Unavailable, "restarting"))
	res, err := client.RankCoupons(context.Background(), req)
	fmt.Println(err, res.Attempts, len(srv.Calls()))

	srv.FailNext(1, status.Error(codes.InvalidArgument, "user_id: must not be empty"))
	_, err = client.RankCoupons(context.Background(), req)
	fmt.Println(couponrank.CodeName(status.Code(err)), len(srv.Calls()))
	// Output:
	// <nil> 3 3
	// INVALID_ARGUMENT 4
}

// A server that does not answer in time: RankOrEmpty gives the checkout an
// empty ranking once the client's timeout has passed, and the error to log.
func ExampleHang() {
	srv, err := couponranktest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.SetHandler(couponranktest.Hang)
	client, err := srv.Client(couponrank.WithTimeout(50 * time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	res, err := client.RankOrEmpty(context.Background(), &couponrankv1.RankCouponsRequest{RequestId: "r-2", UserId: "u-1"})
	fmt.Println(len(res.Coupons), res.RequestID, couponrank.CodeName(status.Code(err)))
	// Output:
	// 0 r-2 DEADLINE_EXCEEDED
}

// Events: the fake records them in memory, answers a new event_id ACCEPTED
// and one it has seen DUPLICATE, and rejects what CheckEvent finds wrong. A
// checkout test can then look at what was recorded.
func ExampleServer_RecordedEvents() {
	srv, err := couponranktest.NewServer()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	client, err := srv.Client(couponrank.WithTimeout(5 * time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

	// The code under test would make these calls.
	events := []*couponrankv1.Event{
		couponrank.Impression("imp-1", "u-1", at, &couponrankv1.ImpressionEvent{
			RequestId: "r-1", CouponId: "c7", Position: 1, Placement: couponrankv1.Placement_PLACEMENT_CHECKOUT,
		}),
		couponrank.Redemption("red-1", "u-1", at.Add(time.Minute), &couponrankv1.RedemptionEvent{
			CouponId: "c7", OrderId: "o-1", Discount: couponrank.Money("USD", 500),
		}),
		couponrank.Claim("clm-1", "u-1", at, &couponrankv1.ClaimEvent{}), // no coupon_id
	}
	results, err := client.RecordEvents(context.Background(), events)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		fmt.Println(r)
	}
	results, _ = client.RecordEvents(context.Background(), events[:1]) // a retry
	fmt.Println(results[0].Status)

	for _, ev := range srv.RecordedEvents() {
		fmt.Println(ev.GetEventId(), ev.GetRedemption().GetDiscount().GetAmountMinor())
	}
	// Output:
	// imp-1 EVENT_STATUS_ACCEPTED
	// red-1 EVENT_STATUS_ACCEPTED
	// clm-1 EVENT_STATUS_REJECTED: claim.coupon_id: required
	// EVENT_STATUS_DUPLICATE
	// imp-1 0
	// red-1 500
}
