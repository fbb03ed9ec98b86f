// Package fakeserver runs an in-process CouponRank gRPC server for tests: a
// real grpc.Server implementing the generated service interface, on an
// in-memory bufconn listener or on a 127.0.0.1 port.
package fakeserver

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// RankFunc answers one RankCoupons call; n is the 1-based number of the call.
type RankFunc func(ctx context.Context, n int, req *couponrankv1.RankCouponsRequest) (*couponrankv1.RankCouponsResponse, error)

// EmptyCatalogueNote is the note of the default answer (Server.Rank nil): the
// words the real server uses when its catalogue holds no coupon.
const EmptyCatalogueNote = "the catalogue holds no coupon"

// Server is a fake CouponRankingService that records what it receives.
type Server struct {
	couponrankv1.UnimplementedCouponRankingServiceServer

	// Rank answers RankCoupons. Nil answers as a server with an empty
	// catalogue does: nothing ranked, Note EmptyCatalogueNote.
	Rank      RankFunc
	ModelInfo *couponrankv1.GetModelInfoResponse

	mu       sync.Mutex
	calls    int
	requests []*couponrankv1.RankCouponsRequest
	ctxs     []context.Context
}

// RankCoupons implements couponrankv1.CouponRankingServiceServer.
func (s *Server) RankCoupons(ctx context.Context, req *couponrankv1.RankCouponsRequest) (*couponrankv1.RankCouponsResponse, error) {
	s.mu.Lock()
	s.calls++
	n := s.calls
	s.requests = append(s.requests, req)
	s.ctxs = append(s.ctxs, ctx)
	s.mu.Unlock()
	if s.Rank == nil {
		return &couponrankv1.RankCouponsResponse{RequestId: req.GetRequestId(), Note: EmptyCatalogueNote}, nil
	}
	return s.Rank(ctx, n, req)
}

// GetModelInfo implements couponrankv1.CouponRankingServiceServer.
func (s *Server) GetModelInfo(context.Context, *couponrankv1.GetModelInfoRequest) (*couponrankv1.GetModelInfoResponse, error) {
	if s.ModelInfo == nil {
		return &couponrankv1.GetModelInfoResponse{}, nil
	}
	return s.ModelInfo, nil
}

// Calls returns the number of RankCoupons calls received.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Requests returns the RankCoupons requests received, in order.
func (s *Server) Requests() []*couponrankv1.RankCouponsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*couponrankv1.RankCouponsRequest(nil), s.requests...)
}

// Contexts returns the server-side contexts of the RankCoupons calls, whose
// Deadline is the deadline the client propagated.
func (s *Server) Contexts() []context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]context.Context(nil), s.ctxs...)
}

// StartBufconn serves s on an in-memory listener and returns the dial
// options that reach it (use with target "passthrough:///bufnet"). The server
// stops when the test ends.
func StartBufconn(t testing.TB, s *Server) []grpc.DialOption {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	serve(t, s, lis)
	return []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
}

// BufconnTarget is the target to dial with StartBufconn's options.
const BufconnTarget = "passthrough:///bufnet"

// StartTCP serves s on 127.0.0.1 (a port the kernel picks) and returns the
// address. The server stops when the test ends.
func StartTCP(t testing.TB, s *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	serve(t, s, lis)
	return lis.Addr().String()
}

func serve(t testing.TB, s *Server, lis net.Listener) {
	gs := grpc.NewServer()
	couponrankv1.RegisterCouponRankingServiceServer(gs, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
}
