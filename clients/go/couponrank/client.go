// Package couponrank is the Go client of the CouponRank service
// (couponrank.v1.CouponRankingService), which ranks coupons for one user.
//
// It wraps the generated stub (package couponrankv1) with what every caller
// needs: a default timeout when the context has none, bounded retries with
// exponential backoff on codes.Unavailable only, and typed results.
//
//	c, err := couponrank.Dial("couponrank:50051", couponrank.WithTimeout(150*time.Millisecond))
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.RankCoupons(ctx, &couponrankv1.RankCouponsRequest{
//		UserId: "u-123",
//		Context: &couponrankv1.RequestContext{
//			Placement: couponrankv1.Placement_PLACEMENT_CHECKOUT,
//			CartTotal: couponrank.Money("USD", 4599),
//		},
//		TopK: 5,
//	})
//	if err != nil {
//		// status.Code(err) is the gRPC code; show no coupons and move on.
//	}
//	for _, rc := range res.Coupons { ... }
//
// RankOrEmpty does the same but never returns a nil result: on error, an
// empty ranking and the error, for a checkout that goes on without coupons.
// RecordEvents sends what happened next (impressions, claims, redemptions,
// shopping behaviour; built with Impression, Claim, Redemption, Behaviour),
// with the same deadline and retries: the call is idempotent by event_id.
// ParseMoney/FormatMoney convert decimal amounts, RequestTime a time.Time,
// Membership builds the caller's view of the user's membership;
// WithTLS, WithClientCertificate and WithServerName set up TLS from files;
// WithBearerToken and WithBearerTokenFile identify the caller to the server.
// Package couponranktest is a fake server for the tests of code using this
// client.
//
// A Client is safe for concurrent use; create one per process and share it.
package couponrank

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// Client calls the CouponRank service. Create it with Dial (or NewClient for
// an existing connection) and release it with Close.
type Client struct {
	conn    *grpc.ClientConn
	ownConn bool
	stub    couponrankv1.CouponRankingServiceClient
	opts    options
	// sleep waits d or until ctx is done; replaced in tests.
	sleep func(ctx context.Context, d time.Duration) error
}

// Dial creates a client for target, a gRPC target such as "localhost:50051"
// or "dns:///couponrank.internal:50051". The connection is made lazily, on
// the first call, so Dial does not fail when the server is down.
func Dial(target string, opts ...Option) (*Client, error) {
	if target == "" {
		return nil, errors.New("couponrank: empty target")
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target, o.grpcDialOptions()...)
	if err != nil {
		return nil, err
	}
	c := newClient(conn, o)
	c.ownConn = true
	return c, nil
}

// NewClient creates a client over an existing connection, which the caller
// keeps owning: Close does not close it. Transport and dial options are
// ignored; all other options apply.
func NewClient(conn *grpc.ClientConn, opts ...Option) (*Client, error) {
	if conn == nil {
		return nil, errors.New("couponrank: nil connection")
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	return newClient(conn, o), nil
}

func newClient(conn *grpc.ClientConn, o options) *Client {
	return &Client{conn: conn, stub: couponrankv1.NewCouponRankingServiceClient(conn), opts: o, sleep: sleepCtx}
}

// Close releases the connection made by Dial. It is a no-op for a client made
// by NewClient.
func (c *Client) Close() error {
	if c.ownConn {
		return c.conn.Close()
	}
	return nil
}

// WaitForReady connects and waits until the connection is ready or ctx is
// done. Optional: calls connect by themselves, but the first one then pays
// for the connection inside its deadline. Call it at start-up to keep that
// cost out of the first request.
func (c *Client) WaitForReady(ctx context.Context) error {
	c.conn.Connect()
	for {
		s := c.conn.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if s == connectivity.Idle {
			c.conn.Connect()
		}
		if !c.conn.WaitForStateChange(ctx, s) {
			return ctx.Err()
		}
	}
}

// Timeout returns the timeout applied to calls whose context has no deadline.
func (c *Client) Timeout() time.Duration { return c.opts.timeout }

// MaxAttempts returns the number of attempts made for a call that keeps
// failing with codes.Unavailable.
func (c *Client) MaxAttempts() int { return c.opts.maxAttempts }

// RankCoupons ranks coupons for one user.
//
// The call's deadline is ctx's deadline, or the client's timeout when ctx has
// none; it bounds all attempts together. A call failing with
// codes.Unavailable is retried with backoff while attempts and time are left;
// any other error is returned at once. Errors are gRPC status errors: use
// status.Code(err). A degraded ranking (res.Degraded) is a success, not an
// error.
func (c *Client) RankCoupons(ctx context.Context, req *couponrankv1.RankCouponsRequest, callOpts ...grpc.CallOption) (*RankResult, error) {
	res, _, err := c.rank(ctx, req, callOpts)
	return res, err
}

// RankOrEmpty is RankCoupons for callers that must carry on without a
// ranking, such as a checkout: it never returns a nil result. On success it
// returns what RankCoupons does. On any error it returns an empty ranking
// (no coupons, no ineligible coupons, RequestID the request's request_id,
// Attempts the attempts made) together with the error, for the caller to
// log (status.Code(err)) before going on without coupons:
//
//	res, err := client.RankOrEmpty(ctx, req)
//	if err != nil {
//		log.Printf("coupons skipped: %s: %v", couponrank.CodeName(status.Code(err)), err)
//	}
//	show(res.Coupons) // empty on error
//
// It waits no longer than RankCoupons: until ctx's deadline or, when ctx has
// none, the client's timeout (WithTimeout, default DefaultTimeout), retries
// included; a server that is down or slow does not block the checkout beyond
// that. Set the timeout (or ctx's deadline) to what the checkout can afford.
func (c *Client) RankOrEmpty(ctx context.Context, req *couponrankv1.RankCouponsRequest, callOpts ...grpc.CallOption) (*RankResult, error) {
	res, attempts, err := c.rank(ctx, req, callOpts)
	if err != nil {
		res = newRankResult(&couponrankv1.RankCouponsResponse{RequestId: req.GetRequestId()})
		res.Attempts = attempts
	}
	return res, err
}

func (c *Client) rank(ctx context.Context, req *couponrankv1.RankCouponsRequest, callOpts []grpc.CallOption) (*RankResult, int, error) {
	if req == nil {
		return nil, 0, status.Error(codes.InvalidArgument, "couponrank: nil request")
	}
	var resp *couponrankv1.RankCouponsResponse
	attempts, err := c.invoke(ctx, func(ctx context.Context) error {
		var err error
		resp, err = c.stub.RankCoupons(ctx, req, callOpts...)
		return err
	})
	if err != nil {
		return nil, attempts, err
	}
	res := newRankResult(resp)
	res.Attempts = attempts
	return res, attempts, nil
}

// GetModelInfo describes the model the server has loaded, with the same
// deadline and retry handling as RankCoupons.
func (c *Client) GetModelInfo(ctx context.Context, callOpts ...grpc.CallOption) (*couponrankv1.GetModelInfoResponse, error) {
	var resp *couponrankv1.GetModelInfoResponse
	_, err := c.invoke(ctx, func(ctx context.Context) error {
		var err error
		resp, err = c.stub.GetModelInfo(ctx, &couponrankv1.GetModelInfoRequest{}, callOpts...)
		return err
	})
	return resp, err
}

// invoke runs call under the call deadline, retrying codes.Unavailable. It
// returns the number of attempts made and the last error.
func (c *Client) invoke(ctx context.Context, call func(context.Context) error) (int, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.timeout)
		defer cancel()
	}
	if c.opts.bearerTokenSet {
		ctx = withAuthorization(ctx, "Bearer "+c.opts.bearerToken)
	}
	backoff := c.opts.initialBackoff
	for attempt := 1; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return attempt, nil
		}
		if !Retryable(err) || attempt >= c.opts.maxAttempts {
			return attempt, err
		}
		wait := jittered(backoff, c.opts.jitter)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
			// No time left for another attempt: report the real failure
			// rather than a deadline the caller would then misread.
			return attempt, err
		}
		if serr := c.sleep(ctx, wait); serr != nil {
			return attempt, status.FromContextError(serr).Err()
		}
		backoff = min(2*backoff, c.opts.maxBackoff)
	}
}

// withAuthorization returns ctx with its outgoing metadata plus
// "authorization: value", in place of any authorization already there (the
// server would read only one of two).
func withAuthorization(ctx context.Context, value string) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx) // a copy, with what AppendToOutgoingContext added
	if md == nil {
		md = metadata.MD{}
	}
	md.Set("authorization", value)
	return metadata.NewOutgoingContext(ctx, md)
}

// Retryable reports whether a failed call may be retried: only
// codes.Unavailable, which gRPC uses when the request did not reach a server
// able to answer it. Every other code is final (INVALID_ARGUMENT will fail
// again, DEADLINE_EXCEEDED leaves no time, INTERNAL may not be transient).
func Retryable(err error) bool {
	return status.Code(err) == codes.Unavailable
}

func jittered(d time.Duration, jitter float64) time.Duration {
	if jitter <= 0 {
		return d
	}
	f := 1 + jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
