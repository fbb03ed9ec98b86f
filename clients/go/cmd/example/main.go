// Command example ranks coupons for one user with the CouponRank Go client.
// Copy it into a checkout service as a starting point.
//
// One request, printed for people (or as one JSON line with -json):
//
//	go run ./cmd/example -addr localhost:50051 -user u-123 -placement checkout \
//	    -coupons c1,c2,c3 -cart-total 4599 -currency USD -categories shoes -top-k 5 -explain
//
// Scenario mode, for cross-language contract tests: reads a JSON list of
// scenarios (RankCoupons or RecordEvents calls; see internal/scenario for the
// format) from a file, or stdin with "-", and prints one JSON line per
// scenario. -event-id-prefix goes in front of every event id sent (and comes
// off those answered), so that repeated runs record new events:
//
//	go run ./cmd/example -addr localhost:50051 -scenarios scenarios.json [-event-id-prefix go/]
//
// The model the server has loaded:
//
//	go run ./cmd/example -addr localhost:50051 -model-info
//
// Exit status: 0 when every call succeeded, 1 when a call failed, 2 on bad
// usage.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
	"github.com/couponrank/couponrank/clients/go/internal/scenario"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "localhost:50051", "CouponRank server address (gRPC target)")
	user := fs.String("user", "", "user id to rank coupons for (required unless -scenarios or -model-info)")
	placement := fs.String("placement", "checkout", "placement: home, product_page, cart, checkout, order_confirmation, campaign, member_centre (or PLACEMENT_*)")
	coupons := fs.String("coupons", "", "comma-separated candidate coupon ids (empty: every active coupon)")
	cartTotal := fs.Int64("cart-total", -1, "cart total in minor units, e.g. cents (-1: leave unset)")
	currency := fs.String("currency", "USD", "ISO 4217 currency of -cart-total")
	categories := fs.String("categories", "", "comma-separated categories in the cart")
	topK := fs.Int("top-k", 0, "maximum coupons to return (0: server default)")
	explain := fs.Bool("explain", false, "ask for per-feature score contributions")
	membershipTier := fs.String("membership-tier", "", "send the user's membership: this tier (\"\": not a member) in place of the server's stored one (flag absent: the server's)")
	membershipSegments := fs.String("membership-segments", "", "comma-separated audience segment ids of the user; sends a membership (tier \"\" unless -membership-tier)")
	maxReasons := fs.Int("max-reasons", 0, "with -explain: contributions per coupon, 1..50 (0: server default, 10 unless configured)")
	timeout := fs.Duration("timeout", couponrank.DefaultTimeout, "deadline of each call, retries included")
	connectTimeout := fs.Duration("connect-timeout", 5*time.Second, "wait this long for the connection before the first call, so start-up costs stay out of call deadlines (0: don't wait)")
	attempts := fs.Int("attempts", couponrank.DefaultMaxAttempts, "maximum attempts per call (retries on UNAVAILABLE only)")
	warmup := fs.Bool("warmup", true, "with -scenarios: send one GetModelInfo first (result ignored) so connection costs stay out of the first scenario's deadline")
	asJSON := fs.Bool("json", false, "print the single result as one scenario-format JSON line")
	scenarios := fs.String("scenarios", "", "run the JSON scenarios in this file ('-': stdin), one JSON line each")
	eventIDPrefix := fs.String("event-id-prefix", "", "with -scenarios: put this in front of every event id sent (and take it off those answered), so that repeated runs record new events")
	modelInfo := fs.Bool("model-info", false, "print the loaded model's description and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}

	client, err := couponrank.Dial(*addr, couponrank.WithTimeout(*timeout), couponrank.WithMaxAttempts(*attempts))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer client.Close()
	ctx := context.Background()
	if *connectTimeout > 0 {
		wctx, cancel := context.WithTimeout(ctx, *connectTimeout)
		// Not ready in time (server down): the calls below report UNAVAILABLE.
		_ = client.WaitForReady(wctx)
		cancel()
	}

	switch {
	case *modelInfo:
		info, err := client.GetModelInfo(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "GetModelInfo failed: %s: %s\n", couponrank.CodeName(status.Code(err)), status.Convert(err).Message())
			return 1
		}
		fmt.Fprintln(stdout, protojson.Format(info))
		return 0

	case *scenarios != "":
		var in io.Reader = stdin
		if *scenarios != "-" {
			f, err := os.Open(*scenarios)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
			defer f.Close()
			in = f
		}
		list, err := scenario.Parse(in)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if *warmup {
			// Warm-up only: a failure here shows again in the scenarios.
			_, _ = client.GetModelInfo(ctx)
		}
		failed, err := scenario.RunAll(ctx, client, list, stdout, *eventIDPrefix)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if failed > 0 {
			return 1
		}
		return 0
	}

	if *user == "" {
		fmt.Fprintln(stderr, "-user is required")
		fs.Usage()
		return 2
	}
	s := scenario.Scenario{
		UserID:             *user,
		CandidateCouponIDs: splitList(*coupons),
		Placement:          *placement,
		CartCategories:     splitList(*categories),
		TopK:               int32(*topK),
		Explain:            *explain,
		MaxReasons:         int32(*maxReasons),
	}
	if *cartTotal >= 0 {
		s.CartTotalMinor, s.CurrencyCode = cartTotal, currency
	}
	fs.Visit(func(f *flag.Flag) { // given, even empty: a membership is sent
		switch f.Name {
		case "membership-tier":
			s.MembershipTier = membershipTier
		case "membership-segments":
			s.MembershipSegmentIDs = append([]string{}, splitList(*membershipSegments)...)
		}
	})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		res := scenario.Run(ctx, client, 0, s, "")
		if err := enc.Encode(res); err != nil || !res.OK {
			return 1
		}
		return 0
	}

	req, err := s.Request()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	start := time.Now()
	res, err := client.RankCoupons(ctx, req)
	elapsed := time.Since(start)
	if err != nil {
		// A checkout page would show no coupon here and carry on.
		fmt.Fprintf(stderr, "RankCoupons failed after %v: %s: %s\n", elapsed.Round(time.Millisecond),
			couponrank.CodeName(status.Code(err)), status.Convert(err).Message())
		return 1
	}
	printResult(stdout, req, res, elapsed)
	return 0
}

func printResult(w io.Writer, req *couponrankv1.RankCouponsRequest, res *couponrank.RankResult, elapsed time.Duration) {
	fmt.Fprintf(w, "request %s for user %s at %s: model %q, %d attempt(s), %v\n",
		res.RequestID, req.GetUserId(), req.GetContext().GetPlacement(), res.ModelVersion, res.Attempts, elapsed.Round(time.Millisecond))
	if res.ColdStart {
		fmt.Fprintln(w, "cold start: the user is unknown to the feature store")
	}
	if res.Degraded {
		fmt.Fprintf(w, "degraded: %s (%s)\n", res.DegradedReason, res.DegradedDetail)
	}
	for _, c := range res.Coupons {
		fmt.Fprintf(w, "%3d. %-24s score %.6f\n", c.Rank, c.CouponID, c.Score)
		for _, r := range c.Reasons {
			fmt.Fprintf(w, "       %-32s value %-12.6g contribution %+.6f\n", r.Feature, r.Value, r.Contribution)
		}
	}
	if len(res.Coupons) == 0 {
		fmt.Fprintf(w, "nothing ranked: %s\n", res.Note)
	}
	for _, ic := range res.Ineligible {
		fmt.Fprintf(w, "  -  %-24s ineligible: %s %s\n", ic.CouponID, ic.Reason, ic.Detail)
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
