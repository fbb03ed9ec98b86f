// Package scenario runs a JSON list of RankCoupons scenarios and prints one
// JSON line per scenario. The Java client's Example (--scenarios) reads and
// writes the same format, so the same scenarios can be run from Python, Go and
// Java and the outputs compared (compare parsed JSON, not text: float
// formatting differs between languages).
//
// Input: a JSON array of objects; every key is optional except user_id:
//
//	{"name": "cart-known-user", "request_id": "r-1", "user_id": "u1",
//	 "candidate_coupon_ids": ["c1", "c2"], "placement": "PLACEMENT_CART",
//	 "cart_total_minor": 4599, "currency_code": "USD",
//	 "cart_categories": ["shoes"], "cart_brands": [], "cart_merchant_ids": [],
//	 "request_time": "2026-11-01T12:00:00Z", "top_k": 5, "explain": false,
//	 "max_reasons": 3, "deadline_ms": 300,
//	 "membership_tier": "gold", "membership_segment_ids": ["newsletter"]}
//
// placement accepts "PLACEMENT_CART", "CART" or "cart". The cart total is sent
// when cart_total_minor or currency_code is present. The request's
// context.membership is set when membership_tier or membership_segment_ids is
// present ("membership_tier": "" alone: explicitly not a member); without
// both the server uses the membership it has stored. null is the same as an
// absent key. deadline_ms 0 or absent means the client's default timeout.
//
// Output, one line per scenario, in input order. On success:
//
//	{"index":0,"name":"...","ok":true,
//	 "ranked":[{"coupon_id":"c1","rank":1,"score":0.42}],
//	 "ineligible":[{"coupon_id":"c2","reason":"INELIGIBILITY_REASON_EXPIRED"}],
//	 "model_version":"...","cold_start":false,"degraded":false,
//	 "degraded_reason":"DEGRADED_REASON_UNSPECIFIED","note":""}
//
// Ranked entries carry "reasons":[{"feature","value","contribution"}] when the
// scenario asked for explain. "note" is the response's note, always present on
// a success line: "" when at least one coupon is ranked, else why none is
// (free text for people; compare it as a string, don't parse it). NaN and
// infinite numbers are written as null.
// On an RPC error:
//
//	{"index":0,"name":"...","ok":false,"error_code":"UNAVAILABLE","error_message":"..."}
//
// A scenario that cannot be turned into a request (bad placement or
// request_time) gets error_code "CLIENT_ERROR".
package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// Scenario is one entry of the input file.
type Scenario struct {
	Name               string   `json:"name"`
	RequestID          string   `json:"request_id"`
	UserID             string   `json:"user_id"`
	CandidateCouponIDs []string `json:"candidate_coupon_ids"`
	Placement          string   `json:"placement"`
	CartTotalMinor     *int64   `json:"cart_total_minor"`
	CurrencyCode       *string  `json:"currency_code"`
	CartCategories     []string `json:"cart_categories"`
	CartBrands         []string `json:"cart_brands"`
	CartMerchantIDs    []string `json:"cart_merchant_ids"`
	RequestTime        string   `json:"request_time"`
	TopK               int32    `json:"top_k"`
	Explain            bool     `json:"explain"`
	MaxReasons         int32    `json:"max_reasons"`
	DeadlineMS         int64    `json:"deadline_ms"`
	// MembershipTier and MembershipSegmentIDs are nil when absent (or null);
	// the request carries a membership when either is not nil.
	MembershipTier       *string  `json:"membership_tier"`
	MembershipSegmentIDs []string `json:"membership_segment_ids"`
}

// Parse reads a JSON array of scenarios. Unknown keys are an error, so a typo
// does not silently drop a field.
func Parse(r io.Reader) ([]Scenario, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var out []Scenario
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	return out, nil
}

// Request builds the RankCoupons request of a scenario.
func (s *Scenario) Request() (*couponrankv1.RankCouponsRequest, error) {
	placement, err := couponrank.ParsePlacement(s.Placement)
	if err != nil {
		return nil, err
	}
	rc := &couponrankv1.RequestContext{
		Placement:       placement,
		CartCategories:  s.CartCategories,
		CartBrands:      s.CartBrands,
		CartMerchantIds: s.CartMerchantIDs,
	}
	if s.CartTotalMinor != nil || s.CurrencyCode != nil {
		m := &couponrankv1.Money{}
		if s.CartTotalMinor != nil {
			m.AmountMinor = *s.CartTotalMinor
		}
		if s.CurrencyCode != nil {
			m.CurrencyCode = *s.CurrencyCode
		}
		rc.CartTotal = m
	}
	if s.MembershipTier != nil || s.MembershipSegmentIDs != nil {
		m := &couponrankv1.Membership{SegmentIds: s.MembershipSegmentIDs}
		if s.MembershipTier != nil {
			m.Tier = *s.MembershipTier
		}
		rc.Membership = m
	}
	if s.RequestTime != "" {
		t, err := time.Parse(time.RFC3339Nano, s.RequestTime)
		if err != nil {
			return nil, fmt.Errorf("request_time: %w", err)
		}
		rc.RequestTime = timestamppb.New(t)
	}
	return &couponrankv1.RankCouponsRequest{
		RequestId:          s.RequestID,
		UserId:             s.UserID,
		CandidateCouponIds: s.CandidateCouponIDs,
		Context:            rc,
		TopK:               s.TopK,
		Explain:            s.Explain,
		MaxReasons:         s.MaxReasons,
	}, nil
}

// Number is a float64 written as null when it is NaN or infinite (JSON has no
// such values).
type Number float64

// MarshalJSON implements json.Marshaler.
func (n Number) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// Result is one output line.
type Result struct {
	Index          int          `json:"index"`
	Name           string       `json:"name"`
	OK             bool         `json:"ok"`
	Ranked         []Ranked     `json:"ranked,omitzero"`
	Ineligible     []Ineligible `json:"ineligible,omitzero"`
	ModelVersion   *string      `json:"model_version,omitempty"`
	ColdStart      *bool        `json:"cold_start,omitempty"`
	Degraded       *bool        `json:"degraded,omitempty"`
	DegradedReason string       `json:"degraded_reason,omitempty"`
	Note           *string      `json:"note,omitempty"` // set ("" included) on success lines only
	ErrorCode      string       `json:"error_code,omitempty"`
	ErrorMessage   *string      `json:"error_message,omitempty"`
}

// Ranked is one ranked coupon of an output line.
type Ranked struct {
	CouponID string   `json:"coupon_id"`
	Rank     int      `json:"rank"`
	Score    Number   `json:"score"`
	Reasons  []Reason `json:"reasons,omitzero"`
}

// Reason is one feature contribution of an output line.
type Reason struct {
	Feature      string `json:"feature"`
	Value        Number `json:"value"`
	Contribution Number `json:"contribution"`
}

// Ineligible is one ineligible coupon of an output line.
type Ineligible struct {
	CouponID string `json:"coupon_id"`
	Reason   string `json:"reason"`
}

// Run sends one scenario and returns its output line.
func Run(ctx context.Context, c *couponrank.Client, index int, s Scenario) Result {
	out := Result{Index: index, Name: s.Name}
	req, err := s.Request()
	if err != nil {
		msg := err.Error()
		out.ErrorCode, out.ErrorMessage = "CLIENT_ERROR", &msg
		return out
	}
	if s.DeadlineMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(s.DeadlineMS)*time.Millisecond)
		defer cancel()
	}
	res, err := c.RankCoupons(ctx, req)
	if err != nil {
		st := status.Convert(err)
		msg := st.Message()
		out.ErrorCode, out.ErrorMessage = couponrank.CodeName(st.Code()), &msg
		return out
	}
	out.OK = true
	out.Ranked = make([]Ranked, 0, len(res.Coupons))
	for _, rc := range res.Coupons {
		r := Ranked{CouponID: rc.CouponID, Rank: rc.Rank, Score: Number(rc.Score)}
		if s.Explain {
			r.Reasons = make([]Reason, 0, len(rc.Reasons))
			for _, x := range rc.Reasons {
				r.Reasons = append(r.Reasons, Reason{Feature: x.Feature, Value: Number(x.Value), Contribution: Number(x.Contribution)})
			}
		}
		out.Ranked = append(out.Ranked, r)
	}
	out.Ineligible = make([]Ineligible, 0, len(res.Ineligible))
	for _, ic := range res.Ineligible {
		out.Ineligible = append(out.Ineligible, Ineligible{CouponID: ic.CouponID, Reason: ic.Reason.String()})
	}
	out.ModelVersion, out.ColdStart, out.Degraded = &res.ModelVersion, &res.ColdStart, &res.Degraded
	out.DegradedReason = res.DegradedReason.String()
	out.Note = &res.Note
	return out
}

// RunAll runs the scenarios in order and writes one JSON line each to w. It
// returns the number of scenarios that failed.
func RunAll(ctx context.Context, c *couponrank.Client, scenarios []Scenario, w io.Writer) (int, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	failed := 0
	for i, s := range scenarios {
		res := Run(ctx, c, i, s)
		if !res.OK {
			failed++
		}
		if err := enc.Encode(res); err != nil {
			return failed, err
		}
	}
	return failed, nil
}
