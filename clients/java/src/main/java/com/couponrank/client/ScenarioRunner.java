package com.couponrank.client;

import com.couponrank.v1.BehaviourEvent;
import com.couponrank.v1.BehaviourType;
import com.couponrank.v1.ClaimEvent;
import com.couponrank.v1.DegradedReason;
import com.couponrank.v1.Event;
import com.couponrank.v1.EventResult;
import com.couponrank.v1.EventStatus;
import com.couponrank.v1.ImpressionEvent;
import com.couponrank.v1.IneligibilityReason;
import com.couponrank.v1.IneligibleCoupon;
import com.couponrank.v1.Membership;
import com.couponrank.v1.Money;
import com.couponrank.v1.Placement;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.couponrank.v1.RankedCoupon;
import com.couponrank.v1.Reason;
import com.couponrank.v1.RedemptionEvent;
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
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Function;

/**
 * Runs a JSON list of RankCoupons and RecordEvents scenarios and writes one JSON line per
 * scenario, in the format the Go client's example ({@code -scenarios}) reads and writes, so the
 * same scenarios can be run from Python, Go and Java and the outputs compared (compare parsed
 * JSON, not text: number formatting differs between languages).
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
 * <p>A scenario with {@code events} (a list, maybe empty) sends one RecordEvents call instead;
 * only {@code name} and {@code deadline_ms} may go with it. Each event is an object of optional
 * keys, the fields of {@code couponrank.v1.Event} flattened: {@code event_id, user_id,
 * event_time} (RFC 3339) and {@code kind}: {@code impression} (with {@code coupon_id,
 * request_id, position, placement}), {@code claim} ({@code coupon_id, impression_event_id}),
 * {@code redemption} ({@code coupon_id, order_id, impression_event_id, discount_minor,
 * order_total_minor, currency_code}) or {@code behaviour} ({@code behaviour_type} ("view", "VIEW"
 * or "BEHAVIOUR_TYPE_VIEW"), {@code item_id, order_id, amount_minor, currency_code}); without
 * {@code kind} the event has none. A Money field is sent when its {@code *_minor} key is present.
 * An unknown key or a value of the wrong type is a parse error; a key of another kind, an unknown
 * kind, placement or behaviour type, or a bad {@code event_time} makes the scenario report
 * CLIENT_ERROR (nothing sent).
 *
 * <p>Output on success: {@code {"index":0,"name":"..","ok":true,"ranked":[{"coupon_id":"c1",
 * "rank":1,"score":0.42}],"ineligible":[{"coupon_id":"c2","reason":"INELIGIBILITY_REASON_EXPIRED"}],
 * "model_version":"..","cold_start":false,"degraded":false,"degraded_reason":"DEGRADED_REASON_UNSPECIFIED",
 * "note":""}}. Ranked entries carry {@code "reasons":[{"feature","value","contribution"}]} when the
 * scenario asked for explain; NaN and infinities are written as null. {@code "note"} is the
 * response's note, on every success line: empty when at least one coupon is ranked, else why none
 * is (free text: compare it as a string, don't parse it). An events scenario's success line is
 * {@code {"index":2,"name":"..","ok":true,"results":[{"event_id":"e-1",
 * "status":"EVENT_STATUS_ACCEPTED","detail":""}]}}, one result per event. On an RPC error: {@code
 * {"index":0,"name":"..","ok":false,"error_code":"UNAVAILABLE","error_message":".."}}; a scenario
 * that cannot be turned into a request gets {@code "error_code":"CLIENT_ERROR"}.
 *
 * <p>A run may be given an event id prefix ({@link #runAll(CouponRankClient, List, Writer,
 * String)}, the Example's {@code -event-id-prefix}): it goes in front of every non-empty {@code
 * event_id} and {@code impression_event_id} sent and comes off the event ids answered, so that
 * several runs of the same scenarios against one server each record their own events and print
 * the same lines.
 */
public final class ScenarioRunner {

  private static final Set<String> KEYS =
      Set.of(
          "name", "request_id", "user_id", "candidate_coupon_ids", "placement",
          "cart_total_minor", "currency_code", "cart_categories", "cart_brands",
          "cart_merchant_ids", "request_time", "top_k", "explain", "max_reasons", "deadline_ms",
          "membership_tier", "membership_segment_ids", "events");
  /** The scenario keys that may go with {@code events}. */
  private static final Set<String> EVENTS_SCENARIO_KEYS = Set.of("events", "name", "deadline_ms");

  private static final Set<String> EVENT_STRING_KEYS =
      Set.of(
          "event_id", "user_id", "event_time", "kind", "coupon_id", "request_id", "placement",
          "impression_event_id", "order_id", "currency_code", "behaviour_type", "item_id");
  private static final Set<String> EVENT_INT_KEYS =
      Set.of("position", "discount_minor", "order_total_minor", "amount_minor");
  private static final Set<String> EVENT_COMMON =
      Set.of("event_id", "user_id", "event_time", "kind");
  /** The keys each kind of event takes besides the common ones. */
  private static final Map<String, Set<String>> EVENT_KINDS =
      Map.of(
          "impression", Set.of("coupon_id", "request_id", "position", "placement"),
          "claim", Set.of("coupon_id", "impression_event_id"),
          "redemption",
              Set.of(
                  "coupon_id", "order_id", "impression_event_id", "discount_minor",
                  "order_total_minor", "currency_code"),
          "behaviour",
              Set.of("behaviour_type", "item_id", "order_id", "amount_minor", "currency_code"));

  /** One scenario: the request to send, its deadline and how to report it. */
  public static final class Scenario {
    final String name;
    final RankCouponsRequest request; // null when the scenario is invalid or sends events
    final String invalid; // why it is invalid, or null
    final Duration deadline; // null: the client's default
    final boolean explain;
    final List<JsonObject> events; // an events scenario's events (no null values), else null

    Scenario(String name, RankCouponsRequest request, String invalid, Duration deadline, boolean explain) {
      this(name, request, invalid, deadline, explain, null);
    }

    private Scenario(
        String name,
        RankCouponsRequest request,
        String invalid,
        Duration deadline,
        boolean explain,
        List<JsonObject> events) {
      this.name = name;
      this.request = request;
      this.invalid = invalid;
      this.deadline = deadline;
      this.explain = explain;
      this.events = events == null ? null : Collections.unmodifiableList(events);
    }

    /**
     * The request this scenario sends, or null when it could not be built or the scenario sends
     * events.
     */
    public RankCouponsRequest request() {
      return request;
    }

    /** The scenario's deadline, or null for the client's default. */
    public Duration deadline() {
      return deadline;
    }

    /** Whether this scenario sends a RecordEvents call (it has {@code events}). */
    public boolean hasEvents() {
      return events != null;
    }

    /**
     * The events this scenario sends, {@code eventIdPrefix} in front of every non-empty {@code
     * event_id} and {@code impression_event_id}.
     *
     * @throws IllegalArgumentException naming the event ({@code events[1].kind: ...}) for an
     *     unknown kind, placement or behaviour type, a key of another kind or a bad event_time
     * @throws IllegalStateException for a scenario without {@code events}
     */
    public List<Event> events(String eventIdPrefix) {
      if (events == null) {
        throw new IllegalStateException("not an events scenario");
      }
      List<Event> out = new ArrayList<>();
      for (int j = 0; j < events.size(); j++) {
        try {
          out.add(toEvent(events.get(j), eventIdPrefix));
        } catch (IllegalArgumentException e) {
          throw new IllegalArgumentException("events[" + j + "]." + e.getMessage(), e);
        }
      }
      return out;
    }
  }

  private ScenarioRunner() {}

  /**
   * Parses a JSON array of scenarios.
   *
   * @throws IllegalArgumentException if the JSON is not an array of objects, has an unknown key
   *     or a value of the wrong type, or an events scenario has a key of a ranking. A bad
   *     placement, request_time, event kind and the like is not thrown: that scenario reports
   *     CLIENT_ERROR when run, as in the Go client.
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
    if (present(o, "events")) {
      List<JsonObject> events = parseEvents(o.get("events"), where + ".events");
      for (String k : new TreeSet<>(o.keySet())) {
        if (present(o, k) && !EVENTS_SCENARIO_KEYS.contains(k)) {
          throw new IllegalArgumentException(where + "." + k + ": not used with \"events\"");
        }
      }
      String name = str(o, "name", where);
      long deadlineMs = num(o, "deadline_ms", where);
      Duration deadline = deadlineMs > 0 ? Duration.ofMillis(deadlineMs) : null;
      return new Scenario(name, null, null, deadline, false, events);
    }
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
        ctx.setRequestTime(timestamp(t, "request_time"));
      }
    } catch (IllegalArgumentException e) {
      invalid = e.getMessage();
    }
    RankCouponsRequest built = invalid == null ? req.setContext(ctx).build() : null;
    return new Scenario(name, built, invalid, deadline, req.getExplain());
  }

  /**
   * Checks the events of an events scenario: a list of objects of the known keys, each value of
   * its type; returns them without their null values.
   */
  private static List<JsonObject> parseEvents(JsonElement value, String where) {
    if (!value.isJsonArray()) {
      throw new IllegalArgumentException(where + ": want a list of objects");
    }
    List<JsonObject> out = new ArrayList<>();
    int j = 0;
    for (JsonElement x : value.getAsJsonArray()) {
      String at = where + "[" + j + "]";
      if (!x.isJsonObject()) {
        throw new IllegalArgumentException(at + ": not an object");
      }
      JsonObject e = x.getAsJsonObject();
      for (String k : new TreeSet<>(e.keySet())) {
        if (!EVENT_STRING_KEYS.contains(k) && !EVENT_INT_KEYS.contains(k)) {
          throw new IllegalArgumentException(at + ": unknown key \"" + k + "\"");
        }
      }
      JsonObject event = new JsonObject();
      for (Map.Entry<String, JsonElement> kv : e.entrySet()) {
        String k = kv.getKey();
        if (kv.getValue().isJsonNull()) {
          continue;
        }
        if (EVENT_STRING_KEYS.contains(k)) {
          str(e, k, at);
        } else {
          num(e, k, at);
        }
        event.add(k, kv.getValue().deepCopy());
      }
      out.add(event);
      j++;
    }
    return out;
  }

  /**
   * The {@code couponrank.v1.Event} of one scenario event (as {@link #parse} leaves it), {@code
   * prefix} in front of its non-empty event ids.
   *
   * @throws IllegalArgumentException for an unknown kind, placement or behaviour type, a key of
   *     another kind, or a bad event_time
   */
  static Event toEvent(JsonObject e, String prefix) {
    String where = "event";
    String kind = present(e, "kind") ? str(e, "kind", where) : null;
    Set<String> kindKeys = kind == null ? Set.of() : EVENT_KINDS.get(kind);
    if (kindKeys == null) {
      throw new IllegalArgumentException(
          "kind: unknown kind \"" + kind + "\" (impression, claim, redemption or behaviour)");
    }
    for (String k : new TreeSet<>(e.keySet())) {
      if (present(e, k) && !EVENT_COMMON.contains(k) && !kindKeys.contains(k)) {
        throw new IllegalArgumentException(
            k
                + ": not a field of "
                + (kind == null ? "an event without a kind" : kind + " events"));
      }
    }
    Event.Builder ev =
        Event.newBuilder()
            .setEventId(prefixed(prefix, str(e, "event_id", where)))
            .setUserId(str(e, "user_id", where));
    String t = str(e, "event_time", where);
    if (!t.isEmpty()) {
      ev.setEventTime(timestamp(t, "event_time"));
    }
    if (kind == null) {
      return ev.build();
    }
    switch (kind) {
      case "impression" -> {
        long position = num(e, "position", where);
        if (position != (int) position) {
          throw new IllegalArgumentException("position: " + position + " is out of range (int32)");
        }
        Placement placement;
        try {
          placement = parsePlacement(str(e, "placement", where));
        } catch (IllegalArgumentException x) {
          throw new IllegalArgumentException("placement: " + x.getMessage(), x);
        }
        ev.setImpression(
            ImpressionEvent.newBuilder()
                .setRequestId(str(e, "request_id", where))
                .setCouponId(str(e, "coupon_id", where))
                .setPosition((int) position)
                .setPlacement(placement));
      }
      case "claim" -> // set even when empty: a claim without fields is still a claim
          ev.setClaim(
              ClaimEvent.newBuilder()
                  .setCouponId(str(e, "coupon_id", where))
                  .setImpressionEventId(prefixed(prefix, str(e, "impression_event_id", where))));
      case "redemption" -> {
        RedemptionEvent.Builder r =
            RedemptionEvent.newBuilder()
                .setCouponId(str(e, "coupon_id", where))
                .setOrderId(str(e, "order_id", where))
                .setImpressionEventId(prefixed(prefix, str(e, "impression_event_id", where)));
        if (present(e, "discount_minor")) {
          r.setDiscount(money(e, "discount_minor"));
        }
        if (present(e, "order_total_minor")) {
          r.setOrderTotal(money(e, "order_total_minor"));
        }
        ev.setRedemption(r);
      }
      default -> { // behaviour
        BehaviourType type;
        try {
          type = parseBehaviourType(str(e, "behaviour_type", where));
        } catch (IllegalArgumentException x) {
          throw new IllegalArgumentException("behaviour_type: " + x.getMessage(), x);
        }
        BehaviourEvent.Builder b =
            BehaviourEvent.newBuilder()
                .setType(type)
                .setItemId(str(e, "item_id", where))
                .setOrderId(str(e, "order_id", where));
        if (present(e, "amount_minor")) {
          b.setAmount(money(e, "amount_minor"));
        }
        ev.setBehaviour(b);
      }
    }
    return ev.build();
  }

  /** The event id sent: the run's prefix in front; an empty id stays empty (rejected as is). */
  private static String prefixed(String prefix, String eventId) {
    return eventId.isEmpty() || prefix == null ? eventId : prefix + eventId;
  }

  /** The Money of an event's {@code *_minor} key, in its {@code currency_code} (maybe empty). */
  private static Money money(JsonObject e, String key) {
    return Money.newBuilder()
        .setCurrencyCode(str(e, "currency_code", "event"))
        .setAmountMinor(num(e, key, "event"))
        .build();
  }

  /** An RFC 3339 time with its zone; IllegalArgumentException naming {@code key} otherwise. */
  private static Timestamp timestamp(String text, String key) {
    Instant at;
    try {
      at = OffsetDateTime.parse(text).toInstant();
    } catch (DateTimeParseException e) {
      throw new IllegalArgumentException(key + ": " + e.getMessage(), e);
    }
    return Timestamp.newBuilder().setSeconds(at.getEpochSecond()).setNanos(at.getNano()).build();
  }

  /**
   * Parses a placement given as its enum name ({@code PLACEMENT_CART}), without the prefix
   * ({@code CART}) or in lower case ({@code cart}); empty is PLACEMENT_UNSPECIFIED.
   *
   * @throws IllegalArgumentException for an unknown placement
   */
  public static Placement parsePlacement(String s) {
    return parseEnum(
        s, "PLACEMENT_", Placement::valueOf, Placement.PLACEMENT_UNSPECIFIED, "placement");
  }

  /**
   * Parses a behaviour type given as its enum name ({@code BEHAVIOUR_TYPE_VIEW}), without the
   * prefix ({@code VIEW}) or in lower case ({@code view}); empty is BEHAVIOUR_TYPE_UNSPECIFIED.
   *
   * @throws IllegalArgumentException for an unknown behaviour type
   */
  public static BehaviourType parseBehaviourType(String s) {
    return parseEnum(
        s,
        "BEHAVIOUR_TYPE_",
        BehaviourType::valueOf,
        BehaviourType.BEHAVIOUR_TYPE_UNSPECIFIED,
        "behaviour type");
  }

  /** An enum value by its name, with or without its prefix, in any case; empty: unspecified. */
  private static <E extends Enum<E>> E parseEnum(
      String s, String prefix, Function<String, E> valueOf, E unspecified, String what) {
    if (s == null || s.isEmpty()) {
      return unspecified;
    }
    String name = s.trim().toUpperCase(Locale.ROOT);
    if (!name.startsWith(prefix)) {
      name = prefix + name;
    }
    try {
      E v = valueOf.apply(name);
      if (!v.name().equals("UNRECOGNIZED")) {
        return v;
      }
    } catch (IllegalArgumentException ignored) {
      // fall through
    }
    throw new IllegalArgumentException("unknown " + what + " \"" + s + "\"");
  }

  /** One output line (without the newline) and whether the scenario succeeded. */
  public record Line(boolean ok, String json) {}

  /** Runs one scenario (events without an id prefix) and returns its output line. */
  public static Line run(CouponRankClient client, int index, Scenario s) {
    return run(client, index, s, "");
  }

  /**
   * Runs one scenario and returns its output line; an events scenario's event ids are sent with
   * {@code eventIdPrefix} in front (see {@link Scenario#events}) and written without it.
   */
  public static Line run(CouponRankClient client, int index, Scenario s, String eventIdPrefix) {
    String prefix = eventIdPrefix == null ? "" : eventIdPrefix;
    if (s.events != null) {
      return runEvents(client, index, s, prefix);
    }
    if (s.request == null) {
      return errorLine(index, s.name, "CLIENT_ERROR", s.invalid);
    }
    RankCouponsResponse res;
    try {
      res = client.rankCoupons(s.request, s.deadline);
    } catch (RuntimeException e) {
      return statusLine(index, s.name, e);
    }
    return line(
        index,
        s.name,
        true,
        w -> {
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
          w.name("degraded_reason")
              .value(d != null ? d.name() : String.valueOf(res.getDegradedReasonValue()));
          w.name("note").value(res.getNote());
        });
  }

  private static Line runEvents(CouponRankClient client, int index, Scenario s, String prefix) {
    List<Event> events;
    try {
      events = s.events(prefix);
    } catch (IllegalArgumentException e) {
      return errorLine(index, s.name, "CLIENT_ERROR", e.getMessage());
    }
    List<EventResult> results;
    try {
      results = client.recordEvents(events, s.deadline);
    } catch (RuntimeException e) {
      return statusLine(index, s.name, e);
    }
    return line(
        index,
        s.name,
        true,
        w -> {
          w.name("results").beginArray();
          for (EventResult r : results) {
            String id = r.getEventId();
            if (!prefix.isEmpty() && id.startsWith(prefix)) {
              id = id.substring(prefix.length());
            }
            EventStatus st = EventStatus.forNumber(r.getStatusValue());
            w.beginObject();
            w.name("event_id").value(id);
            w.name("status").value(st != null ? st.name() : String.valueOf(r.getStatusValue()));
            w.name("detail").value(r.getDetail());
            w.endObject();
          }
          w.endArray();
        });
  }

  /** The line of a failed call: its gRPC status. */
  private static Line statusLine(int index, String name, RuntimeException e) {
    Status st = Status.fromThrowable(e);
    return errorLine(
        index, name, st.getCode().name(), st.getDescription() == null ? "" : st.getDescription());
  }

  private static Line errorLine(int index, String name, String code, String message) {
    return line(
        index,
        name,
        false,
        w -> {
          w.name("error_code").value(code);
          w.name("error_message").value(message);
        });
  }

  /** Writes the fields of a line after {@code index}, {@code name} and {@code ok}. */
  private interface Fields {
    void write(JsonWriter w) throws IOException;
  }

  private static Line line(int index, String name, boolean ok, Fields fields) {
    StringWriter sw = new StringWriter();
    try (JsonWriter w = new JsonWriter(sw)) {
      w.beginObject();
      w.name("index").value(index);
      w.name("name").value(name);
      w.name("ok").value(ok);
      fields.write(w);
      w.endObject();
      w.flush();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return new Line(ok, sw.toString());
  }

  /**
   * Runs the scenarios in order, writing one JSON line each to {@code out}; events without an id
   * prefix.
   *
   * @return the number of scenarios that failed
   */
  public static int runAll(CouponRankClient client, List<Scenario> scenarios, Writer out)
      throws IOException {
    return runAll(client, scenarios, out, "");
  }

  /**
   * Runs the scenarios in order, writing one JSON line each to {@code out}; the event ids of
   * events scenarios are sent with {@code eventIdPrefix} in front and written without it.
   *
   * @return the number of scenarios that failed
   */
  public static int runAll(
      CouponRankClient client, List<Scenario> scenarios, Writer out, String eventIdPrefix)
      throws IOException {
    int failed = 0;
    for (int i = 0; i < scenarios.size(); i++) {
      Line line = run(client, i, scenarios.get(i), eventIdPrefix);
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
