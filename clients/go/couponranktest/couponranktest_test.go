package couponranktest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
	"github.com/couponrank/couponrank/clients/go/internal/testcerts"
)

func client(t *testing.T, srv *couponranktest.Server, opts ...couponrank.Option) *couponrank.Client {
	t.Helper()
	opts = append([]couponrank.Option{couponrank.WithTimeout(10 * time.Second), couponrank.WithBackoff(time.Millisecond, time.Millisecond)}, opts...)
	c, err := srv.Client(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func rank(t *testing.T, c *couponrank.Client, requestID string) (*couponrank.RankResult, error) {
	t.Helper()
	return c.RankCoupons(context.Background(), &couponrankv1.RankCouponsRequest{RequestId: requestID, UserId: "u-1"})
}

func TestStartListensOnLoopback(t *testing.T) {
	srv := couponranktest.Start(t)
	if !strings.HasPrefix(srv.Addr(), "127.0.0.1:") || strings.HasSuffix(srv.Addr(), ":0") {
		t.Errorf("Addr %q, want 127.0.0.1 and a real port", srv.Addr())
	}
}

func TestDefaultAnswer(t *testing.T) {
	srv := couponranktest.Start(t)
	res, err := rank(t, client(t, srv), "r-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Coupons) != 0 || res.Note != couponranktest.EmptyCatalogueNote || res.RequestID != "r-1" {
		t.Errorf("default answer %+v", res)
	}
}

func TestResponsesInTurnLastRepeats(t *testing.T) {
	srv := couponranktest.Start(t)
	a := &couponrankv1.RankCouponsResponse{ModelVersion: "a"}
	b := &couponrankv1.RankCouponsResponse{ModelVersion: "b", RequestId: "own-id"}
	srv.SetResponses(a, b)
	a.ModelVersion = "changed after SetResponses"            // the server keeps its copy
	srv.FailNext(1, status.Error(codes.Unavailable, "down")) // retried; uses no response up
	c := client(t, srv)
	var got []string
	for _, id := range []string{"r-1", "r-2", "r-3"} {
		res, err := rank(t, c, id)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.ModelVersion+"/"+res.RequestID)
	}
	if want := "a/r-1 b/own-id b/own-id"; strings.Join(got, " ") != want {
		t.Errorf("answers %q, want %q", got, want)
	}
	if n := len(srv.Calls()); n != 4 {
		t.Errorf("%d calls recorded, want 4", n)
	}
	srv.SetResponses() // back to the default answer
	if res, err := rank(t, c, "r-4"); err != nil || res.Note != couponranktest.EmptyCatalogueNote {
		t.Errorf("after SetResponses(): %+v, %v", res, err)
	}
}

func TestHandlerGetsCallNumbers(t *testing.T) {
	srv := couponranktest.Start(t)
	var mu sync.Mutex
	var calls []int
	srv.SetHandler(func(_ context.Context, call int, req *couponrankv1.RankCouponsRequest) (*couponrankv1.RankCouponsResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call)
		return &couponrankv1.RankCouponsResponse{RequestId: req.GetRequestId(), ModelVersion: "h"}, nil
	})
	srv.FailNext(1, status.Error(codes.Unavailable, "down"))
	c := client(t, srv)
	for _, id := range []string{"r-1", "r-2"} {
		if res, err := rank(t, c, id); err != nil || res.ModelVersion != "h" {
			t.Fatalf("%+v, %v", res, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[0] != 2 || calls[1] != 3 {
		t.Errorf("handler saw calls %v, want [2 3] (call 1 was failed by FailNext)", calls)
	}
	srv.SetHandler(nil)
	if res, err := rank(t, c, "r-3"); err != nil || res.Note != couponranktest.EmptyCatalogueNote {
		t.Errorf("after SetHandler(nil): %+v, %v", res, err)
	}
}

func TestFailNextQueuesErrors(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNext(2, status.Error(codes.Internal, "boom"))
	srv.FailNext(1, status.Error(codes.DeadlineExceeded, "slow"))
	srv.FailNext(1, errors.New("no status"))
	c := client(t, srv)
	var got []string
	for range 5 {
		_, err := rank(t, c, "")
		got = append(got, couponrank.CodeName(status.Code(err)))
	}
	if want := "INTERNAL INTERNAL DEADLINE_EXCEEDED UNKNOWN OK"; strings.Join(got, " ") != want {
		t.Errorf("codes %q, want %q", got, want)
	}
}

func TestCallsRecordRequestDeadlineMetadata(t *testing.T) {
	srv := couponranktest.Start(t)
	c := client(t, srv)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-checkout-id", "k-9")
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	req := &couponrankv1.RankCouponsRequest{UserId: "u-5", CandidateCouponIds: []string{"c1", "c2"}, TopK: 3}
	if _, err := c.RankCoupons(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.UserId = "changed after the call" // the server recorded a copy
	calls := srv.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls", len(calls))
	}
	got := calls[0]
	if got.Request.GetUserId() != "u-5" || strings.Join(got.Request.GetCandidateCouponIds(), ",") != "c1,c2" || got.Request.GetTopK() != 3 {
		t.Errorf("recorded request %v", got.Request)
	}
	if v := got.Metadata.Get("x-checkout-id"); len(v) != 1 || v[0] != "k-9" {
		t.Errorf("recorded metadata %v", got.Metadata)
	}
	if got.Deadline.IsZero() {
		t.Error("recorded no deadline")
	}
	if reqs := srv.Requests(); len(reqs) != 1 || reqs[0].GetUserId() != "u-5" {
		t.Errorf("Requests() %v", reqs)
	}
}

func TestModelInfo(t *testing.T) {
	srv := couponranktest.Start(t)
	c := client(t, srv)
	if info, err := c.GetModelInfo(context.Background()); err != nil || info.GetModelVersion() != "" {
		t.Fatalf("default model info %v, %v", info, err)
	}
	srv.SetModelInfo(&couponrankv1.GetModelInfoResponse{ModelVersion: "m9", FeatureNames: []string{"f"}})
	if info, err := c.GetModelInfo(context.Background()); err != nil || info.GetModelVersion() != "m9" {
		t.Fatalf("model info %v, %v", info, err)
	}
}

func TestHangEndsWithTheClientsDeadline(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.SetHandler(couponranktest.Hang)
	c := client(t, srv, couponrank.WithTimeout(20*time.Millisecond))
	if _, err := rank(t, c, ""); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.RankCoupons(ctx, &couponrankv1.RankCouponsRequest{UserId: "u"}); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: got %v, want CANCELLED", err)
	}
}

func TestClosedServerIsUnavailable(t *testing.T) {
	srv := couponranktest.Start(t)
	c := client(t, srv, couponrank.WithMaxAttempts(2))
	if _, err := rank(t, c, ""); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	srv.Close() // twice is fine (Start's cleanup closes it again)
	if _, err := rank(t, c, ""); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
}

func TestTLSOptionErrors(t *testing.T) {
	pki := testcerts.Write(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for name, c := range map[string]struct {
		opts []couponranktest.Option
		want string // in the error
	}{
		"missing cert":           {[]couponranktest.Option{couponranktest.WithTLS(missing, pki.ServerKey)}, missing},
		"missing key":            {[]couponranktest.Option{couponranktest.WithTLS(pki.ServerCert, missing)}, missing},
		"cert not PEM":           {[]couponranktest.Option{couponranktest.WithTLS(garbage, pki.ServerKey)}, garbage},
		"key only":               {[]couponranktest.Option{couponranktest.WithTLS("", pki.ServerKey)}, "certificate"},
		"client CA, no TLS":      {[]couponranktest.Option{couponranktest.WithClientCA(pki.CA)}, "WithTLS"},
		"client CA missing":      {[]couponranktest.Option{couponranktest.WithTLS(pki.ServerCert, pki.ServerKey), couponranktest.WithClientCA(missing)}, missing},
		"client CA not PEM":      {[]couponranktest.Option{couponranktest.WithTLS(pki.ServerCert, pki.ServerKey), couponranktest.WithClientCA(garbage)}, garbage},
		"client CA empty string": {[]couponranktest.Option{couponranktest.WithClientCA("")}, "WithClientCA"},
	} {
		t.Run(name, func(t *testing.T) {
			srv, err := couponranktest.NewServer(c.opts...)
			if err == nil {
				srv.Close()
				t.Fatal("NewServer accepted bad TLS options")
			}
			if !strings.HasPrefix(err.Error(), "couponranktest: ") || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want the package prefix and %q", err, c.want)
			}
		})
	}
}
