package couponrank_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
	"github.com/couponrank/couponrank/clients/go/internal/testcerts"
)

// testToken looks like what `couponrank token` makes: URL-safe base64.
const testToken = "q3Zt-Vb9_x0Lw2pK7mN4rS8uY1aE6hJcDfGiHoT5BnM"

// authorizations returns the authorization values of each call srv received.
func authorizations(srv *couponranktest.Server) [][]string {
	var out [][]string
	for _, c := range srv.Calls() {
		out = append(out, c.Metadata.Get("authorization"))
	}
	return out
}

// wantBearer fails t unless each of calls carried exactly "Bearer token".
func wantBearer(t *testing.T, calls [][]string, n int, token string) {
	t.Helper()
	if len(calls) != n {
		t.Fatalf("server got %d calls, want %d", len(calls), n)
	}
	for i, got := range calls {
		if len(got) != 1 || got[0] != "Bearer "+token {
			t.Errorf("call %d: authorization %q, want exactly [\"Bearer %s\"]", i+1, got, token)
		}
	}
}

func TestBearerTokenOnEveryAttempt(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNext(2, status.Error(codes.Unavailable, "restarting"))
	c := dialFake(t, srv, couponrank.WithBearerToken(testToken), couponrank.WithTimeout(10*time.Second))

	res, err := c.RankCoupons(context.Background(), rankReq())
	if err != nil {
		t.Fatalf("RankCoupons: %v", err)
	}
	if res.Attempts != 3 {
		t.Errorf("attempts %d, want 3", res.Attempts)
	}
	// A second call sends it again.
	if _, err := c.RankOrEmpty(context.Background(), rankReq()); err != nil {
		t.Fatalf("RankOrEmpty: %v", err)
	}
	wantBearer(t, authorizations(srv), 4, testToken)
}

func TestNoAuthorizationWithoutBearerOption(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNext(1, status.Error(codes.Unavailable, "restarting"))
	c := dialFake(t, srv, couponrank.WithTimeout(10*time.Second))
	if _, err := c.RankCoupons(context.Background(), rankReq()); err != nil {
		t.Fatalf("RankCoupons: %v", err)
	}
	calls := srv.Calls()
	if len(calls) != 2 {
		t.Fatalf("server got %d calls, want 2", len(calls))
	}
	for i, call := range calls {
		if got := call.Metadata.Get("authorization"); len(got) != 0 {
			t.Errorf("call %d: authorization %q without a bearer option", i+1, got)
		}
	}
}

func TestBearerTokenKeepsCallerMetadata(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNext(1, status.Error(codes.Unavailable, "restarting"))
	c := dialFake(t, srv, couponrank.WithBearerToken(testToken), couponrank.WithTimeout(10*time.Second))

	ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("x-checkout-id", "co-1", "x-multi", "a"))
	ctx = metadata.AppendToOutgoingContext(ctx, "x-multi", "b", "x-trace", "t-9")
	if _, err := c.RankCoupons(ctx, rankReq()); err != nil {
		t.Fatalf("RankCoupons: %v", err)
	}
	calls := srv.Calls()
	wantBearer(t, authorizations(srv), 2, testToken)
	for i, call := range calls {
		md := call.Metadata
		if got := md.Get("x-checkout-id"); len(got) != 1 || got[0] != "co-1" {
			t.Errorf("call %d: x-checkout-id %q", i+1, got)
		}
		if got := md.Get("x-multi"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
			t.Errorf("call %d: x-multi %q, want [a b]", i+1, got)
		}
		if got := md.Get("x-trace"); len(got) != 1 || got[0] != "t-9" {
			t.Errorf("call %d: x-trace %q", i+1, got)
		}
	}
	// The caller's context is left as it was.
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get("authorization")) != 0 {
		t.Errorf("the caller's context got authorization %q", md.Get("authorization"))
	}
}

func TestBearerTokenReplacesCallerAuthorization(t *testing.T) {
	srv := couponranktest.Start(t)
	c := dialFake(t, srv, couponrank.WithBearerToken(testToken))
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer other", "x-keep", "1")
	if _, err := c.RankCoupons(ctx, rankReq()); err != nil {
		t.Fatalf("RankCoupons: %v", err)
	}
	wantBearer(t, authorizations(srv), 1, testToken)
	if got := srv.Calls()[0].Metadata.Get("x-keep"); len(got) != 1 {
		t.Errorf("x-keep %q", got)
	}
}

func TestCallerAuthorizationWithoutBearerOption(t *testing.T) {
	srv := couponranktest.Start(t)
	c := dialFake(t, srv)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer mine")
	if _, err := c.RankCoupons(ctx, rankReq()); err != nil {
		t.Fatalf("RankCoupons: %v", err)
	}
	wantBearer(t, authorizations(srv), 1, "mine")
}

func TestUnauthenticatedIsNotRetried(t *testing.T) {
	srv := couponranktest.Start(t)
	srv.FailNext(1, status.Error(codes.Unauthenticated, "authorization: the bearer token matches no caller"))
	c := dialFake(t, srv, couponrank.WithBearerToken(testToken), couponrank.WithMaxAttempts(5), couponrank.WithTimeout(10*time.Second))

	res, err := c.RankOrEmpty(context.Background(), rankReq())
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("got %v, want UNAUTHENTICATED", err)
	}
	if couponrank.Retryable(err) {
		t.Error("Retryable(UNAUTHENTICATED) = true")
	}
	if res == nil || res.Attempts != 1 || len(res.Coupons) != 0 {
		t.Errorf("RankOrEmpty result %+v, want empty after 1 attempt", res)
	}
	wantBearer(t, authorizations(srv), 1, testToken)
}

func TestBearerTokenFile(t *testing.T) {
	srv := couponranktest.Start(t)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("\n  "+testToken+"\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := dialFake(t, srv, couponrank.WithBearerTokenFile(file))
	if _, err := c.RankCoupons(context.Background(), rankReq()); err != nil {
		t.Fatalf("RankCoupons: %v", err)
	}
	wantBearer(t, authorizations(srv), 1, testToken)
}

func TestBearerTokenWithNewClient(t *testing.T) {
	srv := couponranktest.Start(t)
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := couponrank.NewClient(conn, couponrank.WithBearerToken(testToken))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RankCoupons(context.Background(), rankReq()); err != nil {
		t.Fatalf("RankCoupons: %v", err)
	}
	wantBearer(t, authorizations(srv), 1, testToken)
}

func TestBearerTokenOverTLS(t *testing.T) {
	pki := testcerts.Write(t)
	srv := couponranktest.Start(t, couponranktest.WithTLS(pki.ServerCert, pki.ServerKey))
	if err := tlsCall(t, srv.Addr(), couponrank.WithTLS(pki.CA), couponrank.WithBearerToken(testToken)); err != nil {
		t.Fatalf("TLS call: %v", err)
	}
	wantBearer(t, authorizations(srv), 1, testToken)
}

func TestBearerOptionErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing-token")
	empty := write("empty-token", "")
	blank := write("blank-token", " \n\t\n")
	inner := write("two-tokens", "abc def\n")
	prefixed := write("prefixed-token", "Bearer "+testToken+"\n")
	lines := write("two-lines", "abc\ndef\n")
	nonASCII := write("non-ascii-token", "t\u00e9st\n")
	good := write("good-token", testToken)

	for name, tc := range map[string]struct {
		opts []couponrank.Option
		want string // in the error
	}{
		"file missing":          {[]couponrank.Option{couponrank.WithBearerTokenFile(missing)}, missing},
		"file is a directory":   {[]couponrank.Option{couponrank.WithBearerTokenFile(dir)}, dir},
		"file empty":            {[]couponrank.Option{couponrank.WithBearerTokenFile(empty)}, empty},
		"file blank":            {[]couponrank.Option{couponrank.WithBearerTokenFile(blank)}, blank},
		"file space inside":     {[]couponrank.Option{couponrank.WithBearerTokenFile(inner)}, inner},
		"file Bearer prefix":    {[]couponrank.Option{couponrank.WithBearerTokenFile(prefixed)}, prefixed},
		"file two lines":        {[]couponrank.Option{couponrank.WithBearerTokenFile(lines)}, lines},
		"file non-ASCII":        {[]couponrank.Option{couponrank.WithBearerTokenFile(nonASCII)}, nonASCII},
		"file name empty":       {[]couponrank.Option{couponrank.WithBearerTokenFile("")}, "bearer token file"},
		"token empty":           {[]couponrank.Option{couponrank.WithBearerToken("")}, "empty token"},
		"token space inside":    {[]couponrank.Option{couponrank.WithBearerToken("abc def")}, "whitespace"},
		"token space around":    {[]couponrank.Option{couponrank.WithBearerToken(testToken + "\n")}, "whitespace"},
		"token Bearer prefix":   {[]couponrank.Option{couponrank.WithBearerToken("Bearer " + testToken)}, "whitespace"},
		"token control char":    {[]couponrank.Option{couponrank.WithBearerToken("abc\x00def")}, "printable ASCII"},
		"token and file":        {[]couponrank.Option{couponrank.WithBearerToken(testToken), couponrank.WithBearerTokenFile(good)}, "cannot be used together"},
		"file and token":        {[]couponrank.Option{couponrank.WithBearerTokenFile(good), couponrank.WithBearerToken(testToken)}, "cannot be used together"},
		"file missing, NewConn": {[]couponrank.Option{couponrank.WithBearerTokenFile(missing)}, missing},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			if strings.HasSuffix(name, "NewConn") {
				conn, cerr := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
				if cerr != nil {
					t.Fatal(cerr)
				}
				defer conn.Close()
				_, err = couponrank.NewClient(conn, tc.opts...)
			} else {
				var c *couponrank.Client
				c, err = couponrank.Dial("127.0.0.1:1", tc.opts...)
				if err == nil {
					c.Close()
				}
			}
			if err == nil {
				t.Fatal("accepted bad bearer token options")
			}
			if !strings.HasPrefix(err.Error(), "couponrank: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want the package prefix and %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}
}

// modelInfoServer is a CouponRank server whose GetModelInfo fails its first
// calls with the codes in fail, then answers; it records each call's
// metadata. (couponranktest records the metadata of RankCoupons only.)
type modelInfoServer struct {
	couponrankv1.UnimplementedCouponRankingServiceServer
	mu    sync.Mutex
	fail  []codes.Code
	calls []metadata.MD
}

func (s *modelInfoServer) GetModelInfo(ctx context.Context, _ *couponrankv1.GetModelInfoRequest) (*couponrankv1.GetModelInfoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, md.Copy())
	if len(s.calls) <= len(s.fail) {
		return nil, status.Error(s.fail[len(s.calls)-1], "injected")
	}
	return &couponrankv1.GetModelInfoResponse{ModelVersion: "m1"}, nil
}

func (s *modelInfoServer) authorizations() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]string
	for _, md := range s.calls {
		out = append(out, md.Get("authorization"))
	}
	return out
}

func startModelInfoServer(t *testing.T, fail ...codes.Code) (*modelInfoServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &modelInfoServer{fail: fail}
	gs := grpc.NewServer()
	couponrankv1.RegisterCouponRankingServiceServer(gs, svc)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return svc, lis.Addr().String()
}

func TestBearerTokenOnGetModelInfo(t *testing.T) {
	svc, addr := startModelInfoServer(t, codes.Unavailable)
	c, err := couponrank.Dial(addr, couponrank.WithBearerToken(testToken), couponrank.WithBackoff(time.Millisecond, 5*time.Millisecond), couponrank.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.GetModelInfo(context.Background())
	if err != nil {
		t.Fatalf("GetModelInfo: %v", err)
	}
	if info.GetModelVersion() != "m1" {
		t.Errorf("model info %v", info)
	}
	wantBearer(t, svc.authorizations(), 2, testToken) // the retry carried it too
}

func TestGetModelInfoUnauthenticatedIsNotRetried(t *testing.T) {
	svc, addr := startModelInfoServer(t, codes.Unauthenticated)
	c, err := couponrank.Dial(addr, couponrank.WithBearerToken(testToken), couponrank.WithMaxAttempts(5), couponrank.WithBackoff(time.Millisecond, 5*time.Millisecond), couponrank.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetModelInfo(context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("got %v, want UNAUTHENTICATED", err)
	}
	wantBearer(t, svc.authorizations(), 1, testToken)
}
