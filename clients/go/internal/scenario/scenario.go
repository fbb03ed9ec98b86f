// Package scenario runs a JSON list of RankCoupons and RecordEvents
// scenarios and prints one JSON line per scenario. The Java client's Example
// (--scenarios) and the Python client's couponrank.client.scenario read and
// write the same format, so the same scenarios can be run from Python, Go and
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
// A scenario with "events" (a list, maybe empty) sends one RecordEvents call
// instead; only "name" and "deadline_ms" may go with it. Each event is an
// object of these optional keys (the fields of couponrank.v1.Event,
// flattened; see Event):
//
//	{"event_id": "e-1", "user_id": "u1", "event_time": "2026-11-01T12:00:00Z",
//	 "kind": "impression", "coupon_id": "c1", "request_id": "r-1", "position": 1,
//	 "placement": "home"}
//
// kind is "impression" (with coupon_id, request_id, position, placement),
// "claim" (coupon_id, impression_event_id), "redemption" (coupon_id,
// order_id, impression_event_id, discount_minor, order_total_minor,
// currency_code) or "behaviour" (behaviour_type: view, add_to_cart,
// favourite, order; item_id, order_id, amount_minor, currency_code); absent,
// the event has none. A Money field is sent when its *_minor key is present.
// A key of another kind, an unknown kind, placement or behaviour type, or a
// bad event_time is a CLIENT_ERROR line (nothing sent).
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
// An events scenario's success line has one result per event:
//
//	{"index":2,"name":"...","ok":true,
//	 "results":[{"event_id":"e-1","status":"EVENT_STATUS_ACCEPTED","detail":""}]}
//
// On an RPC error:
//
//	{"index":0,"name":"...","ok":false,"error_code":"UNAVAILABLE","error_message":"..."}
//
// A scenario that cannot be turned into a request (bad placement or
// request_time, a bad event) gets error_code "CLIENT_ERROR".
//
// A run may be given an event id prefix (Run's and RunAll's eventIDPrefix;
// the example's -event-id-prefix): it goes in front of every non-empty
// event_id and impression_event_id sent, and comes off the event ids
// answered, so that several runs of the same scenarios against one server
// (the contract tests run three languages) each record their own events and
// print the same lines.
package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
	"unicode"

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
	// Events, when not nil (empty included), makes this a RecordEvents
	// scenario: only Name and DeadlineMS go with it. Parse sets it from the
	// "events" key.
	Events []Event `json:"-"`
}

// Event is one event of an events scenario: the fields of
// couponrank.v1.Event, flattened. nil is an absent (or null) key.
type Event struct {
	EventID           *string `json:"event_id"`
	UserID            *string `json:"user_id"`
	EventTime         *string `json:"event_time"`
	Kind              *string `json:"kind"`
	CouponID          *string `json:"coupon_id"`
	RequestID         *string `json:"request_id"`
	Placement         *string `json:"placement"`
	ImpressionEventID *string `json:"impression_event_id"`
	OrderID           *string `json:"order_id"`
	CurrencyCode      *string `json:"currency_code"`
	BehaviourType     *string `json:"behaviour_type"`
	ItemID            *string `json:"item_id"`
	Position          *int64  `json:"position"`
	DiscountMinor     *int64  `json:"discount_minor"`
	OrderTotalMinor   *int64  `json:"order_total_minor"`
	AmountMinor       *int64  `json:"amount_minor"`
}

// The JSON type a key takes.
type keyType int

const (
	stringKey keyType = iota
	listKey           // a list of strings
	intKey
	boolKey
	eventsKey
)

var scenarioKeys = map[string]keyType{
	"name": stringKey, "request_id": stringKey, "user_id": stringKey, "placement": stringKey,
	"currency_code": stringKey, "request_time": stringKey, "membership_tier": stringKey,
	"candidate_coupon_ids": listKey, "cart_categories": listKey, "cart_brands": listKey,
	"cart_merchant_ids": listKey, "membership_segment_ids": listKey,
	"cart_total_minor": intKey, "top_k": intKey, "max_reasons": intKey, "deadline_ms": intKey,
	"explain": boolKey, "events": eventsKey,
}

// withEvents are the keys that may go with "events".
var withEvents = map[string]bool{"events": true, "name": true, "deadline_ms": true}

var eventKeys = map[string]keyType{
	"event_id": stringKey, "user_id": stringKey, "event_time": stringKey, "kind": stringKey,
	"coupon_id": stringKey, "request_id": stringKey, "placement": stringKey,
	"impression_event_id": stringKey, "order_id": stringKey, "currency_code": stringKey,
	"behaviour_type": stringKey, "item_id": stringKey,
	"position": intKey, "discount_minor": intKey, "order_total_minor": intKey, "amount_minor": intKey,
}

// eventCommon are the keys of every event; eventKinds the keys each kind
// takes besides them.
var (
	eventCommon = []string{"event_id", "user_id", "event_time", "kind"}
	eventKinds  = map[string][]string{
		"impression": {"coupon_id", "request_id", "position", "placement"},
		"claim":      {"coupon_id", "impression_event_id"},
		"redemption": {"coupon_id", "order_id", "impression_event_id", "discount_minor", "order_total_minor", "currency_code"},
		"behaviour":  {"behaviour_type", "item_id", "order_id", "amount_minor", "currency_code"},
	}
)

// Parse reads a JSON array of scenarios. Unknown keys are an error, so a typo
// does not silently drop a field, and so is a value of the wrong type; null is
// the same as an absent key. The messages are the Python runner's
// ("scenarios[0]: unknown key \"topk\"", "scenarios[1].top_k: want an
// integer", "scenarios[2].events[0].position: want an integer"). A bad
// placement, request_time or event is not an error here: that scenario reports
// CLIENT_ERROR when run.
func Parse(r io.Reader) ([]Scenario, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var root json.RawMessage
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	var list []json.RawMessage
	if !isJSON(root, '[') {
		return nil, fmt.Errorf("scenarios: want a JSON array of objects")
	}
	if err := json.Unmarshal(root, &list); err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	out := make([]Scenario, 0, len(list))
	for i, raw := range list {
		s, err := parseScenario(raw, fmt.Sprintf("scenarios[%d]", i))
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func parseScenario(raw json.RawMessage, where string) (Scenario, error) {
	var s Scenario
	keys, values, ok := object(raw)
	if !ok {
		return s, fmt.Errorf("%s: not an object", where)
	}
	if k := firstUnknown(keys, scenarioKeys); k != "" {
		return s, fmt.Errorf("%s: unknown key %q", where, k)
	}
	keys = dropNulls(keys, values)
	if _, ok := values["events"]; ok {
		events, err := parseEvents(values["events"], where+".events")
		if err != nil {
			return s, err
		}
		var extra []string
		for _, k := range keys {
			if !withEvents[k] {
				extra = append(extra, k)
			}
		}
		if len(extra) > 0 {
			sort.Strings(extra)
			return s, fmt.Errorf("%s.%s: not used with \"events\"", where, extra[0])
		}
		s.Events = events
	}
	for _, k := range keys {
		if err := checkType(values[k], scenarioKeys[k]); err != nil {
			return s, fmt.Errorf("%s.%s: %w", where, k, err)
		}
	}
	// The types are right: the decoder fills the fields (events has none).
	if err := fill(values, &s); err != nil {
		return s, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}

func parseEvents(raw json.RawMessage, where string) ([]Event, error) {
	var list []json.RawMessage
	if !isJSON(raw, '[') || json.Unmarshal(raw, &list) != nil {
		return nil, fmt.Errorf("%s: want a list of objects", where)
	}
	out := make([]Event, 0, len(list))
	for j, e := range list {
		at := fmt.Sprintf("%s[%d]", where, j)
		keys, values, ok := object(e)
		if !ok {
			return nil, fmt.Errorf("%s: not an object", at)
		}
		if k := firstUnknown(keys, eventKeys); k != "" {
			return nil, fmt.Errorf("%s: unknown key %q", at, k)
		}
		for _, k := range dropNulls(keys, values) {
			if err := checkType(values[k], eventKeys[k]); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", at, k, err)
			}
		}
		var ev Event
		if err := fill(values, &ev); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// isJSON says whether a JSON value starts with c ('[': an array, '{': an
// object).
func isJSON(raw json.RawMessage, c byte) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == c
}

// object returns a JSON object's keys in document order (a repeated key once,
// where it first appears) and their values (the last one of a repeated key),
// or ok false when raw is not an object.
func object(raw json.RawMessage) (keys []string, values map[string]json.RawMessage, ok bool) {
	if !isJSON(raw, '{') {
		return nil, nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, nil, false
	}
	values = map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, false
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, false
		}
		if _, seen := values[k]; !seen {
			keys = append(keys, k)
		}
		values[k] = v
	}
	return keys, values, true
}

// firstUnknown returns the first, in sorted order, of keys not in known; ""
// when every key is known.
func firstUnknown(keys []string, known map[string]keyType) string {
	var unknown []string
	for _, k := range keys {
		if _, ok := known[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return ""
	}
	sort.Strings(unknown)
	return unknown[0]
}

// dropNulls removes the keys whose value is null, from keys and values.
func dropNulls(keys []string, values map[string]json.RawMessage) []string {
	kept := keys[:0:0]
	for _, k := range keys {
		if string(bytes.TrimSpace(values[k])) == "null" {
			delete(values, k)
			continue
		}
		kept = append(kept, k)
	}
	return kept
}

// fill decodes an object's values (nulls dropped, types checked) into v.
func fill(values map[string]json.RawMessage, v any) error {
	data, err := json.Marshal(values)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// checkType says what a value of a key of type t should have been, or nil.
func checkType(raw json.RawMessage, t keyType) error {
	raw = bytes.TrimSpace(raw)
	switch t {
	case stringKey:
		if !isJSON(raw, '"') {
			return fmt.Errorf("want a string")
		}
	case listKey:
		var list []json.RawMessage
		if !isJSON(raw, '[') || json.Unmarshal(raw, &list) != nil {
			return fmt.Errorf("want a list of strings")
		}
		for _, x := range list {
			if !isJSON(x, '"') {
				return fmt.Errorf("want a list of strings")
			}
		}
	case intKey:
		// A JSON integer, as Python reads one: no fraction, no exponent.
		if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') || bytes.ContainsAny(raw, ".eE") {
			return fmt.Errorf("want an integer")
		}
	case boolKey:
		if s := string(raw); s != "true" && s != "false" {
			return fmt.Errorf("want true or false")
		}
	}
	return nil
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

// EventsRequest builds the RecordEvents request of an events scenario; an
// error names the event ("events[2].kind: unknown kind 'purchase' ...").
// eventIDPrefix goes in front of every non-empty event_id and
// impression_event_id.
func (s *Scenario) EventsRequest(eventIDPrefix string) (*couponrankv1.RecordEventsRequest, error) {
	events := make([]*couponrankv1.Event, 0, len(s.Events))
	for j := range s.Events {
		ev, err := s.Events[j].Proto(eventIDPrefix)
		if err != nil {
			return nil, fmt.Errorf("events[%d].%w", j, err)
		}
		events = append(events, ev)
	}
	return &couponrankv1.RecordEventsRequest{Events: events}, nil
}

// keys returns the keys present in the event, sorted.
func (e *Event) keys() []string {
	var out []string
	for k, set := range map[string]bool{
		"event_id": e.EventID != nil, "user_id": e.UserID != nil, "event_time": e.EventTime != nil,
		"kind": e.Kind != nil, "coupon_id": e.CouponID != nil, "request_id": e.RequestID != nil,
		"placement": e.Placement != nil, "impression_event_id": e.ImpressionEventID != nil,
		"order_id": e.OrderID != nil, "currency_code": e.CurrencyCode != nil,
		"behaviour_type": e.BehaviourType != nil, "item_id": e.ItemID != nil,
		"position": e.Position != nil, "discount_minor": e.DiscountMinor != nil,
		"order_total_minor": e.OrderTotalMinor != nil, "amount_minor": e.AmountMinor != nil,
	} {
		if set {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Proto returns the couponrank.v1.Event of the event, eventIDPrefix in front
// of its non-empty event_id and impression_event_id. Errors (the Python
// runner's words): an unknown kind, placement or behaviour type, a key of
// another kind (or any kind's key on an event without one), a bad
// event_time.
func (e *Event) Proto(eventIDPrefix string) (*couponrankv1.Event, error) {
	kind := str(e.Kind)
	if _, ok := eventKinds[kind]; e.Kind != nil && !ok {
		return nil, fmt.Errorf("kind: unknown kind %s (impression, claim, redemption or behaviour)", pyRepr(kind))
	}
	allowed := map[string]bool{}
	for _, k := range append(append([]string{}, eventCommon...), eventKinds[kind]...) {
		allowed[k] = true
	}
	for _, k := range e.keys() {
		if !allowed[k] {
			what := "an event without a kind"
			if e.Kind != nil {
				what = kind + " events"
			}
			return nil, fmt.Errorf("%s: not a field of %s", k, what)
		}
	}
	ev := &couponrankv1.Event{EventId: prefixed(eventIDPrefix, str(e.EventID)), UserId: str(e.UserID)}
	if at := str(e.EventTime); at != "" {
		t, err := parseEventTime(at)
		if err != nil {
			return nil, fmt.Errorf("event_time: %w", err)
		}
		ev.EventTime = timestamppb.New(t)
	}
	money := func(minor *int64) *couponrankv1.Money {
		if minor == nil {
			return nil
		}
		return &couponrankv1.Money{CurrencyCode: str(e.CurrencyCode), AmountMinor: *minor}
	}
	switch kind {
	case "impression":
		placement, err := couponrank.ParsePlacement(str(e.Placement))
		if err != nil {
			return nil, fmt.Errorf("placement: unknown placement %s", pyRepr(str(e.Placement)))
		}
		position := int64(0)
		if e.Position != nil {
			position = *e.Position
		}
		if position < math.MinInt32 || position > math.MaxInt32 {
			return nil, fmt.Errorf("position: %d is out of range", position)
		}
		ev.Kind = &couponrankv1.Event_Impression{Impression: &couponrankv1.ImpressionEvent{
			RequestId: str(e.RequestID), CouponId: str(e.CouponID), Position: int32(position), Placement: placement,
		}}
	case "claim": // with no field still a claim
		ev.Kind = &couponrankv1.Event_Claim{Claim: &couponrankv1.ClaimEvent{
			CouponId: str(e.CouponID), ImpressionEventId: prefixed(eventIDPrefix, str(e.ImpressionEventID)),
		}}
	case "redemption":
		ev.Kind = &couponrankv1.Event_Redemption{Redemption: &couponrankv1.RedemptionEvent{
			CouponId: str(e.CouponID), OrderId: str(e.OrderID),
			ImpressionEventId: prefixed(eventIDPrefix, str(e.ImpressionEventID)),
			Discount:          money(e.DiscountMinor), OrderTotal: money(e.OrderTotalMinor),
		}}
	case "behaviour":
		typ, err := couponrank.ParseBehaviourType(str(e.BehaviourType))
		if err != nil {
			return nil, fmt.Errorf("behaviour_type: unknown behaviour type %s", pyRepr(str(e.BehaviourType)))
		}
		ev.Kind = &couponrankv1.Event_Behaviour{Behaviour: &couponrankv1.BehaviourEvent{
			Type: typ, ItemId: str(e.ItemID), OrderId: str(e.OrderID), Amount: money(e.AmountMinor),
		}}
	}
	return ev, nil
}

// parseEventTime parses an RFC 3339 time; the errors read as the Python
// runner's ("'2026-07-01T10:00:00' has no time zone (want RFC 3339)").
func parseEventTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02"} {
		if _, err := time.Parse(layout, s); err == nil {
			return time.Time{}, fmt.Errorf("%s has no time zone (want RFC 3339)", pyRepr(s))
		}
	}
	return time.Time{}, fmt.Errorf("Invalid isoformat string: %s", pyRepr(s))
}

// prefixed puts prefix in front of a non-empty id; an empty one stays empty
// (the server rejects it).
func prefixed(prefix, id string) string {
	if id == "" {
		return id
	}
	return prefix + id
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// pyRepr quotes s as Python's repr does ('view', "it's"), so that the
// messages read as the Python runner's.
func pyRepr(s string) string {
	q := '\''
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteRune(q)
	for _, r := range s {
		switch {
		case r == '\\' || r == q:
			b.WriteRune('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteRune(q)
	return b.String()
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
	Note           *string      `json:"note,omitempty"`   // set ("" included) on success lines only
	Results        []EventLine  `json:"results,omitzero"` // events scenarios' success lines
	ErrorCode      string       `json:"error_code,omitempty"`
	ErrorMessage   *string      `json:"error_message,omitempty"`
}

// EventLine is the result of one event of an events scenario's output line:
// its event_id (the run's prefix taken off), status (the enum's name,
// "EVENT_STATUS_ACCEPTED"; a number unknown to this client as that number)
// and detail ("" when none).
type EventLine struct {
	EventID string `json:"event_id"`
	Status  string `json:"status"`
	Detail  string `json:"detail"`
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

// Run sends one scenario and returns its output line. eventIDPrefix goes in
// front of the event ids an events scenario sends and comes off those
// answered (see the package doc); "" for none.
func Run(ctx context.Context, c *couponrank.Client, index int, s Scenario, eventIDPrefix string) Result {
	out := Result{Index: index, Name: s.Name}
	clientError := func(err error) Result {
		msg := err.Error()
		out.ErrorCode, out.ErrorMessage = "CLIENT_ERROR", &msg
		return out
	}
	rpcError := func(err error) Result {
		st := status.Convert(err)
		msg := st.Message()
		out.ErrorCode, out.ErrorMessage = couponrank.CodeName(st.Code()), &msg
		return out
	}
	var (
		req    *couponrankv1.RankCouponsRequest
		events *couponrankv1.RecordEventsRequest
		err    error
	)
	if s.Events != nil {
		events, err = s.EventsRequest(eventIDPrefix)
	} else {
		req, err = s.Request()
	}
	if err != nil {
		return clientError(err)
	}
	if s.DeadlineMS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(s.DeadlineMS)*time.Millisecond)
		defer cancel()
	}
	if events != nil {
		results, err := c.RecordEvents(ctx, events.GetEvents())
		if err != nil {
			return rpcError(err)
		}
		out.OK, out.Results = true, eventLines(results, eventIDPrefix)
		return out
	}
	res, err := c.RankCoupons(ctx, req)
	if err != nil {
		return rpcError(err)
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

// eventLines returns the results of an events scenario's line: each event id
// without eventIDPrefix (when it starts with it), the status by its enum name.
func eventLines(results []couponrank.EventResult, eventIDPrefix string) []EventLine {
	out := make([]EventLine, 0, len(results))
	for _, r := range results {
		out = append(out, EventLine{EventID: strings.TrimPrefix(r.EventID, eventIDPrefix), Status: r.Status.String(), Detail: r.Detail})
	}
	return out
}

// RunAll runs the scenarios in order and writes one JSON line each to w. It
// returns the number of scenarios that failed. eventIDPrefix: see Run.
func RunAll(ctx context.Context, c *couponrank.Client, scenarios []Scenario, w io.Writer, eventIDPrefix string) (int, error) {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	failed := 0
	for i, s := range scenarios {
		res := Run(ctx, c, i, s, eventIDPrefix)
		if !res.OK {
			failed++
		}
		if err := enc.Encode(res); err != nil {
			return failed, err
		}
	}
	return failed, nil
}
