package com.couponrank.client;

import com.couponrank.v1.DegradedReason;
import com.couponrank.v1.IneligibilityReason;
import com.couponrank.v1.IneligibleCoupon;
import com.couponrank.v1.Membership;
import com.couponrank.v1.Money;
import com.couponrank.v1.Placement;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.couponrank.v1.RankedCoupon;
import com.couponrank.v1.Reason;
import com.couponrank.v1.RequestContext;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.stream.JsonWriter;
import com.google.protobuf.Timestamp;
import io.grpc.Status;
import java.io.IOException;
import java.io.Reader;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.io.Writer;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * Runs a JSON list of RankCoupons scenarios and writes one JSON line per scenario, in the format
 * the Go client's example ({@code -scenarios}) reads and writes, so the same scenarios can be run
 * from Python, Go and Java and the outputs compared (compare parsed JSON, not text: number
 * formatting differs between languages).
 *
 * <p>Input: a JSON array of objects; every key is optional except {@code user_id}: {@code name,
 * request_id, user_id, candidate_coupon_ids, placement ("PLACEMENT_CART", "CART" or "cart"),
 * cart_total_minor, currency_code, cart_categories, cart_brands, cart_merchant_ids, request_time
 * (RFC 3339), top_k, explain, max_reasons, deadline_ms, membership_tier, membership_segment_ids}.
 * The cart total is sent when {@code cart_total_minor} or {@code currency_code} is present; the
 * request's {@code context.membership} is set when {@code membership_tier} (a string) or {@code
 * membership_segment_ids} (a list of strings) is present ({@code "membership_tier": ""} alone:
 * explicitly not a member; neither: the server's stored membership); {@code deadline_ms} 0 or
 * absent means the client's default. Null is the same as an absent key. Unknown keys are an error.
 *
 * <p>Output on success: {@code {"index":0,"name":"..","ok":true,"ranked":[{"coupon_id":"c1",
 * "rank":1,"score":0.42}],"ineligible":[{"coupon_id":"c2","reason":"INELIGIBILITY_REASON_EXPIRED"}],
 * "model_version":"..","cold_start":false,"degraded":false,"degraded_reason":"DEGRADED_REASON_UNSPECIFIED",
 * "note":""}}. Ranked entries carry {@code "reasons":[{"feature","value","contribution"}]} when the
 * scenario asked for explain; NaN and infinities are written as null. {@code "note"} is the
 * response's note, on every success line: empty when at least one coupon is ranked, else why none
 * is (free text: compare it as a string, don't parse it). On an RPC error: {@code
 * {"index":0,"name":"..","ok":false,"error_code":"UNAVAILABLE","error_message":".."}}; a scenario
 * that cannot be turned into a request gets {@code "error_code":"CLIENT_ERROR"}.
 */
public final class ScenarioRunner {

  private static final Set<String> KEYS =
      Set.of(
          "name", "request_id", "user_id", "candidate_coupon_ids", "placement",
          "cart_total_minor", "currency_code", "cart_categories", "cart_brands",
          "cart_merchant_ids", "request_time", "top_k", "explain", "max_reasons", "deadline_ms",
          "membership_tier", "membership_segment_ids");

  /** One scenario: the request to send, its deadline and how to report it. */
  public static final class Scenario {
    final String name;
    final RankCouponsRequest request; // null when the scenario is invalid
    final String invalid; // why it is invalid, or null
    final Duration deadline; // null: the client's default
    final boolean explain;

    Scenario(String name, RankCouponsRequest request, String invalid, Duration deadline, boolean explain) {
      this.name = name;
      this.request = request;
      this.invalid = invalid;
      this.deadline = deadline;
      this.explain = explain;
    }

    /** The request this scenario sends, or null when it could not be built. */
    public RankCouponsRequest request() {
      return request;
    }

    /** The scenario's deadline, or null for the client's default. */
    public Duration deadline() {
      return deadline;
    }
  }

  private ScenarioRunner() {}

  /**
   * Parses a JSON array of scenarios.
   *
   * @throws IllegalArgumentException if the JSON is not an array of objects, has an unknown key
   *     or a value of the wrong type. A bad placement or request_time is not thrown: that
   *     scenario reports CLIENT_ERROR when run, as in the Go client.
   */
  public static List<Scenario> parse(Reader in) {
    JsonElement root;
    try {
      root = JsonParser.parseReader(in);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException("scenarios: " + e.getMessage(), e);
    }
    if (!root.isJsonArray()) {
      throw new IllegalArgumentException("scenarios: want a JSON array of objects");
    }
    List<Scenario> out = new ArrayList<>();
    int i = 0;
    for (JsonElement e : root.getAsJsonArray()) {
      if (!e.isJsonObject()) {
        throw new IllegalArgumentException("scenarios[" + i + "]: not an object");
      }
      out.add(toScenario(i, e.getAsJsonObject()));
      i++;
    }
    return out;
  }

  private static Scenario toScenario(int i, JsonObject o) {
    for (String k : o.keySet()) {
      if (!KEYS.contains(k)) {
        throw new IllegalArgumentException("scenarios[" + i + "]: unknown key \"" + k + "\"");
      }
    }
    String where = "scenarios[" + i + "]";
    String name = str(o, "name", where);
    RequestContext.Builder ctx =
        RequestContext.newBuilder()
            .addAllCartCategories(strs(o, "cart_categories", where))
            .addAllCartBrands(strs(o, "cart_brands", where))
            .addAllCartMerchantIds(strs(o, "cart_merchant_ids", where));
    if (present(o, "cart_total_minor") || present(o, "currency_code")) {
      ctx.setCartTotal(
          Money.newBuilder()
              .setAmountMinor(num(o, "cart_total_minor", where))
              .setCurrencyCode(str(o, "currency_code", where)));
    }
    if (present(o, "membership_tier") || present(o, "membership_segment_ids")) {
      ctx.setMembership(
          Membership.newBuilder()
              .setTier(str(o, "membership_tier", where))
              .addAllSegmentIds(strs(o, "membership_segment_ids", where)));
    }
    RankCouponsRequest.Builder req =
        RankCouponsRequest.newBuilder()
            .setRequestId(str(o, "request_id", where))
            .setUserId(str(o, "user_id", where))
            .addAllCandidateCouponIds(strs(o, "candidate_coupon_ids", where))
            .setTopK((int) num(o, "top_k", where))
            .setExplain(bool(o, "explain", where))
            .setMaxReasons((int) num(o, "max_reasons", where));
    long deadlineMs = num(o, "deadline_ms", where);
    Duration deadline = deadlineMs > 0 ? Duration.ofMillis(deadlineMs) : null;
    String invalid = null;
    try {
      ctx.setPlacement(parsePlacement(str(o, "placement", where)));
      String t = str(o, "request_time", where);
      if (!t.isEmpty()) {
        Instant at = OffsetDateTime.parse(t).toInstant();
        ctx.setRequestTime(
            Timestamp.newBuilder().setSeconds(at.getEpochSecond()).setNanos(at.getNano()));
      }
    } catch (IllegalArgumentException | java.time.format.DateTimeParseException e) {
      invalid = e.getMessage();
    }
    RankCouponsRequest built = invalid == null ? req.setContext(ctx).build() : null;
    return new Scenario(name, built, invalid, deadline, req.getExplain());
  }

  /**
   * Parses a placement given as its enum name ({@code PLACEMENT_CART}), without the prefix
   * ({@code CART}) or in lower case ({@code cart}); empty is PLACEMENT_UNSPECIFIED.
   *
   * @throws IllegalArgumentException for an unknown placement
   */
  public static Placement parsePlacement(String s) {
    if (s == null || s.isEmpty()) {
      return Placement.PLACEMENT_UNSPECIFIED;
    }
    String name = s.trim().toUpperCase(Locale.ROOT);
    if (!name.startsWith("PLACEMENT_")) {
      name = "PLACEMENT_" + name;
    }
    try {
      Placement p = Placement.valueOf(name);
      if (p != Placement.UNRECOGNIZED) {
        return p;
      }
    } catch (IllegalArgumentException ignored) {
      // fall through
    }
    throw new IllegalArgumentException("unknown placement \"" + s + "\"");
  }

  /** One output line (without the newline) and whether the scenario succeeded. */
  public record Line(boolean ok, String json) {}

  /** Runs one scenario and returns its output line. */
  public static Line run(CouponRankClient client, int index, Scenario s) {
    StringWriter sw = new StringWriter();
    try (JsonWriter w = new JsonWriter(sw)) {
      w.beginObject();
      w.name("index").value(index);
      w.name("name").value(s.name);
      if (s.request == null) {
        w.name("ok").value(false);
        w.name("error_code").value("CLIENT_ERROR");
        w.name("error_message").value(s.invalid);
        w.endObject();
        w.flush();
        return new Line(false, sw.toString());
      }
      RankCouponsResponse res;
      try {
        res = client.rankCoupons(s.request, s.deadline);
      } catch (RuntimeException e) {
        Status st = Status.fromThrowable(e);
        w.name("ok").value(false);
        w.name("error_code").value(st.getCode().name());
        w.name("error_message").value(st.getDescription() == null ? "" : st.getDescription());
        w.endObject();
        w.flush();
        return new Line(false, sw.toString());
      }
      w.name("ok").value(true);
      w.name("ranked").beginArray();
      for (RankedCoupon rc : res.getRankedCouponsList()) {
        w.beginObject();
        w.name("coupon_id").value(rc.getCouponId());
        w.name("rank").value(rc.getRank());
        number(w.name("score"), rc.getScore());
        if (s.explain) {
          w.name("reasons").beginArray();
          for (Reason r : rc.getReasonsList()) {
            w.beginObject();
            w.name("feature").value(r.getFeature());
            number(w.name("value"), r.getValue());
            number(w.name("contribution"), r.getContribution());
            w.endObject();
          }
          w.endArray();
        }
        w.endObject();
      }
      w.endArray();
      w.name("ineligible").beginArray();
      for (IneligibleCoupon ic : res.getIneligibleCouponsList()) {
        w.beginObject();
        w.name("coupon_id").value(ic.getCouponId());
        IneligibilityReason r = IneligibilityReason.forNumber(ic.getReasonValue());
        w.name("reason").value(r != null ? r.name() : String.valueOf(ic.getReasonValue()));
        w.endObject();
      }
      w.endArray();
      w.name("model_version").value(res.getModelVersion());
      w.name("cold_start").value(res.getColdStart());
      w.name("degraded").value(res.getDegraded());
      DegradedReason d = DegradedReason.forNumber(res.getDegradedReasonValue());
      w.name("degraded_reason").value(d != null ? d.name() : String.valueOf(res.getDegradedReasonValue()));
      w.name("note").value(res.getNote());
      w.endObject();
      w.flush();
      return new Line(true, sw.toString());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Runs the scenarios in order, writing one JSON line each to {@code out}.
   *
   * @return the number of scenarios that failed
   */
  public static int runAll(CouponRankClient client, List<Scenario> scenarios, Writer out)
      throws IOException {
    int failed = 0;
    for (int i = 0; i < scenarios.size(); i++) {
      Line line = run(client, i, scenarios.get(i));
      if (!line.ok()) {
        failed++;
      }
      out.write(line.json());
      out.write('\n');
      out.flush();
    }
    return failed;
  }

  private static void number(JsonWriter w, double v) throws IOException {
    if (Double.isNaN(v) || Double.isInfinite(v)) {
      w.nullValue();
    } else {
      w.value(v);
    }
  }

  private static boolean present(JsonObject o, String k) {
    return o.has(k) && !o.get(k).isJsonNull();
  }

  private static String str(JsonObject o, String k, String where) {
    if (!present(o, k)) {
      return "";
    }
    JsonElement e = o.get(k);
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) {
      throw new IllegalArgumentException(where + "." + k + ": want a string");
    }
    return e.getAsString();
  }

  private static long num(JsonObject o, String k, String where) {
    if (!present(o, k)) {
      return 0;
    }
    JsonElement e = o.get(k);
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) {
      throw new IllegalArgumentException(where + "." + k + ": want an integer");
    }
    try {
      return e.getAsJsonPrimitive().getAsBigDecimal().longValueExact();
    } catch (ArithmeticException ex) {
      throw new IllegalArgumentException(where + "." + k + ": want an integer");
    }
  }

  private static boolean bool(JsonObject o, String k, String where) {
    if (!present(o, k)) {
      return false;
    }
    JsonElement e = o.get(k);
    if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) {
      throw new IllegalArgumentException(where + "." + k + ": want true or false");
    }
    return e.getAsBoolean();
  }

  private static List<String> strs(JsonObject o, String k, String where) {
    List<String> out = new ArrayList<>();
    if (!present(o, k)) {
      return out;
    }
    JsonElement e = o.get(k);
    if (!e.isJsonArray()) {
      throw new IllegalArgumentException(where + "." + k + ": want a list of strings");
    }
    JsonArray a = e.getAsJsonArray();
    for (JsonElement x : a) {
      if (!x.isJsonPrimitive() || !x.getAsJsonPrimitive().isString()) {
        throw new IllegalArgumentException(where + "." + k + ": want a list of strings");
      }
      out.add(x.getAsString());
    }
    return out;
  }
}
