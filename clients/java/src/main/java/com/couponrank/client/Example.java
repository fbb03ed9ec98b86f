package com.couponrank.client;

import com.couponrank.v1.GetModelInfoResponse;
import com.couponrank.v1.IneligibleCoupon;
import com.couponrank.v1.Money;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.couponrank.v1.RankedCoupon;
import com.couponrank.v1.Reason;
import com.couponrank.v1.RequestContext;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Ranks coupons for one user with {@link CouponRankClient}; copy it into a checkout service as a
 * starting point. Same flags as the Go example ({@code -flag value}, {@code --flag value} or
 * {@code -flag=value}):
 *
 * <pre>
 * # one request, printed for people (or as one JSON line with -json)
 * java -cp "target/classes:$(cat target/classpath.txt)" com.couponrank.client.Example \
 *     -addr localhost:50051 -user u-123 -placement checkout -coupons c1,c2 \
 *     -cart-total 4599 -currency USD -categories shoes -top-k 5 -explain
 *
 * # scenario mode for cross-language contract tests: one JSON line per scenario
 * # (-event-id-prefix: in front of the event ids sent, so that a rerun records new events)
 * java ... com.couponrank.client.Example -addr localhost:50051 -scenarios scenarios.json \
 *     [-event-id-prefix java/]
 *
 * # the loaded model
 * java ... com.couponrank.client.Example -addr localhost:50051 -model-info
 * </pre>
 *
 * <p>Exit status: 0 when every call succeeded, 1 when a call failed, 2 on bad usage.
 */
public final class Example {

  private static final Set<String> BOOLEAN_FLAGS = Set.of("explain", "json", "model-info", "warmup", "help", "h");
  private static final Set<String> VALUE_FLAGS =
      Set.of(
          "addr", "user", "placement", "coupons", "cart-total", "currency", "categories", "top-k",
          "max-reasons", "timeout", "attempts", "scenarios", "connect-timeout", "membership-tier",
          "membership-segments", "event-id-prefix");

  private static final String USAGE =
      String.join(
          "\n",
          "usage: Example [flags]",
          "  -addr string        CouponRank server address (default localhost:50051)",
          "  -user string        user id to rank coupons for (required unless -scenarios or -model-info)",
          "  -placement string   home, product_page, cart, checkout, order_confirmation, campaign,",
          "                      member_centre (or PLACEMENT_*) (default checkout)",
          "  -membership-tier string  send the user's membership: this tier (\"\": not a member) in place",
          "                      of the server's stored one (flag absent: the server's)",
          "  -membership-segments string  comma-separated audience segment ids of the user; sends a",
          "                      membership (tier \"\" unless -membership-tier)",
          "  -coupons string     comma-separated candidate coupon ids (empty: every active coupon)",
          "  -cart-total int     cart total in minor units, e.g. cents (-1: leave unset) (default -1)",
          "  -currency string    ISO 4217 currency of -cart-total (default USD)",
          "  -categories string  comma-separated categories in the cart",
          "  -top-k int          maximum coupons to return (0: server default)",
          "  -explain            ask for per-feature score contributions",
          "  -max-reasons int    with -explain: contributions per coupon, 1..50 (0: server default, 10 unless configured)",
          "  -timeout duration   deadline of each call, retries included, e.g. 500ms, 2s (default 500ms)",
          "  -attempts int       maximum attempts per call, retries on UNAVAILABLE only (default 3)",
          "  -connect-timeout duration  wait this long for the connection before the first call, so",
          "                      start-up costs stay out of call deadlines (0: don't wait) (default 5s)",
          "  -warmup             with -scenarios: send one GetModelInfo first (result ignored) so",
          "                      connection and class-loading costs stay out of the first deadline (default true)",
          "  -json               print the single result as one scenario-format JSON line",
          "  -scenarios file     run the JSON scenarios in this file ('-': stdin), one JSON line each",
          "  -event-id-prefix string  with -scenarios: put this in front of the event ids sent",
          "                      (and take it off those answered): a rerun records new events",
          "  -model-info         print the loaded model's description and exit");

  private Example() {}

  public static void main(String[] args) {
    System.exit(run(args, System.in, System.out, System.err));
  }

  /** Runs the example; returns the exit status. */
  static int run(String[] args, InputStream stdin, PrintStream stdout, PrintStream stderr) {
    Map<String, String> flags;
    try {
      flags = parseFlags(args);
    } catch (IllegalArgumentException e) {
      stderr.println(e.getMessage());
      stderr.println(USAGE);
      return 2;
    }
    if (flags.containsKey("help") || flags.containsKey("h")) {
      stderr.println(USAGE);
      return 2;
    }

    CouponRankClient client;
    Duration connectTimeout;
    try {
      connectTimeout = parseDuration(flags.getOrDefault("connect-timeout", "5s"));
      client =
          CouponRankClient.newBuilder()
              .target(flags.getOrDefault("addr", "localhost:50051"))
              .defaultDeadline(parseDuration(flags.getOrDefault("timeout", "500ms")))
              .maxAttempts(Integer.parseInt(flags.getOrDefault("attempts", "3")))
              .build();
    } catch (IllegalArgumentException e) {
      stderr.println(e.getMessage());
      return 2;
    }

    try (client) {
      if (!connectTimeout.isZero()) {
        try {
          // Not ready in time (server down): the calls below report UNAVAILABLE.
          client.awaitReady(connectTimeout);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          return 1;
        }
      }
      if (flags.containsKey("model-info")) {
        try {
          GetModelInfoResponse info = client.getModelInfo();
          stdout.println(com.google.protobuf.TextFormat.printer().printToString(info));
          return 0;
        } catch (StatusRuntimeException e) {
          stderr.println("GetModelInfo failed: " + describe(e));
          return 1;
        }
      }

      if (flags.containsKey("scenarios")) {
        String path = flags.get("scenarios");
        List<ScenarioRunner.Scenario> scenarios;
        try (Reader in =
            path.equals("-")
                ? new InputStreamReader(stdin, StandardCharsets.UTF_8)
                : Files.newBufferedReader(Path.of(path), StandardCharsets.UTF_8)) {
          scenarios = ScenarioRunner.parse(in);
        } catch (IOException | IllegalArgumentException e) {
          stderr.println(e.getMessage());
          return 2;
        }
        if (!"false".equals(flags.getOrDefault("warmup", "true"))) {
          try {
            client.getModelInfo();
          } catch (StatusRuntimeException ignored) {
            // Warm-up only: a failure here shows again in the scenarios.
          }
        }
        try {
          Writer out = new OutputStreamWriter(stdout, StandardCharsets.UTF_8);
          String prefix = flags.getOrDefault("event-id-prefix", "");
          int failed = ScenarioRunner.runAll(client, scenarios, out, prefix);
          out.flush();
          return failed > 0 ? 1 : 0;
        } catch (IOException e) {
          stderr.println(e.getMessage());
          return 1;
        }
      }

      String user = flags.getOrDefault("user", "");
      if (user.isEmpty()) {
        stderr.println("-user is required");
        stderr.println(USAGE);
        return 2;
      }
      RankCouponsRequest request;
      try {
        request = buildRequest(flags);
      } catch (IllegalArgumentException e) {
        stderr.println(e.getMessage());
        return 2;
      }

      if (flags.containsKey("json")) {
        ScenarioRunner.Scenario s =
            new ScenarioRunner.Scenario("", request, null, null, request.getExplain());
        ScenarioRunner.Line line = ScenarioRunner.run(client, 0, s);
        stdout.println(line.json());
        return line.ok() ? 0 : 1;
      }

      long start = System.nanoTime();
      try {
        RankCouponsResponse res = client.rankCoupons(request);
        print(stdout, request, res, Duration.ofNanos(System.nanoTime() - start));
        return 0;
      } catch (StatusRuntimeException e) {
        // A checkout page would show no coupon here and carry on.
        stderr.printf(
            "RankCoupons failed after %d ms: %s%n",
            Duration.ofNanos(System.nanoTime() - start).toMillis(), describe(e));
        return 1;
      }
    }
  }

  static RankCouponsRequest buildRequest(Map<String, String> flags) {
    RequestContext.Builder ctx =
        RequestContext.newBuilder()
            .setPlacement(ScenarioRunner.parsePlacement(flags.getOrDefault("placement", "checkout")))
            .addAllCartCategories(splitList(flags.getOrDefault("categories", "")));
    if (flags.containsKey("membership-tier") || flags.containsKey("membership-segments")) {
      ctx.setMembership(
          Conversions.membership(
              flags.getOrDefault("membership-tier", ""),
              splitList(flags.getOrDefault("membership-segments", ""))));
    }
    long cartTotal = Long.parseLong(flags.getOrDefault("cart-total", "-1"));
    if (cartTotal >= 0) {
      ctx.setCartTotal(
          Money.newBuilder()
              .setCurrencyCode(flags.getOrDefault("currency", "USD"))
              .setAmountMinor(cartTotal));
    }
    return RankCouponsRequest.newBuilder()
        .setUserId(flags.getOrDefault("user", ""))
        .addAllCandidateCouponIds(splitList(flags.getOrDefault("coupons", "")))
        .setContext(ctx)
        .setTopK(Integer.parseInt(flags.getOrDefault("top-k", "0")))
        .setExplain(flags.containsKey("explain") && !"false".equals(flags.get("explain")))
        .setMaxReasons(Integer.parseInt(flags.getOrDefault("max-reasons", "0")))
        .build();
  }

  private static void print(
      PrintStream out, RankCouponsRequest req, RankCouponsResponse res, Duration elapsed) {
    out.printf(
        "request %s for user %s at %s: model \"%s\", %d ms%n",
        res.getRequestId(), req.getUserId(), req.getContext().getPlacement(), res.getModelVersion(),
        elapsed.toMillis());
    if (res.getColdStart()) {
      out.println("cold start: the user is unknown to the feature store");
    }
    if (res.getDegraded()) {
      out.printf("degraded: %s (%s)%n", res.getDegradedReason(), res.getDegradedDetail());
    }
    for (RankedCoupon c : res.getRankedCouponsList()) {
      out.printf(Locale.ROOT, "%3d. %-24s score %.6f%n", c.getRank(), c.getCouponId(), c.getScore());
      for (Reason r : c.getReasonsList()) {
        out.printf(
            Locale.ROOT,
            "       %-32s value %-12.6g contribution %+.6f%n",
            r.getFeature(), r.getValue(), r.getContribution());
      }
    }
    if (res.getRankedCouponsCount() == 0) {
      out.println("nothing ranked: " + res.getNote());
    }
    for (IneligibleCoupon ic : res.getIneligibleCouponsList()) {
      out.printf("  -  %-24s ineligible: %s %s%n", ic.getCouponId(), ic.getReason(), ic.getDetail());
    }
  }

  private static String describe(StatusRuntimeException e) {
    Status s = e.getStatus();
    return s.getCode().name() + ": " + (s.getDescription() == null ? "" : s.getDescription());
  }

  /** Parses Go-style flags: -name value, --name value, -name=value; booleans take no value. */
  static Map<String, String> parseFlags(String[] args) {
    Map<String, String> flags = new HashMap<>();
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (!a.startsWith("-") || a.equals("-") || a.equals("--")) {
        throw new IllegalArgumentException("unexpected argument: " + a);
      }
      String name = a.startsWith("--") ? a.substring(2) : a.substring(1);
      String value = null;
      int eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.substring(eq + 1);
        name = name.substring(0, eq);
      }
      if (BOOLEAN_FLAGS.contains(name)) {
        flags.put(name, value == null ? "true" : value);
      } else if (VALUE_FLAGS.contains(name)) {
        if (value == null) {
          if (i + 1 >= args.length) {
            throw new IllegalArgumentException("flag needs an argument: -" + name);
          }
          value = args[++i];
        }
        flags.put(name, value);
      } else {
        throw new IllegalArgumentException("flag provided but not defined: -" + name);
      }
    }
    if ("false".equals(flags.get("json"))) {
      flags.remove("json");
    }
    if ("false".equals(flags.get("model-info"))) {
      flags.remove("model-info");
    }
    return flags;
  }

  private static final Pattern DURATION_PART = Pattern.compile("(\\d+(?:\\.\\d*)?|\\.\\d+)(ns|us|µs|ms|s|m|h)");

  /** Parses a Go-style duration such as "500ms", "1.5s" or "1m30s". */
  static Duration parseDuration(String s) {
    if (s.equals("0")) {
      return Duration.ZERO;
    }
    Matcher m = DURATION_PART.matcher(s);
    double nanos = 0;
    int pos = 0;
    while (pos < s.length() && m.find(pos) && m.start() == pos) {
      double v = Double.parseDouble(m.group(1));
      switch (m.group(2)) {
        case "ns" -> nanos += v;
        case "us", "µs" -> nanos += v * 1e3;
        case "ms" -> nanos += v * 1e6;
        case "s" -> nanos += v * 1e9;
        case "m" -> nanos += v * 60e9;
        default -> nanos += v * 3600e9;
      }
      pos = m.end();
    }
    if (s.isEmpty() || pos != s.length()) {
      throw new IllegalArgumentException("invalid duration \"" + s + "\" (want e.g. 500ms, 2s)");
    }
    return Duration.ofNanos((long) nanos);
  }

  private static List<String> splitList(String s) {
    List<String> out = new ArrayList<>();
    for (String p : s.split(",")) {
      if (!p.trim().isEmpty()) {
        out.add(p.trim());
      }
    }
    return out;
  }
}
