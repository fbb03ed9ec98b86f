// Package couponranktest provides a fake CouponRank server for the tests of
// code that uses the Go client: a real gRPC server, implementing the
// generated couponrank.v1.CouponRankingService, on a free port of 127.0.0.1.
// No CouponRank server, model or data is needed.
//
// A test starts one, tells it what to answer, and points its client at it:
//
//	srv := couponranktest.Start(t) // closed when the test ends
//	srv.SetResponses(&couponrankv1.RankCouponsResponse{
//		RankedCoupons: []*couponrankv1.RankedCoupon{{CouponId: "c1", Rank: 1, Score: 0.9}},
//	})
//	srv.FailNext(2, status.Error(codes.Unavailable, "restarting")) // then answers
//	client, err := srv.Client(couponrank.WithTimeout(time.Second))
//	... exercise the code under test with client ...
//	reqs := srv.Requests() // what the server received, in order
//
// What it answers to RankCoupons, first match wins: an error queued with
// FailNext; the handler set with SetHandler; the responses set with
// SetResponses; by default an empty ranking with Note EmptyCatalogueNote, as
// a server with an empty catalogue gives. Responses echo the request's
// request_id unless they set their own. GetModelInfo answers SetModelInfo's
// response.
//
// RecordEvents records events in memory: an event whose event_id the server
// has recorded before is answered EVENT_STATUS_DUPLICATE, one that CheckEvent
// (or the check set with SetEventCheck) finds wrong EVENT_STATUS_REJECTED,
// any other EVENT_STATUS_ACCEPTED and kept (RecordedEvents). An empty batch
// or one of more than couponrank.MaxEventsPerCall events fails with
// INVALID_ARGUMENT, as the real server does; FailNextEvents injects errors.
//
// With WithTLS (and WithClientCA for mutual TLS) the server speaks TLS; the
// client then needs couponrank.WithTLS (and couponrank.WithClientCertificate).
//
// A Server is safe for concurrent use.
package couponranktest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
	"github.com/couponrank/couponrank/clients/go/internal/tlsfiles"
)

// EmptyCatalogueNote is the Note of the default answer: the words the real
// server uses when its catalogue holds no coupon.
const EmptyCatalogueNote = "the catalogue holds no coupon"

// Handler answers one RankCoupons call. call is the call's 1-based number
// among all the RankCoupons calls the server received (those failed by
// FailNext included). ctx is the server side of the call: its deadline is the
// one the client sent, and it is done when the client gives up. Return a
// status error (status.Error) to fail the call with that code.
type Handler func(ctx context.Context, call int, req *couponrankv1.RankCouponsRequest) (*couponrankv1.RankCouponsResponse, error)

// Hang is a Handler that never answers: it waits until the call's deadline
// passes or the client cancels, as an overloaded server would, so the client
// sees DEADLINE_EXCEEDED (or CANCELLED). Use it to test that a caller does
// not wait longer than its deadline: srv.SetHandler(couponranktest.Hang).
func Hang(ctx context.Context, _ int, _ *couponrankv1.RankCouponsRequest) (*couponrankv1.RankCouponsResponse, error) {
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

// Call is one RankCoupons call the server received.
type Call struct {
	// Request is a copy of the request.
	Request *couponrankv1.RankCouponsRequest
	// Deadline is the deadline the client sent; zero when it sent none.
	Deadline time.Time
	// Metadata are the call's request headers (gRPC metadata).
	Metadata metadata.MD
}

// Option configures a Server made by NewServer or Start.
type Option func(*config) error

type config struct {
	certFile, keyFile string
	clientCAFile      string
}

// WithTLS makes the server speak TLS with the certificate in certFile (PEM,
// chain after the leaf) and its private key in keyFile (PEM). The
// certificate should name 127.0.0.1 (an IP SAN) or the name the client sets
// with couponrank.WithServerName.
func WithTLS(certFile, keyFile string) Option {
	return func(c *config) error {
		c.certFile, c.keyFile = certFile, keyFile
		return nil
	}
}

// WithClientCA makes the server require mutual TLS: a client must present a
// certificate signed by one of the CA certificates (PEM) in caFile, or its
// connection is refused and its calls fail with UNAVAILABLE without
// reaching the server. Needs WithTLS.
func WithClientCA(caFile string) Option {
	return func(c *config) error {
		if caFile == "" {
			return errors.New("WithClientCA: empty file name")
		}
		c.clientCAFile = caFile
		return nil
	}
}

// Server is a fake CouponRank server. Make it with NewServer or Start.
type Server struct {
	gs   *grpc.Server
	addr string
	done chan struct{}
	once sync.Once
	svc  *service
}

// EventCall is one RecordEvents call the server received.
type EventCall struct {
	// Request is a copy of the request.
	Request *couponrankv1.RecordEventsRequest
	// Deadline is the deadline the client sent; zero when it sent none.
	Deadline time.Time
	// Metadata are the call's request headers (gRPC metadata).
	Metadata metadata.MD
}

// EventCheck decides whether the fake records an event whose event_id it has
// not recorded yet: it returns "" to accept the event, or the detail of its
// rejection (in words starting with the field's name, as the real server's).
type EventCheck func(ev *couponrankv1.Event) string

// NewServer starts a fake server on 127.0.0.1, on a port the kernel picks
// (see Addr). The caller must Close it. Errors come from the options (a TLS
// file that cannot be read) or from listening.
func NewServer(opts ...Option) (*Server, error) {
	var cfg config
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("couponranktest: %w", err)
		}
	}
	var serverOpts []grpc.ServerOption
	if cfg.certFile != "" || cfg.keyFile != "" || cfg.clientCAFile != "" {
		tlsCfg, err := cfg.tlsConfig()
		if err != nil {
			return nil, fmt.Errorf("couponranktest: %w", err)
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("couponranktest: listen: %w", err)
	}
	s := &Server{gs: grpc.NewServer(serverOpts...), addr: lis.Addr().String(), done: make(chan struct{}),
		svc: &service{recorded: map[string]bool{}}}
	couponrankv1.RegisterCouponRankingServiceServer(s.gs, s.svc)
	go func() {
		defer close(s.done)
		_ = s.gs.Serve(lis)
	}()
	return s, nil
}

func (c *config) tlsConfig() (*tls.Config, error) {
	if c.certFile == "" {
		return nil, errors.New("WithClientCA needs WithTLS (the server's certificate and key)")
	}
	cert, err := tlsfiles.KeyPair("server certificate", c.certFile, c.keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.clientCAFile != "" {
		pool, err := tlsfiles.CertPool("client CA file", c.clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Start is NewServer for a test: it fails the test at once when the server
// cannot start, and closes the server when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Addr returns the server's address, "127.0.0.1:PORT": a target for
// couponrank.Dial or grpc.NewClient.
func (s *Server) Addr() string { return s.addr }

// Client returns a client of the server: couponrank.Dial(s.Addr(), opts...).
// For a TLS server, opts must include couponrank.WithTLS (and, for mutual
// TLS, couponrank.WithClientCertificate). The caller closes the client.
func (s *Server) Client(opts ...couponrank.Option) (*couponrank.Client, error) {
	return couponrank.Dial(s.addr, opts...)
}

// Close stops the server at once, closing its connections: calls in flight
// and later calls fail with UNAVAILABLE, as with a server that went away.
// Close may be called more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.gs.Stop()
		<-s.done
	})
}

// SetResponses makes RankCoupons answer with resps: the first call with the
// first, the next with the second, and so on, the last one answering every
// call after that (calls failed by FailNext do not use one up). A response
// without a request_id gets the request's. It replaces a handler set by
// SetHandler; with no resps the server gives the default answer again.
func (s *Server) SetResponses(resps ...*couponrankv1.RankCouponsResponse) {
	cp := make([]*couponrankv1.RankCouponsResponse, len(resps))
	for i, r := range resps {
		cp[i] = proto.Clone(r).(*couponrankv1.RankCouponsResponse)
	}
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	s.svc.responses, s.svc.answered, s.svc.handler = cp, 0, nil
}

// SetHandler makes h answer RankCoupons (nil: the default answer again). It
// replaces responses set by SetResponses. h runs concurrently when calls
// arrive concurrently.
func (s *Server) SetHandler(h Handler) {
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	s.svc.handler, s.svc.responses = h, nil
}

// FailNext makes the next n RankCoupons calls fail with err, typically a
// status error such as status.Error(codes.Unavailable, "restarting") (an
// error without a gRPC status reaches the client as UNKNOWN). Calls after
// those are answered as before. Calls to FailNext queue up: FailNext(2, a)
// then FailNext(1, b) fails three calls, with a, a, b.
func (s *Server) FailNext(n int, err error) {
	if err == nil {
		panic("couponranktest: FailNext with a nil error")
	}
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	for range n {
		s.svc.failures = append(s.svc.failures, err)
	}
}

// SetModelInfo sets GetModelInfo's answer (nil: an empty response).
func (s *Server) SetModelInfo(info *couponrankv1.GetModelInfoResponse) {
	if info != nil {
		info = proto.Clone(info).(*couponrankv1.GetModelInfoResponse)
	}
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	s.svc.modelInfo = info
}

// Calls returns the RankCoupons calls received so far, in the order they
// arrived, failed ones included.
func (s *Server) Calls() []Call {
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	return append([]Call(nil), s.svc.calls...)
}

// Requests returns the requests of the RankCoupons calls received so far, in
// the order they arrived.
func (s *Server) Requests() []*couponrankv1.RankCouponsRequest {
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	reqs := make([]*couponrankv1.RankCouponsRequest, len(s.svc.calls))
	for i, c := range s.svc.calls {
		reqs[i] = c.Request
	}
	return reqs
}

// FailNextEvents makes the next n RecordEvents calls fail with err (for
// example status.Error(codes.Unavailable, "restarting"), which the client
// retries, or codes.PermissionDenied), recording none of their events. Calls
// after those are answered as before. Like FailNext, calls queue up; the two
// queues are separate.
func (s *Server) FailNextEvents(n int, err error) {
	if err == nil {
		panic("couponranktest: FailNextEvents with a nil error")
	}
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	for range n {
		s.svc.eventFailures = append(s.svc.eventFailures, err)
	}
}

// SetEventCheck replaces CheckEvent, the check of the events the server has
// not recorded yet (nil: CheckEvent again). It runs with the server's lock
// held, one event at a time, so it must not call the Server's methods. A
// check that adds rules of your own can start with CheckEvent:
//
//	srv.SetEventCheck(func(ev *couponrankv1.Event) string {
//		if d := couponranktest.CheckEvent(ev); d != "" {
//			return d
//		}
//		if ev.GetRedemption().GetCouponId() == "c-expired" {
//			return "redemption.coupon_id: coupon c-expired has expired"
//		}
//		return ""
//	})
func (s *Server) SetEventCheck(check EventCheck) {
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	s.svc.eventCheck = check
}

// RecordedEvents returns copies of the events the server accepted, in the
// order it accepted them (duplicates and rejected events are not in it).
func (s *Server) RecordedEvents() []*couponrankv1.Event {
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	evs := make([]*couponrankv1.Event, len(s.svc.events))
	for i, ev := range s.svc.events {
		evs[i] = proto.Clone(ev).(*couponrankv1.Event)
	}
	return evs
}

// EventCalls returns the RecordEvents calls received so far, in the order
// they arrived, failed ones included.
func (s *Server) EventCalls() []EventCall {
	s.svc.mu.Lock()
	defer s.svc.mu.Unlock()
	return append([]EventCall(nil), s.svc.eventCalls...)
}

// CheckEvent is the fake's default EventCheck: the rules of the API that
// need no data. It rejects an event without event_id, user_id or event_time
// or without a kind; an id over 128 bytes; an impression without coupon_id,
// with a position below 1 or without a placement; a claim or redemption
// without coupon_id; a behaviour without type or item_id, or an order line
// without order_id; a negative amount. It does not check what needs the
// server's clock or data: event_time's window (5 minutes ahead, 30 days
// behind), coupons in the catalogue, currencies, a redemption's impression.
func CheckEvent(ev *couponrankv1.Event) string {
	if d := checkID("event_id", ev.GetEventId(), true); d != "" {
		return d
	}
	if d := checkID("user_id", ev.GetUserId(), true); d != "" {
		return d
	}
	if ev.GetEventTime() == nil {
		return "event_time: required"
	}
	if err := ev.GetEventTime().CheckValid(); err != nil {
		return "event_time: " + err.Error()
	}
	switch k := ev.GetKind().(type) {
	case *couponrankv1.Event_Impression:
		imp := k.Impression
		if d := checkID("impression.request_id", imp.GetRequestId(), false); d != "" {
			return d
		}
		if d := checkID("impression.coupon_id", imp.GetCouponId(), true); d != "" {
			return d
		}
		if imp.GetPosition() < 1 {
			return fmt.Sprintf("impression.position: must be at least 1, got %d", imp.GetPosition())
		}
		if imp.GetPlacement() == couponrankv1.Placement_PLACEMENT_UNSPECIFIED {
			return "impression.placement: required"
		}
	case *couponrankv1.Event_Claim:
		if d := checkID("claim.coupon_id", k.Claim.GetCouponId(), true); d != "" {
			return d
		}
		return checkID("claim.impression_event_id", k.Claim.GetImpressionEventId(), false)
	case *couponrankv1.Event_Redemption:
		r := k.Redemption
		if d := checkID("redemption.coupon_id", r.GetCouponId(), true); d != "" {
			return d
		}
		if d := checkID("redemption.order_id", r.GetOrderId(), false); d != "" {
			return d
		}
		if d := checkID("redemption.impression_event_id", r.GetImpressionEventId(), false); d != "" {
			return d
		}
		if d := checkAmount("redemption.discount", r.GetDiscount()); d != "" {
			return d
		}
		return checkAmount("redemption.order_total", r.GetOrderTotal())
	case *couponrankv1.Event_Behaviour:
		b := k.Behaviour
		if b.GetType() == couponrankv1.BehaviourType_BEHAVIOUR_TYPE_UNSPECIFIED {
			return "behaviour.type: required"
		}
		if d := checkID("behaviour.item_id", b.GetItemId(), true); d != "" {
			return d
		}
		order := b.GetType() == couponrankv1.BehaviourType_BEHAVIOUR_TYPE_ORDER
		if d := checkID("behaviour.order_id", b.GetOrderId(), order); d != "" {
			return d
		}
		return checkAmount("behaviour.amount", b.GetAmount())
	default:
		return "kind: one of impression, claim, redemption or behaviour is required"
	}
	return ""
}

func checkID(field, v string, required bool) string {
	switch {
	case v == "" && required:
		return field + ": required"
	case len(v) > 128:
		return fmt.Sprintf("%s: %d bytes, more than 128", field, len(v))
	case !utf8.ValidString(v):
		return field + ": not valid UTF-8"
	}
	return ""
}

func checkAmount(field string, m *couponrankv1.Money) string {
	if m.GetAmountMinor() < 0 {
		return fmt.Sprintf("%s: must not be negative, got %d", field, m.GetAmountMinor())
	}
	return ""
}

type service struct {
	couponrankv1.UnimplementedCouponRankingServiceServer

	mu        sync.Mutex
	handler   Handler
	responses []*couponrankv1.RankCouponsResponse
	answered  int // calls answered from responses
	failures  []error
	modelInfo *couponrankv1.GetModelInfoResponse
	calls     []Call

	eventFailures []error
	eventCheck    EventCheck
	eventCalls    []EventCall
	events        []*couponrankv1.Event // accepted, in order
	recorded      map[string]bool       // their ids
}

func (s *service) RankCoupons(ctx context.Context, req *couponrankv1.RankCouponsRequest) (*couponrankv1.RankCouponsResponse, error) {
	call := Call{Request: proto.Clone(req).(*couponrankv1.RankCouponsRequest)}
	call.Deadline, _ = ctx.Deadline()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		call.Metadata = md.Copy()
	}

	s.mu.Lock()
	s.calls = append(s.calls, call)
	n := len(s.calls)
	if len(s.failures) > 0 {
		err := s.failures[0]
		s.failures = s.failures[1:]
		s.mu.Unlock()
		return nil, err
	}
	h := s.handler
	var resp *couponrankv1.RankCouponsResponse
	if h == nil && len(s.responses) > 0 {
		resp = s.responses[min(s.answered, len(s.responses)-1)]
		s.answered++
	}
	s.mu.Unlock()

	if h != nil {
		return h(ctx, n, req)
	}
	if resp == nil {
		resp = &couponrankv1.RankCouponsResponse{Note: EmptyCatalogueNote}
	}
	resp = proto.Clone(resp).(*couponrankv1.RankCouponsResponse)
	if resp.GetRequestId() == "" {
		resp.RequestId = req.GetRequestId()
	}
	return resp, nil
}

func (s *service) GetModelInfo(context.Context, *couponrankv1.GetModelInfoRequest) (*couponrankv1.GetModelInfoResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modelInfo == nil {
		return &couponrankv1.GetModelInfoResponse{}, nil
	}
	return s.modelInfo, nil
}

func (s *service) RecordEvents(ctx context.Context, req *couponrankv1.RecordEventsRequest) (*couponrankv1.RecordEventsResponse, error) {
	call := EventCall{Request: proto.Clone(req).(*couponrankv1.RecordEventsRequest)}
	call.Deadline, _ = ctx.Deadline()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		call.Metadata = md.Copy()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.eventCalls = append(s.eventCalls, call)
	if len(s.eventFailures) > 0 {
		err := s.eventFailures[0]
		s.eventFailures = s.eventFailures[1:]
		return nil, err
	}
	switch n := len(req.GetEvents()); {
	case n == 0:
		return nil, status.Error(codes.InvalidArgument, "events: at least one event is required")
	case n > couponrank.MaxEventsPerCall:
		return nil, status.Errorf(codes.InvalidArgument, "events: %d events, more than the %d allowed in one call", n, couponrank.MaxEventsPerCall)
	}
	check := s.eventCheck
	if check == nil {
		check = CheckEvent
	}
	resp := &couponrankv1.RecordEventsResponse{Results: make([]*couponrankv1.EventResult, len(req.GetEvents()))}
	for i, ev := range req.GetEvents() {
		r := &couponrankv1.EventResult{EventId: ev.GetEventId()}
		resp.Results[i] = r
		if s.recorded[ev.GetEventId()] { // a retry, or the same event twice in the batch
			r.Status = couponrankv1.EventStatus_EVENT_STATUS_DUPLICATE
			continue
		}
		if d := check(ev); d != "" {
			r.Status, r.Detail = couponrankv1.EventStatus_EVENT_STATUS_REJECTED, d
			continue
		}
		r.Status = couponrankv1.EventStatus_EVENT_STATUS_ACCEPTED
		s.recorded[ev.GetEventId()] = true
		s.events = append(s.events, proto.Clone(ev).(*couponrankv1.Event))
	}
	return resp, nil
}
