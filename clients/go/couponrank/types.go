package couponrank

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"

	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// RankResult is the answer to RankCoupons in plain Go types.
type RankResult struct {
	// RequestID is the request's id, or the one the server assigned.
	RequestID string
	// Coupons are the ranked coupons, best first (Rank 1, 2, ...).
	Coupons []RankedCoupon
	// Ineligible are the candidates the user cannot use, with the reason.
	Ineligible []IneligibleCoupon
	// ModelVersion is the version of the model that scored the coupons.
	ModelVersion string
	// ColdStart is true when the user was unknown to the feature store.
	ColdStart bool
	// Degraded is true when a fallback produced the ranking; it is still
	// usable. DegradedReason and DegradedDetail say why.
	Degraded       bool
	DegradedReason couponrankv1.DegradedReason
	DegradedDetail string
	// Note says, in words for logs, why Coupons is empty (e.g. "no coupon is
	// active at 2026-12-02T10:00:00Z; ..."); it is empty whenever at least one
	// coupon is ranked. Not meant to be parsed: branch on Coupons and on the
	// Ineligible reasons instead.
	Note string
	// Attempts is the number of RPC attempts the call took (1 = no retry).
	// In RankOrEmpty's empty result: the attempts that failed (0 for a nil
	// request).
	Attempts int
	// Response is the raw protobuf response.
	Response *couponrankv1.RankCouponsResponse
}

// RankedCoupon is one coupon of a ranking.
type RankedCoupon struct {
	CouponID string
	Rank     int
	Score    float64
	// Reasons explain the score; set only when the request had Explain.
	Reasons []Reason
}

// Reason is one feature's contribution to a coupon's score.
type Reason struct {
	Feature      string
	Value        float64
	Contribution float64
}

// IneligibleCoupon is a candidate the user cannot use in this context.
type IneligibleCoupon struct {
	CouponID string
	Reason   couponrankv1.IneligibilityReason
	Detail   string
}

// CouponIDs returns the ids of the ranked coupons, best first.
func (r *RankResult) CouponIDs() []string {
	ids := make([]string, len(r.Coupons))
	for i, c := range r.Coupons {
		ids[i] = c.CouponID
	}
	return ids
}

func newRankResult(resp *couponrankv1.RankCouponsResponse) *RankResult {
	res := &RankResult{
		RequestID:      resp.GetRequestId(),
		ModelVersion:   resp.GetModelVersion(),
		ColdStart:      resp.GetColdStart(),
		Degraded:       resp.GetDegraded(),
		DegradedReason: resp.GetDegradedReason(),
		DegradedDetail: resp.GetDegradedDetail(),
		Note:           resp.GetNote(),
		Response:       resp,
	}
	res.Coupons = make([]RankedCoupon, 0, len(resp.GetRankedCoupons()))
	for _, rc := range resp.GetRankedCoupons() {
		c := RankedCoupon{CouponID: rc.GetCouponId(), Rank: int(rc.GetRank()), Score: rc.GetScore()}
		for _, r := range rc.GetReasons() {
			c.Reasons = append(c.Reasons, Reason{Feature: r.GetFeature(), Value: r.GetValue(), Contribution: r.GetContribution()})
		}
		res.Coupons = append(res.Coupons, c)
	}
	res.Ineligible = make([]IneligibleCoupon, 0, len(resp.GetIneligibleCoupons()))
	for _, ic := range resp.GetIneligibleCoupons() {
		res.Ineligible = append(res.Ineligible, IneligibleCoupon{CouponID: ic.GetCouponId(), Reason: ic.GetReason(), Detail: ic.GetDetail()})
	}
	return res
}

// Money returns a couponrankv1.Money of amountMinor minor units (cents for
// USD) of the ISO 4217 currency.
func Money(currencyCode string, amountMinor int64) *couponrankv1.Money {
	return &couponrankv1.Money{CurrencyCode: currencyCode, AmountMinor: amountMinor}
}

// Membership returns a couponrankv1.Membership for RequestContext.Membership:
// the user's membership as the caller knows it now (for example right after
// the user joined or moved up a tier), which the server then uses in place of
// the membership it has stored for the user, both for the coupons' audiences
// (INELIGIBILITY_REASON_NOT_IN_AUDIENCE) and for the model's features.
//
// tier is one of the server's tiers ("gold"), or "" for a user who is not a
// member: Membership("") says so explicitly, while leaving
// RequestContext.Membership nil lets the server use its stored membership.
// segmentIDs are the audience segments the user belongs to. The values are
// not checked here: the server rejects, with INVALID_ARGUMENT naming
// context.membership.tier or context.membership.segment_ids, a tier it does
// not declare, more than 100 segment ids, or an id that is empty or over 128
// bytes.
func Membership(tier string, segmentIDs ...string) *couponrankv1.Membership {
	return &couponrankv1.Membership{Tier: tier, SegmentIds: segmentIDs}
}

// ParsePlacement parses a placement given as its enum name
// ("PLACEMENT_CART"), without the prefix ("CART") or in lower case ("cart",
// "product_page", "member_centre"). The empty string is
// PLACEMENT_UNSPECIFIED.
func ParsePlacement(s string) (couponrankv1.Placement, error) {
	v, err := parseEnum(s, "PLACEMENT_", couponrankv1.Placement_value, "placement")
	return couponrankv1.Placement(v), err
}

// ParseBehaviourType parses a behaviour type given as its enum name
// ("BEHAVIOUR_TYPE_VIEW"), without the prefix ("VIEW") or in lower case
// ("view", "add_to_cart", "favourite", "order"). The empty string is
// BEHAVIOUR_TYPE_UNSPECIFIED.
func ParseBehaviourType(s string) (couponrankv1.BehaviourType, error) {
	v, err := parseEnum(s, "BEHAVIOUR_TYPE_", couponrankv1.BehaviourType_value, "behaviour type")
	return couponrankv1.BehaviourType(v), err
}

// parseEnum looks up an enum value by its name, with or without its prefix,
// in any case; "" is the zero (unspecified) value.
func parseEnum(s, prefix string, values map[string]int32, what string) (int32, error) {
	if s == "" {
		return 0, nil
	}
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, prefix) {
		name = prefix + name
	}
	v, ok := values[name]
	if !ok {
		return 0, fmt.Errorf("couponrank: unknown %s %q", what, s)
	}
	return v, nil
}

// CodeName returns the canonical name of a gRPC status code, as gRPC's other
// languages spell it: "UNAVAILABLE", "DEADLINE_EXCEEDED", ... (Go's
// codes.Code.String spells them "Unavailable", "DeadlineExceeded").
func CodeName(c codes.Code) string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE(%d)", uint32(c))
}

var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}
