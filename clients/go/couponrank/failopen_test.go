package couponrank_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// checkEmpty fails unless res is RankOrEmpty's empty ranking for requestID.
func checkEmpty(t *testing.T, res *couponrank.RankResult, requestID string, attempts int) {
	t.Helper()
	if res == nil {
		t.Fatal("RankOrEmpty returned a nil result")
	}
	if res.Coupons == nil || len(res.Coupons) != 0 || res.Ineligible == nil || len(res.Ineligible) != 0 || len(res.CouponIDs()) != 0 {
		t.Errorf("coupons %v, ineligible %v; want empty, non-nil lists", res.Coupons, res.Ineligible)
	}
	if res.RequestID != requestID || res.Response == nil || res.Response.GetRequestId() != requestID || len(res.Response.GetRankedCoupons()) != 0 {
		t.Errorf("request id %q, response %v; want %q", res.RequestID, res.Response, requestID)
	}
	if res.Attempts != attempts {
		t.Errorf("attempts %d, want %d", res.Attempts, attempts)
	}
	if res.ModelVersion != "" || res.Degraded || res.ColdStart {
		t.Errorf("empty ranking carries data: %+v", res)
	}
}

func TestRankOrEmptySuccessIsRankCoupons(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.SetResponses(&couponrankv1.RankCouponsResponse{
		RankedCoupons: []*couponrankv1.RankedCoupon{{CouponId: "c1", Rank: 1, Score: 0.5}},
		ModelVersion:  "m1",
	})
	res, err := dialFake(t, srv).RankOrEmpty(context.Background(), rankReq())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Coupons) != 1 || res.Coupons[0].CouponID != "c1" || res.RequestID != "r-1" || res.ModelVersion != "m1" || res.Attempts != 1 {
		t.Errorf("result %+v", res)
	}
}

func TestRankOrEmptyAfterRetriesOfUnavailable(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNext(10, status.Error(codes.Unavailable, "restarting"))
	res, err := dialFake(t, srv, couponrank.WithMaxAttempts(3)).RankOrEmpty(context.Background(), rankReq())
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
	checkEmpty(t, res, "r-1", 3)
	if n := len(srv.Calls()); n != 3 {
		t.Errorf("server calls %d, want 3", n)
	}
}

func TestRankOrEmptyFinalCodes(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.Internal, codes.DeadlineExceeded} {
		t.Run(couponrank.CodeName(code), func(t *testing.T) {
			srv := couponranktest.Start(t)
			srv.FailNext(1, status.Error(code, "user_id: must not be empty"))
			res, err := dialFake(t, srv).RankOrEmpty(context.Background(), rankReq())
			if status.Code(err) != code {
				t.Fatalf("got %v, want %v", err, code)
			}
			checkEmpty(t, res, "r-1", 1)
		})
	}
}

func TestRankOrEmptyServerGone(t *testing.T) {
	srv := couponranktest.Start(t)
	c := dialFake(t, srv, couponrank.WithMaxAttempts(2))
	if _, err := c.RankOrEmpty(context.Background(), rankReq()); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	res, err := c.RankOrEmpty(context.Background(), &couponrankv1.RankCouponsRequest{UserId: "u-1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
	checkEmpty(t, res, "", 2) // no request id given, none assigned
}

func TestRankOrEmptySlowServer(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.SetHandler(couponranktest.Hang)
	res, err := dialFake(t, srv, couponrank.WithTimeout(20*time.Millisecond)).RankOrEmpty(context.Background(), rankReq())
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
	checkEmpty(t, res, "r-1", 1)
}

func TestRankOrEmptyNilRequest(t *testing.T) {
	srv := couponranktest.Start(t)
	res, err := dialFake(t, srv).RankOrEmpty(context.Background(), nil)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want INVALID_ARGUMENT", err)
	}
	checkEmpty(t, res, "", 0)
	if n := len(srv.Calls()); n != 0 {
		t.Errorf("server calls %d, want 0", n)
	}
}
