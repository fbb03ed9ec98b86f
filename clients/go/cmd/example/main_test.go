package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/couponrank/couponrank/clients/go/couponranktest"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

func startServer(t *testing.T) (string, *couponranktest.Server) {
	srv := couponranktest.Start(t)
	srv.SetResponses(&couponrankv1.RankCouponsResponse{
		RequestId:     "srv-1",
		RankedCoupons: []*couponrankv1.RankedCoupon{{CouponId: "c1", Rank: 1, Score: 0.75}},
		ModelVersion:  "m1",
	})
	srv.SetModelInfo(&couponrankv1.GetModelInfoResponse{ModelVersion: "m1", FeatureNames: []string{"f1"}})
	return srv.Addr(), srv
}

func TestSingleRequest(t *testing.T) {
	addr, srv := startServer(t)
	var out, errb bytes.Buffer
	code := run([]string{"-addr", addr, "-user", "u1", "-placement", "cart", "-coupons", "c1, c2", "-cart-total", "1999", "-categories", "shoes",
		"-top-k", "3", "-explain", "-max-reasons", "4"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "c1") || !strings.Contains(out.String(), "model \"m1\"") {
		t.Errorf("output:\n%s", out.String())
	}
	req := srv.Requests()[0]
	if req.GetUserId() != "u1" || req.GetContext().GetPlacement() != couponrankv1.Placement_PLACEMENT_CART ||
		strings.Join(req.GetCandidateCouponIds(), "|") != "c1|c2" || req.GetContext().GetCartTotal().GetAmountMinor() != 1999 ||
		req.GetContext().GetCartTotal().GetCurrencyCode() != "USD" ||
		req.GetTopK() != 3 || !req.GetExplain() || req.GetMaxReasons() != 4 {
		t.Errorf("server got %v", req)
	}
}

func TestMembershipFlags(t *testing.T) {
	addr, srv := startServer(t)
	for i, args := range [][]string{
		{},                       // no membership: the server's stored one
		{"-membership-tier", ""}, // explicitly not a member
		{"-membership-tier", "gold", "-membership-segments", "s1, s2"},
		{"-membership-segments", "s1"}, // tier ""
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"-addr", addr, "-user", "u1", "-placement", "member_centre"}, args...), nil, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		req := srv.Requests()[i]
		if req.GetContext().GetPlacement() != couponrankv1.Placement_PLACEMENT_MEMBER_CENTRE {
			t.Errorf("%v: placement %v", args, req.GetContext().GetPlacement())
		}
		m := req.GetContext().GetMembership()
		got := "unset"
		if m != nil {
			got = m.GetTier() + "/" + strings.Join(m.GetSegmentIds(), "|")
		}
		if want := []string{"unset", "/", "gold/s1|s2", "/s1"}[i]; got != want {
			t.Errorf("%v: membership %s, want %s", args, got, want)
		}
	}
}

func TestSingleRequestNothingRanked(t *testing.T) {
	addr := couponranktest.Start(t).Addr() // nothing ranked, with a note
	var out, errb bytes.Buffer
	if code := run([]string{"-addr", addr, "-user", "u1"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if want := "nothing ranked: " + couponranktest.EmptyCatalogueNote + "\n"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

func TestScenarioFile(t *testing.T) {
	addr, _ := startServer(t)
	path := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(path, []byte(`[{"name":"a","user_id":"u1","placement":"PLACEMENT_HOME"},{"name":"b","user_id":"u2"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-addr", addr, "-scenarios", path}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `{"index":0,"name":"a","ok":true,"ranked":[{"coupon_id":"c1","rank":1,"score":0.75}]`) {
		t.Errorf("output:\n%s", out.String())
	}
	// Scenarios from stdin.
	out.Reset()
	if code := run([]string{"-addr", addr, "-scenarios", "-"}, strings.NewReader(`[{"user_id":"u3"}]`), &out, &errb); code != 0 {
		t.Fatalf("stdin: exit %d: %s", code, errb.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("stdin: %d lines", n)
	}
}

// -event-id-prefix goes on the event ids sent and comes off those printed;
// a second run without it records the same ids as new events.
func TestScenarioEventIDPrefix(t *testing.T) {
	addr, srv := startServer(t)
	events := `[{"name":"ev","events":[{"event_id":"e-1","user_id":"u1","event_time":"2026-11-01T12:00:00Z","kind":"claim","coupon_id":"c1"}]}]`
	want := `{"index":0,"name":"ev","ok":true,"results":[{"event_id":"e-1","status":"EVENT_STATUS_ACCEPTED","detail":""}]}` + "\n"
	for i, args := range [][]string{{"-event-id-prefix", "go/"}, {}} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"-addr", addr, "-scenarios", "-"}, args...), strings.NewReader(events), &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		if out.String() != want {
			t.Errorf("%v: output %s, want %s", args, out.String(), want)
		}
		if got := srv.EventCalls()[i].Request.GetEvents()[0].GetEventId(); got != []string{"go/e-1", "e-1"}[i] {
			t.Errorf("%v: server got event id %q", args, got)
		}
	}
	// A client error (an unknown kind) fails the run: exit 1, nothing sent.
	var out, errb bytes.Buffer
	if code := run([]string{"-addr", addr, "-scenarios", "-"}, strings.NewReader(`[{"events":[{"kind":"purchase"}]}]`), &out, &errb); code != 1 ||
		!strings.Contains(out.String(), `"error_code":"CLIENT_ERROR"`) {
		t.Errorf("unknown kind: exit %d, output %s", code, out.String())
	}
	if n := len(srv.EventCalls()); n != 2 {
		t.Errorf("%d RecordEvents calls, want 2", n)
	}
}

func TestScenarioErrorExitCode(t *testing.T) {
	// Nothing listens on this address: every scenario fails with UNAVAILABLE.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	path := filepath.Join(t.TempDir(), "s.json")
	if err := os.WriteFile(path, []byte(`[{"user_id":"u1"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"-addr", addr, "-attempts", "2", "-connect-timeout", "200ms", "-scenarios", path}, nil, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(out.String(), `"ok":false,"error_code":"UNAVAILABLE"`) {
		t.Errorf("output: %s", out.String())
	}
}

func TestModelInfoAndUsage(t *testing.T) {
	addr, _ := startServer(t)
	var out, errb bytes.Buffer
	if code := run([]string{"-addr", addr, "-model-info"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), `"m1"`) {
		t.Errorf("model info: exit %d, %s %s", code, out.String(), errb.String())
	}
	if code := run([]string{"-addr", addr}, nil, &out, &errb); code != 2 {
		t.Errorf("missing -user: exit %d, want 2", code)
	}
	if code := run([]string{"-attempts", "0", "-user", "u"}, nil, &out, &errb); code != 2 {
		t.Errorf("bad -attempts: exit %d, want 2", code)
	}
}
