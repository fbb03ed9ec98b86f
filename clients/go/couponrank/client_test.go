package couponrank_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// fake starts a fake server answering with h (nil: the default answer).
func fake(t *testing.T, h couponranktest.Handler) *couponranktest.Server {
	t.Helper()
	srv := couponranktest.Start(t)
	srv.SetHandler(h)
	return srv
}

// dialFake returns a client for srv. The backoff is short so retry tests run
// fast.
func dialFake(t *testing.T, srv *couponranktest.Server, opts ...couponrank.Option) *couponrank.Client {
	t.Helper()
	all := append([]couponrank.Option{couponrank.WithBackoff(time.Millisecond, 5*time.Millisecond)}, opts...)
	c, err := srv.Client(all...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func failWith(code codes.Code, times int) couponranktest.Handler {
	return func(_ context.Context, n int, req *couponrankv1.RankCouponsRequest) (*couponrankv1.RankCouponsResponse, error) {
		if n <= times {
			return nil, status.Errorf(code, "failure %d", n)
		}
		return &couponrankv1.RankCouponsResponse{RequestId: req.GetRequestId(), ModelVersion: "m1"}, nil
	}
}

func rankReq() *couponrankv1.RankCouponsRequest {
	return &couponrankv1.RankCouponsRequest{RequestId: "r-1", UserId: "u-1"}
}

func TestDefaults(t *testing.T) {
	c, err := couponrank.Dial("localhost:1")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if c.Timeout() != couponrank.DefaultTimeout || c.MaxAttempts() != couponrank.DefaultMaxAttempts {
		t.Errorf("defaults: timeout %v attempts %d", c.Timeout(), c.MaxAttempts())
	}
	if initial, max := couponrank.Backoff(c); initial != couponrank.DefaultInitialBackoff || max != couponrank.DefaultMaxBackoff {
		t.Errorf("default backoff: %v..%v", initial, max)
	}
}

func TestOptionsApplied(t *testing.T) {
	c, err := couponrank.Dial("localhost:1", couponrank.WithTimeout(2*time.Second), couponrank.WithMaxAttempts(5), couponrank.WithBackoff(time.Millisecond, 9*time.Millisecond), nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if c.Timeout() != 2*time.Second || c.MaxAttempts() != 5 {
		t.Errorf("got timeout %v attempts %d", c.Timeout(), c.MaxAttempts())
	}
	if initial, max := couponrank.Backoff(c); initial != time.Millisecond || max != 9*time.Millisecond {
		t.Errorf("got backoff %v..%v", initial, max)
	}
}

func TestInvalidOptions(t *testing.T) {
	cases := map[string]couponrank.Option{
		"zero timeout":        couponrank.WithTimeout(0),
		"negative timeout":    couponrank.WithTimeout(-time.Second),
		"zero attempts":       couponrank.WithMaxAttempts(0),
		"too many attempts":   couponrank.WithMaxAttempts(couponrank.MaxAttemptsLimit + 1),
		"zero backoff":        couponrank.WithBackoff(0, time.Second),
		"max below initial":   couponrank.WithBackoff(time.Second, time.Millisecond),
		"nil transport creds": couponrank.WithTransportCredentials(nil),
	}
	for name, opt := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := couponrank.Dial("localhost:1", opt)
			if err == nil {
				c.Close()
				t.Fatal("Dial accepted an invalid option")
			}
			if !strings.HasPrefix(err.Error(), "couponrank: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
	if _, err := couponrank.Dial(""); err == nil {
		t.Error("Dial accepted an empty target")
	}
	if _, err := couponrank.NewClient(nil); err == nil {
		t.Error("NewClient accepted a nil connection")
	}
}

func TestRetriesUnavailableThenSucceeds(t *testing.T) {
	srv := fake(t, failWith(codes.Unavailable, 2))
	c := dialFake(t, srv, couponrank.WithMaxAttempts(3))
	res, err := c.RankCoupons(context.Background(), rankReq())
	if err != nil {
		t.Fatalf("RankCoupons: %v", err)
	}
	if res.Attempts != 3 || len(srv.Calls()) != 3 {
		t.Errorf("attempts %d, server calls %d; want 3 and 3", res.Attempts, len(srv.Calls()))
	}
	if res.ModelVersion != "m1" || res.RequestID != "r-1" {
		t.Errorf("unexpected result %+v", res)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	srv := fake(t, failWith(codes.Unavailable, 1000))
	c := dialFake(t, srv, couponrank.WithMaxAttempts(4), couponrank.WithTimeout(5*time.Second))
	_, err := c.RankCoupons(context.Background(), rankReq())
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
	if len(srv.Calls()) != 4 {
		t.Errorf("server calls %d, want 4", len(srv.Calls()))
	}
}

func TestMaxAttemptsOneDisablesRetries(t *testing.T) {
	srv := fake(t, failWith(codes.Unavailable, 1))
	c := dialFake(t, srv, couponrank.WithMaxAttempts(1))
	if _, err := c.RankCoupons(context.Background(), rankReq()); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
	if len(srv.Calls()) != 1 {
		t.Errorf("server calls %d, want 1", len(srv.Calls()))
	}
}

func TestOtherCodesAreNotRetried(t *testing.T) {
	for _, code := range []codes.Code{
		codes.InvalidArgument, codes.DeadlineExceeded, codes.Internal, codes.Unknown,
		codes.ResourceExhausted, codes.FailedPrecondition, codes.Aborted, codes.Unimplemented,
		codes.NotFound, codes.PermissionDenied, codes.Unauthenticated, codes.Canceled,
	} {
		t.Run(couponrank.CodeName(code), func(t *testing.T) {
			srv := fake(t, failWith(code, 1000))
			c := dialFake(t, srv, couponrank.WithMaxAttempts(5))
			_, err := c.RankCoupons(context.Background(), rankReq())
			if status.Code(err) != code {
				t.Fatalf("got %v, want %v", err, code)
			}
			if len(srv.Calls()) != 1 {
				t.Errorf("server calls %d, want 1 (no retry)", len(srv.Calls()))
			}
		})
	}
}

func TestRetriesWhenServerIsDown(t *testing.T) {
	// A port nobody listens on: every attempt fails with UNAVAILABLE
	// (connection refused) before reaching a server.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()

	var attempts atomic.Int32
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		attempts.Add(1)
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c, err := couponrank.Dial(addr, couponrank.WithMaxAttempts(3), couponrank.WithBackoff(time.Millisecond, 2*time.Millisecond),
		couponrank.WithTimeout(5*time.Second), couponrank.WithDialOptions(grpc.WithUnaryInterceptor(count)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.RankCoupons(context.Background(), rankReq())
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
	if attempts.Load() != 3 {
		t.Errorf("attempts %d, want 3", attempts.Load())
	}
}

func TestDefaultTimeoutWhenContextHasNone(t *testing.T) {
	srv := fake(t, nil)
	c := dialFake(t, srv, couponrank.WithTimeout(300*time.Millisecond))
	before := time.Now()
	if _, err := c.RankCoupons(context.Background(), rankReq()); err != nil {
		t.Fatal(err)
	}
	deadline := srv.Calls()[0].Deadline
	if deadline.IsZero() {
		t.Fatal("server saw no deadline")
	}
	// The deadline travels as a timeout the server adds to its own clock.
	if got := deadline.Sub(before); got > 350*time.Millisecond || got < 250*time.Millisecond {
		t.Errorf("server deadline %v after the call began, want about 300ms", got)
	}
}

func TestContextDeadlineWins(t *testing.T) {
	srv := fake(t, nil)
	c := dialFake(t, srv, couponrank.WithTimeout(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	want, _ := ctx.Deadline()
	if _, err := c.RankCoupons(ctx, rankReq()); err != nil {
		t.Fatal(err)
	}
	got := srv.Calls()[0].Deadline
	if got.IsZero() {
		t.Fatal("server saw no deadline")
	}
	// The deadline travels as a timeout, so allow for transit time.
	if d := want.Sub(got).Abs(); d > 100*time.Millisecond {
		t.Errorf("server deadline differs from the caller's by %v", d)
	}
}

func TestDeadlineExceededIsNotRetried(t *testing.T) {
	srv := fake(t, couponranktest.Hang)
	c := dialFake(t, srv, couponrank.WithTimeout(100*time.Millisecond), couponrank.WithMaxAttempts(5))
	start := time.Now()
	_, err := c.RankCoupons(context.Background(), rankReq())
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("call took %v, want about 100ms", el)
	}
	if len(srv.Calls()) != 1 {
		t.Errorf("server calls %d, want 1", len(srv.Calls()))
	}
}

func TestNoRetryWhenBackoffWouldPassDeadline(t *testing.T) {
	srv := fake(t, failWith(codes.Unavailable, 1000))
	c := dialFake(t, srv, couponrank.WithTimeout(50*time.Millisecond), couponrank.WithMaxAttempts(5), couponrank.WithBackoff(time.Second, time.Second))
	start := time.Now()
	_, err := c.RankCoupons(context.Background(), rankReq())
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want the last UNAVAILABLE", err)
	}
	if len(srv.Calls()) != 1 || time.Since(start) > 500*time.Millisecond {
		t.Errorf("server calls %d after %v; want 1 call, no sleep", len(srv.Calls()), time.Since(start))
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	srv := fake(t, failWith(codes.Unavailable, 1000))
	c := dialFake(t, srv, couponrank.WithMaxAttempts(5), couponrank.WithBackoff(time.Second, time.Second), couponrank.WithTimeout(10*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := c.RankCoupons(ctx, rankReq())
	if status.Code(err) != codes.Canceled {
		t.Fatalf("got %v, want CANCELLED", err)
	}
}

func TestBackoffDoublesUpToMax(t *testing.T) {
	srv := fake(t, failWith(codes.Unavailable, 1000))
	c := dialFake(t, srv, couponrank.WithMaxAttempts(5), couponrank.WithBackoff(10*time.Millisecond, 25*time.Millisecond), couponrank.WithTimeout(10*time.Second))
	couponrank.SetJitter(c, 0)
	var slept []time.Duration
	couponrank.SetSleep(c, func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	})
	if _, err := c.RankCoupons(context.Background(), rankReq()); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v", err)
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 25 * time.Millisecond, 25 * time.Millisecond}
	if len(slept) != len(want) {
		t.Fatalf("slept %v, want %v", slept, want)
	}
	for i := range want {
		if slept[i] != want[i] {
			t.Fatalf("slept %v, want %v", slept, want)
		}
	}
}

func TestJitterStaysInRange(t *testing.T) {
	for range 1000 {
		d := couponrank.Jittered(100*time.Millisecond, 0.2)
		if d < 80*time.Millisecond || d > 120*time.Millisecond {
			t.Fatalf("jittered 100ms to %v", d)
		}
	}
}

func TestResultMapping(t *testing.T) {
	resp := &couponrankv1.RankCouponsResponse{
		RequestId: "r-9",
		RankedCoupons: []*couponrankv1.RankedCoupon{
			{CouponId: "c1", Rank: 1, Score: 0.9, Reasons: []*couponrankv1.Reason{{Feature: "f", Value: 2, Contribution: 0.5}}},
			{CouponId: "c2", Rank: 2, Score: 0.4},
		},
		IneligibleCoupons: []*couponrankv1.IneligibleCoupon{
			{CouponId: "c3", Reason: couponrankv1.IneligibilityReason_INELIGIBILITY_REASON_EXPIRED, Detail: "ended"},
		},
		ModelVersion:   "m7",
		ColdStart:      true,
		Degraded:       true,
		DegradedReason: couponrankv1.DegradedReason_DEGRADED_REASON_FEATURE_STORE_UNAVAILABLE,
		DegradedDetail: "redis down",
	}
	srv := fake(t, nil)
	srv.SetResponses(resp)
	c := dialFake(t, srv)
	req := &couponrankv1.RankCouponsRequest{
		UserId: "u-1", TopK: 2, Explain: true, MaxReasons: 3,
		Context: &couponrankv1.RequestContext{Placement: couponrankv1.Placement_PLACEMENT_CART, CartTotal: couponrank.Money("EUR", 1234)},
	}
	res, err := c.RankCoupons(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.CouponIDs(), ","); got != "c1,c2" {
		t.Errorf("coupon ids %q", got)
	}
	if r := res.Coupons[0]; r.Rank != 1 || r.Score != 0.9 || len(r.Reasons) != 1 || r.Reasons[0] != (couponrank.Reason{Feature: "f", Value: 2, Contribution: 0.5}) {
		t.Errorf("first coupon %+v", r)
	}
	if len(res.Ineligible) != 1 || res.Ineligible[0] != (couponrank.IneligibleCoupon{CouponID: "c3", Reason: couponrankv1.IneligibilityReason_INELIGIBILITY_REASON_EXPIRED, Detail: "ended"}) {
		t.Errorf("ineligible %+v", res.Ineligible)
	}
	if res.RequestID != "r-9" || res.ModelVersion != "m7" || !res.ColdStart || !res.Degraded ||
		res.DegradedReason != couponrankv1.DegradedReason_DEGRADED_REASON_FEATURE_STORE_UNAVAILABLE || res.DegradedDetail != "redis down" || res.Attempts != 1 {
		t.Errorf("result %+v", res)
	}
	got := srv.Requests()[0]
	if got.GetContext().GetCartTotal().GetAmountMinor() != 1234 || got.GetContext().GetCartTotal().GetCurrencyCode() != "EUR" || got.GetTopK() != 2 || !got.GetExplain() || got.GetMaxReasons() != 3 {
		t.Errorf("server got request %v", got)
	}
}

func TestResultNote(t *testing.T) {
	const note = "no coupon is active at 2026-12-02T10:00:00Z; the catalogue's coupons are valid 2026-06-01 .. 2026-07-31"
	srv := fake(t, nil)
	srv.SetResponses(&couponrankv1.RankCouponsResponse{RequestId: "r-1", Note: note})
	res, err := dialFake(t, srv).RankCoupons(context.Background(), &couponrankv1.RankCouponsRequest{UserId: "u-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Coupons) != 0 || res.Note != note {
		t.Errorf("coupons %v, note %q; want none and %q", res.Coupons, res.Note, note)
	}
	// The fake's default answer is an empty catalogue's, with its note.
	res, err = dialFake(t, fake(t, nil)).RankCoupons(context.Background(), &couponrankv1.RankCouponsRequest{UserId: "u-1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Note != couponranktest.EmptyCatalogueNote {
		t.Errorf("default note %q", res.Note)
	}
}

func TestNilRequest(t *testing.T) {
	c := dialFake(t, fake(t, nil))
	if _, err := c.RankCoupons(context.Background(), nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want INVALID_ARGUMENT", err)
	}
}

func TestGetModelInfo(t *testing.T) {
	srv := fake(t, nil)
	srv.SetModelInfo(&couponrankv1.GetModelInfoResponse{ModelVersion: "m3", FeatureNames: []string{"a", "b"}, Metrics: map[string]float64{"auc": 0.8}})
	c := dialFake(t, srv)
	info, err := c.GetModelInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.GetModelVersion() != "m3" || len(info.GetFeatureNames()) != 2 || info.GetMetrics()["auc"] != 0.8 {
		t.Errorf("model info %v", info)
	}
}

func TestNewClientDoesNotCloseBorrowedConn(t *testing.T) {
	srv := fake(t, nil)
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := couponrank.NewClient(conn, couponrank.WithMaxAttempts(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RankCoupons(context.Background(), rankReq()); err != nil {
		t.Fatalf("call after Close on a borrowed conn: %v", err)
	}
}

func TestParsePlacement(t *testing.T) {
	for in, want := range map[string]couponrankv1.Placement{
		"":                        couponrankv1.Placement_PLACEMENT_UNSPECIFIED,
		"cart":                    couponrankv1.Placement_PLACEMENT_CART,
		"CHECKOUT":                couponrankv1.Placement_PLACEMENT_CHECKOUT,
		"PLACEMENT_PRODUCT_PAGE":  couponrankv1.Placement_PLACEMENT_PRODUCT_PAGE,
		"order_confirmation":      couponrankv1.Placement_PLACEMENT_ORDER_CONFIRMATION,
		"member_centre":           couponrankv1.Placement_PLACEMENT_MEMBER_CENTRE,
		"MEMBER_CENTRE":           couponrankv1.Placement_PLACEMENT_MEMBER_CENTRE,
		"PLACEMENT_MEMBER_CENTRE": couponrankv1.Placement_PLACEMENT_MEMBER_CENTRE,
	} {
		got, err := couponrank.ParsePlacement(in)
		if err != nil || got != want {
			t.Errorf("ParsePlacement(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := couponrank.ParsePlacement("basket"); err == nil {
		t.Error("ParsePlacement accepted an unknown placement")
	}
}

func TestParseBehaviourType(t *testing.T) {
	for in, want := range map[string]couponrankv1.BehaviourType{
		"":                     couponrankv1.BehaviourType_BEHAVIOUR_TYPE_UNSPECIFIED,
		"view":                 couponrankv1.BehaviourType_BEHAVIOUR_TYPE_VIEW,
		" add_to_cart ":        couponrankv1.BehaviourType_BEHAVIOUR_TYPE_ADD_TO_CART,
		"FAVOURITE":            couponrankv1.BehaviourType_BEHAVIOUR_TYPE_FAVOURITE,
		"BEHAVIOUR_TYPE_ORDER": couponrankv1.BehaviourType_BEHAVIOUR_TYPE_ORDER,
	} {
		got, err := couponrank.ParseBehaviourType(in)
		if err != nil || got != want {
			t.Errorf("ParseBehaviourType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := couponrank.ParseBehaviourType("like"); err == nil {
		t.Error("ParseBehaviourType accepted an unknown behaviour type")
	}
}

func TestMembership(t *testing.T) {
	srv := fake(t, nil)
	c := dialFake(t, srv)
	for _, m := range []*couponrankv1.Membership{
		nil,                       // unset: the server's stored membership
		couponrank.Membership(""), // explicitly not a member
		couponrank.Membership("gold", "s1", "s2"),
	} {
		req := &couponrankv1.RankCouponsRequest{UserId: "u-1", Context: &couponrankv1.RequestContext{
			Placement: couponrankv1.Placement_PLACEMENT_MEMBER_CENTRE, Membership: m}}
		if _, err := c.RankCoupons(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	reqs := srv.Requests()
	if got := reqs[0].GetContext().GetMembership(); got != nil {
		t.Errorf("no membership given, server got %v", got)
	}
	if got := reqs[1].GetContext().GetMembership(); got == nil || got.GetTier() != "" || len(got.GetSegmentIds()) != 0 {
		t.Errorf("Membership(\"\"): server got %v, want a membership without tier", got)
	}
	if got := reqs[2].GetContext().GetMembership(); got.GetTier() != "gold" || strings.Join(got.GetSegmentIds(), ",") != "s1,s2" {
		t.Errorf("Membership(gold, s1, s2): server got %v", got)
	}
	if got := reqs[2].GetContext().GetPlacement(); got != couponrankv1.Placement_PLACEMENT_MEMBER_CENTRE {
		t.Errorf("placement %v", got)
	}
}

func TestNotInAudienceReason(t *testing.T) {
	srv := fake(t, nil)
	srv.SetResponses(&couponrankv1.RankCouponsResponse{IneligibleCoupons: []*couponrankv1.IneligibleCoupon{
		{CouponId: "c1", Reason: couponrankv1.IneligibilityReason_INELIGIBILITY_REASON_NOT_IN_AUDIENCE, Detail: "members only"}}})
	res, err := dialFake(t, srv).RankCoupons(context.Background(), rankReq())
	if err != nil {
		t.Fatal(err)
	}
	want := couponrank.IneligibleCoupon{CouponID: "c1", Reason: couponrankv1.IneligibilityReason_INELIGIBILITY_REASON_NOT_IN_AUDIENCE, Detail: "members only"}
	if len(res.Ineligible) != 1 || res.Ineligible[0] != want || res.Ineligible[0].Reason.String() != "INELIGIBILITY_REASON_NOT_IN_AUDIENCE" {
		t.Errorf("ineligible %+v", res.Ineligible)
	}
}

func TestCodeName(t *testing.T) {
	if couponrank.CodeName(codes.Unavailable) != "UNAVAILABLE" || couponrank.CodeName(codes.DeadlineExceeded) != "DEADLINE_EXCEEDED" || couponrank.CodeName(codes.Canceled) != "CANCELLED" {
		t.Error("wrong canonical code names")
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.HasPrefix(couponrank.CodeName(c), "CODE(") {
			t.Errorf("no name for %v", c)
		}
	}
}

func TestWaitForReady(t *testing.T) {
	c := dialFake(t, fake(t, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitForReady(ctx); err != nil {
		t.Fatalf("WaitForReady: %v", err)
	}

	// Nothing listens: WaitForReady gives up when ctx is done.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	down, err := couponrank.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if err := down.WaitForReady(ctx2); err == nil {
		t.Fatal("WaitForReady succeeded with no server")
	}
}
