package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.client.testing.FakeCouponRankServer;
import com.couponrank.v1.BehaviourType;
import com.couponrank.v1.CouponRankingServiceGrpc;
import com.couponrank.v1.Event;
import com.couponrank.v1.EventResult;
import com.couponrank.v1.EventStatus;
import com.couponrank.v1.IneligibilityReason;
import com.couponrank.v1.IneligibleCoupon;
import com.couponrank.v1.Placement;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.couponrank.v1.RankedCoupon;
import com.couponrank.v1.Reason;
import com.couponrank.v1.RecordEventsRequest;
import com.couponrank.v1.RecordEventsResponse;
import com.couponrank.v1.RequestContext;
import com.google.gson.JsonPrimitive;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The scenario format and the Example CLI, end to end over a real Netty server on 127.0.0.1
 * (FakeCouponRankServer). The
 * expected lines are the Go client's output for the same input (internal/scenario tests), except
 * for number formatting.
 */
@Timeout(30)
class ScenarioRunnerTest {

  static final String INPUT =
      "[\n"
          + "  {\"name\": \"full\", \"request_id\": \"r-1\", \"user_id\": \"u1\", \"candidate_coupon_ids\": [\"c1\", \"c2\", \"c3\"],\n"
          + "   \"placement\": \"cart\", \"cart_total_minor\": 4599, \"currency_code\": \"USD\",\n"
          + "   \"cart_categories\": [\"shoes\"], \"cart_brands\": [\"acme\"], \"cart_merchant_ids\": [\"m1\"],\n"
          + "   \"request_time\": \"2026-11-01T12:00:00Z\", \"top_k\": 2, \"explain\": true, \"max_reasons\": 3, \"deadline_ms\": 2000},\n"
          + "  {\"user_id\": \"u2\", \"placement\": null, \"candidate_coupon_ids\": null},\n"
          + "  {\"name\": \"fails\", \"user_id\": \"bad\"},\n"
          + "  {\"name\": \"bad placement\", \"user_id\": \"u3\", \"placement\": \"basket\"}\n"
          + "]";

  static final String NOTE = "no coupon is active at 2026-12-02T10:00:00Z; \"c1\" .. \"c3\" are valid 2026-06-01 .. 2026-07-31";

  /** The fake server's answers: errors for "bad", a note for "none", else a fixed ranking. */
  static RankCouponsResponse answer(RankCouponsRequest req, int n) {
    if (req.getUserId().equals("bad")) {
      throw Status.INVALID_ARGUMENT.withDescription("bad user").asRuntimeException();
    }
    if (req.getUserId().equals("none")) { // nothing ranked: the server says why
      return RankCouponsResponse.newBuilder().setModelVersion("m1").setNote(NOTE).build();
    }
    return RankCouponsResponse.newBuilder()
        .setRequestId(req.getRequestId())
        .addRankedCoupons(
            RankedCoupon.newBuilder().setCouponId("c2").setRank(1).setScore(1.5)
                .addReasons(Reason.newBuilder().setFeature("f1").setValue(Double.NaN).setContribution(0.25)))
        .addRankedCoupons(RankedCoupon.newBuilder().setCouponId("c1").setRank(2).setScore(1e-7))
        .addIneligibleCoupons(
            IneligibleCoupon.newBuilder().setCouponId("c3")
                .setReason(IneligibilityReason.INELIGIBILITY_REASON_MIN_SPEND_NOT_MET))
        .setModelVersion("m1")
        .setColdStart(req.getUserId().equals("u2"))
        .build();
  }

  private FakeCouponRankServer server;
  private String addr;

  @BeforeEach
  void startServer() throws Exception {
    server = FakeCouponRankServer.start().handler(ScenarioRunnerTest::answer); // Netty, 127.0.0.1
    addr = server.target();
  }

  @AfterEach
  void stopServer() {
    server.close();
  }

  @Test
  void parseBuildsRequests() {
    List<ScenarioRunner.Scenario> list = ScenarioRunner.parse(new StringReader(INPUT));
    assertEquals(4, list.size());
    RankCouponsRequest r = list.get(0).request();
    RequestContext c = r.getContext();
    assertEquals("r-1", r.getRequestId());
    assertEquals("u1", r.getUserId());
    assertEquals(List.of("c1", "c2", "c3"), r.getCandidateCouponIdsList());
    assertEquals(Placement.PLACEMENT_CART, c.getPlacement());
    assertEquals(4599, c.getCartTotal().getAmountMinor());
    assertEquals("USD", c.getCartTotal().getCurrencyCode());
    assertEquals(List.of("shoes"), c.getCartCategoriesList());
    assertEquals(List.of("acme"), c.getCartBrandsList());
    assertEquals(List.of("m1"), c.getCartMerchantIdsList());
    assertEquals(1793534400L, c.getRequestTime().getSeconds());
    assertEquals(2, r.getTopK());
    assertTrue(r.getExplain());
    assertEquals(3, r.getMaxReasons());
    assertEquals(2000, list.get(0).deadline().toMillis());

    RankCouponsRequest minimal = list.get(1).request();
    assertFalse(minimal.getContext().hasCartTotal());
    assertFalse(minimal.getContext().hasRequestTime());
    assertEquals(Placement.PLACEMENT_UNSPECIFIED, minimal.getContext().getPlacement());
    assertNull(list.get(1).deadline());
    assertNull(list.get(3).request(), "bad placement must not build a request");
  }

  @Test
  void parseRejectsBadInput() {
    assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parse(new StringReader("[{\"user_id\": \"u\", \"topk\": 3}]")));
    assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parse(new StringReader("{\"user_id\": \"u\"}")));
    assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parse(new StringReader("[{\"top_k\": \"3\"}]")));
    assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parse(new StringReader("[{\"top_k\": 2.5}]")));
  }

  @Test
  void placements() {
    assertEquals(Placement.PLACEMENT_UNSPECIFIED, ScenarioRunner.parsePlacement(""));
    assertEquals(Placement.PLACEMENT_CART, ScenarioRunner.parsePlacement("cart"));
    assertEquals(Placement.PLACEMENT_CHECKOUT, ScenarioRunner.parsePlacement("CHECKOUT"));
    assertEquals(Placement.PLACEMENT_PRODUCT_PAGE, ScenarioRunner.parsePlacement("PLACEMENT_PRODUCT_PAGE"));
    assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parsePlacement("basket"));
    assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parsePlacement("UNRECOGNIZED"));
    for (String name : List.of("member_centre", "MEMBER_CENTRE", "PLACEMENT_MEMBER_CENTRE")) {
      assertEquals(Placement.PLACEMENT_MEMBER_CENTRE, ScenarioRunner.parsePlacement(name), name);
    }
  }

  @Test
  void membershipIsSentWhenEitherKeyIsPresent() {
    List<ScenarioRunner.Scenario> list =
        ScenarioRunner.parse(
            new StringReader(
                "[{\"user_id\": \"u1\", \"membership_tier\": \"gold\", \"membership_segment_ids\": [\"s1\", \"s2\"],"
                    + " \"placement\": \"member_centre\"},"
                    + " {\"user_id\": \"u2\", \"membership_tier\": \"\"},"
                    + " {\"user_id\": \"u3\", \"membership_segment_ids\": [\"s1\"]},"
                    + " {\"user_id\": \"u4\", \"membership_segment_ids\": []},"
                    + " {\"user_id\": \"u5\"},"
                    + " {\"user_id\": \"u6\", \"membership_tier\": null, \"membership_segment_ids\": null}]"));
    RequestContext c = list.get(0).request().getContext();
    assertEquals(Placement.PLACEMENT_MEMBER_CENTRE, c.getPlacement());
    assertTrue(c.hasMembership());
    assertEquals("gold", c.getMembership().getTier());
    assertEquals(List.of("s1", "s2"), c.getMembership().getSegmentIdsList());
    // "" alone: explicitly not a member; segments alone: tier ""; [] alone: a membership too
    String[][] want = {{"", ""}, {"", "s1"}, {"", ""}};
    for (int i = 1; i <= 3; i++) {
      RequestContext ci = list.get(i).request().getContext();
      assertTrue(ci.hasMembership(), "scenario " + i);
      assertEquals(want[i - 1][0], ci.getMembership().getTier(), "scenario " + i);
      assertEquals(want[i - 1][1], String.join(",", ci.getMembership().getSegmentIdsList()), "scenario " + i);
    }
    assertFalse(list.get(4).request().getContext().hasMembership(), "no keys: the server's membership");
    assertFalse(list.get(5).request().getContext().hasMembership(), "null is absent");
    for (String bad :
        List.of(
            "[{\"membership_tier\": 1}]",
            "[{\"membership_tier\": [\"gold\"]}]",
            "[{\"membership_segment_ids\": \"s1\"}]",
            "[{\"membership_segment_ids\": [\"s1\", 2]}]",
            "[{\"membership\": {\"tier\": \"gold\"}}]")) {
      assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parse(new StringReader(bad)), bad);
    }
  }

  @Test
  void notInAudienceIsWrittenByItsEnumName() {
    server.respondWith(
        RankCouponsResponse.newBuilder()
            .addIneligibleCoupons(
                IneligibleCoupon.newBuilder().setCouponId("c9")
                    .setReason(IneligibilityReason.INELIGIBILITY_REASON_NOT_IN_AUDIENCE)
                    .setDetail("members only"))
            .build());
    List<ScenarioRunner.Scenario> list =
        ScenarioRunner.parse(new StringReader("[{\"user_id\":\"u1\",\"membership_tier\":\"gold\"}]"));
    try (CouponRankClient client =
        CouponRankClient.newBuilder().target(addr).defaultDeadline(Duration.ofSeconds(10)).build()) {
      String line = ScenarioRunner.run(client, 0, list.get(0)).json();
      assertTrue(
          line.contains("\"ineligible\":[{\"coupon_id\":\"c9\",\"reason\":\"INELIGIBILITY_REASON_NOT_IN_AUDIENCE\"}]"), line);
    }
    assertEquals("gold", server.requests().get(0).getContext().getMembership().getTier());
  }

  @Test
  void exampleMembershipFlags() {
    PrintStream devNull = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
    String[][] args = {
      {}, // no membership: the server's stored one
      {"-membership-tier", ""}, // explicitly not a member
      {"-membership-tier", "gold", "-membership-segments", "s1, s2"},
      {"-membership-segments=s1"}, // tier ""
    };
    String[] want = {"unset", "/", "gold/s1|s2", "/s1"};
    for (int i = 0; i < args.length; i++) {
      List<String> a = new java.util.ArrayList<>(
          List.of("-addr", addr, "-user", "u1", "-placement", "member_centre", "-timeout", "10s"));
      a.addAll(List.of(args[i]));
      assertEquals(0, Example.run(a.toArray(new String[0]), System.in, devNull, System.err), a.toString());
      RequestContext c = server.requests().get(i).getContext();
      assertEquals(Placement.PLACEMENT_MEMBER_CENTRE, c.getPlacement());
      String got = c.hasMembership()
          ? c.getMembership().getTier() + "/" + String.join("|", c.getMembership().getSegmentIdsList())
          : "unset";
      assertEquals(want[i], got, a.toString());
    }
  }

  @Test
  void exampleScenarioModeWritesOneLinePerScenario(@TempDir Path dir) throws Exception {
    Path file = dir.resolve("s.json");
    Files.writeString(file, INPUT);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int code =
        Example.run(new String[] {"-addr", addr, "--scenarios", file.toString()}, System.in,
            new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
    assertEquals(1, code, "two scenarios fail, so exit 1; stderr: " + err);
    String[] lines = out.toString(StandardCharsets.UTF_8).split("\n");
    assertEquals(4, lines.length);
    assertEquals(
        "{\"index\":0,\"name\":\"full\",\"ok\":true,"
            + "\"ranked\":[{\"coupon_id\":\"c2\",\"rank\":1,\"score\":1.5,\"reasons\":[{\"feature\":\"f1\",\"value\":null,\"contribution\":0.25}]},"
            + "{\"coupon_id\":\"c1\",\"rank\":2,\"score\":1.0E-7,\"reasons\":[]}],"
            + "\"ineligible\":[{\"coupon_id\":\"c3\",\"reason\":\"INELIGIBILITY_REASON_MIN_SPEND_NOT_MET\"}],"
            + "\"model_version\":\"m1\",\"cold_start\":false,\"degraded\":false,\"degraded_reason\":\"DEGRADED_REASON_UNSPECIFIED\",\"note\":\"\"}",
        lines[0]);
    assertEquals(
        "{\"index\":1,\"name\":\"\",\"ok\":true,"
            + "\"ranked\":[{\"coupon_id\":\"c2\",\"rank\":1,\"score\":1.5},{\"coupon_id\":\"c1\",\"rank\":2,\"score\":1.0E-7}],"
            + "\"ineligible\":[{\"coupon_id\":\"c3\",\"reason\":\"INELIGIBILITY_REASON_MIN_SPEND_NOT_MET\"}],"
            + "\"model_version\":\"m1\",\"cold_start\":true,\"degraded\":false,\"degraded_reason\":\"DEGRADED_REASON_UNSPECIFIED\",\"note\":\"\"}",
        lines[1]);
    assertEquals(
        "{\"index\":2,\"name\":\"fails\",\"ok\":false,\"error_code\":\"INVALID_ARGUMENT\",\"error_message\":\"bad user\"}",
        lines[2]);
    assertTrue(lines[3].startsWith("{\"index\":3,\"name\":\"bad placement\",\"ok\":false,\"error_code\":\"CLIENT_ERROR\""), lines[3]);

    // The first request went out as written, with the scenario's deadline.
    RankCouponsRequest sent = server.requests().get(0);
    assertEquals(4599, sent.getContext().getCartTotal().getAmountMinor());
    long left = server.calls().get(0).deadline().timeRemaining(TimeUnit.MILLISECONDS);
    assertTrue(left > 1000 && left <= 2000, "deadline in " + left + " ms");
  }

  @Test
  void noteOnEveryOkLineAndOnlyThere() {
    List<ScenarioRunner.Scenario> list =
        ScenarioRunner.parse(new StringReader("[{\"user_id\":\"none\"},{\"user_id\":\"bad\"},{\"user_id\":\"u1\"}]"));
    try (CouponRankClient client =
        CouponRankClient.newBuilder().target(addr).defaultDeadline(Duration.ofSeconds(10)).build()) {
      assertEquals(
          "{\"index\":0,\"name\":\"\",\"ok\":true,\"ranked\":[],\"ineligible\":[],"
              + "\"model_version\":\"m1\",\"cold_start\":false,\"degraded\":false,"
              + "\"degraded_reason\":\"DEGRADED_REASON_UNSPECIFIED\","
              + "\"note\":\"no coupon is active at 2026-12-02T10:00:00Z; \\\"c1\\\" .. \\\"c3\\\" are valid 2026-06-01 .. 2026-07-31\"}",
          ScenarioRunner.run(client, 0, list.get(0)).json());
      String error = ScenarioRunner.run(client, 1, list.get(1)).json();
      assertFalse(error.contains("\"note\""), error);
      assertTrue(ScenarioRunner.run(client, 2, list.get(2)).json().endsWith(",\"note\":\"\"}"));
    }
  }

  @Test
  void exampleSingleRequestNothingRanked() {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int code =
        Example.run(new String[] {"-addr", addr, "-user", "none"}, System.in,
            new PrintStream(out, true, StandardCharsets.UTF_8), System.err);
    assertEquals(0, code);
    assertTrue(out.toString(StandardCharsets.UTF_8).contains("nothing ranked: " + NOTE + "\n"), out.toString(StandardCharsets.UTF_8));
  }

  @Test
  void exampleScenariosFromStdin() {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int code =
        Example.run(new String[] {"-addr=" + addr, "-scenarios", "-"},
            new ByteArrayInputStream("[{\"user_id\":\"u9\"}]".getBytes(StandardCharsets.UTF_8)),
            new PrintStream(out, true, StandardCharsets.UTF_8), System.err);
    assertEquals(0, code);
    assertTrue(out.toString(StandardCharsets.UTF_8).startsWith("{\"index\":0,\"name\":\"\",\"ok\":true,"));
  }

  @Test
  void exampleSingleRequest() {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int code =
        Example.run(
            new String[] {"-addr", addr, "-user", "u1", "-placement", "cart", "-coupons", "c1, c2",
                "-cart-total", "1999", "-categories", "shoes", "-top-k", "3", "-explain", "-max-reasons", "4", "-timeout", "2s"},
            System.in, new PrintStream(out, true, StandardCharsets.UTF_8), System.err);
    assertEquals(0, code);
    assertTrue(out.toString(StandardCharsets.UTF_8).contains("c2"));
    RankCouponsRequest sent = server.requests().get(0);
    assertEquals(List.of("c1", "c2"), sent.getCandidateCouponIdsList());
    assertEquals(Placement.PLACEMENT_CART, sent.getContext().getPlacement());
    assertEquals(1999, sent.getContext().getCartTotal().getAmountMinor());
    assertEquals("USD", sent.getContext().getCartTotal().getCurrencyCode());
    assertEquals(3, sent.getTopK());
    assertTrue(sent.getExplain());
    assertEquals(4, sent.getMaxReasons());
  }

  @Test
  void exampleUsageErrors() {
    PrintStream devNull = new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8);
    assertEquals(2, Example.run(new String[] {"-addr", addr}, System.in, devNull, devNull));
    assertEquals(2, Example.run(new String[] {"-nope"}, System.in, devNull, devNull));
    assertEquals(2, Example.run(new String[] {"-user", "u", "-attempts", "0"}, System.in, devNull, devNull));
    assertEquals(2, Example.run(new String[] {"-user", "u", "-timeout", "soon"}, System.in, devNull, devNull));
  }

  @Test
  void exampleModelInfo() {
    server.failModelInfo(Status.UNIMPLEMENTED); // as a server without the method: exit 1
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    assertEquals(1, Example.run(new String[] {"-addr", addr, "-model-info"}, System.in, System.out,
        new PrintStream(err, true, StandardCharsets.UTF_8)));
    assertTrue(err.toString(StandardCharsets.UTF_8).contains("UNIMPLEMENTED"), err.toString(StandardCharsets.UTF_8));
  }

  @Test
  void exampleScenarioErrorWhenServerIsDown() throws Exception {
    int port;
    try (java.net.ServerSocket s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort();
    }
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int code =
        Example.run(
            new String[] {"-addr", "127.0.0.1:" + port, "-attempts", "2", "-connect-timeout", "200ms", "-scenarios", "-"},
            new ByteArrayInputStream("[{\"user_id\":\"u1\"}]".getBytes(StandardCharsets.UTF_8)),
            new PrintStream(out, true, StandardCharsets.UTF_8), System.err);
    assertEquals(1, code);
    assertTrue(out.toString(StandardCharsets.UTF_8).contains("\"ok\":false,\"error_code\":\"UNAVAILABLE\""), out.toString());
  }

  /** Parses the scenarios of a JSON text. */
  static List<ScenarioRunner.Scenario> parse(String json) {
    return ScenarioRunner.parse(new StringReader(json));
  }

  @Test
  void eventsParseErrors() {
    String[][] cases = {
      // only name and deadline_ms go with events; the first other key (sorted) is named
      {"[{\"events\": [], \"user_id\": \"u\"}]", "scenarios[0].user_id: not used with \"events\""},
      {"[{\"name\": \"n\", \"events\": [], \"top_k\": 1, \"explain\": true}]", "scenarios[0].explain: not used with \"events\""},
      {"[{\"user_id\": \"u\"}, {\"events\": [], \"request_id\": \"\"}]", "scenarios[1].request_id: not used with \"events\""},
      // the events are checked first
      {"[{\"events\": [{\"colour\": \"red\"}], \"user_id\": \"u\"}]", "scenarios[0].events[0]: unknown key \"colour\""},
      {"[{\"events\": {}}]", "scenarios[0].events: want a list of objects"},
      {"[{\"events\": \"e-1\"}]", "scenarios[0].events: want a list of objects"},
      {"[{\"events\": [{}, 1]}]", "scenarios[0].events[1]: not an object"},
      {"[{\"events\": [{}, {\"kind\": \"claim\", \"zebra\": 1, \"colour\": \"red\"}]}]", "scenarios[0].events[1]: unknown key \"colour\""},
      {"[{\"events\": [{\"event_id\": 7}]}]", "scenarios[0].events[0].event_id: want a string"},
      {"[{\"events\": [{\"behaviour_type\": [\"view\"]}]}]", "scenarios[0].events[0].behaviour_type: want a string"},
      {"[{\"events\": [{\"position\": \"1\"}]}]", "scenarios[0].events[0].position: want an integer"},
      {"[{\"events\": [{\"amount_minor\": 1.5}]}]", "scenarios[0].events[0].amount_minor: want an integer"},
      {"[{\"events\": [{\"discount_minor\": true}]}]", "scenarios[0].events[0].discount_minor: want an integer"},
      {"[{\"events\": [], \"name\": 3}]", "scenarios[0].name: want a string"},
      {"[{\"events\": [], \"deadline_ms\": \"1s\"}]", "scenarios[0].deadline_ms: want an integer"},
      {"[{\"user_id\": \"u\", \"event\": []}]", "scenarios[0]: unknown key \"event\""},
    };
    for (String[] c : cases) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> parse(c[0]), c[0]);
      assertEquals(c[1], e.getMessage(), c[0]);
    }
  }

  @Test
  void eventsScenarioParses() {
    List<ScenarioRunner.Scenario> list =
        parse(
            "[{\"name\": \"ev\", \"deadline_ms\": 1500, \"events\": [{\"event_id\": null, \"kind\": null, \"coupon_id\": null}],"
                + " \"user_id\": null, \"top_k\": null},"
                + " {\"events\": []},"
                + " {\"user_id\": \"u\", \"events\": null}]");
    ScenarioRunner.Scenario s = list.get(0);
    assertTrue(s.hasEvents());
    assertNull(s.request(), "an events scenario sends no ranking");
    assertEquals(1500, s.deadline().toMillis());
    // null is absent: an event without a kind and nothing else
    assertEquals(List.of(Event.getDefaultInstance()), s.events("p/"));
    assertTrue(list.get(1).hasEvents());
    assertEquals(List.of(), list.get(1).events(""));
    assertNull(list.get(1).deadline());
    assertFalse(list.get(2).hasEvents(), "\"events\": null is absent");
    assertEquals("u", list.get(2).request().getUserId());
    assertThrows(IllegalStateException.class, () -> list.get(2).events(""));
  }

  static final String EVERY_KIND =
      "[{\"events\": ["
          + "{\"event_id\": \"e-imp\", \"user_id\": \"u1\", \"event_time\": \"2026-11-01T12:00:00.5+01:00\", \"kind\": \"impression\","
          + " \"coupon_id\": \"c1\", \"request_id\": \"r-1\", \"position\": 2, \"placement\": \"checkout\"},"
          + "{\"event_id\": \"e-claim\", \"kind\": \"claim\", \"coupon_id\": \"c1\", \"impression_event_id\": \"e-imp\"},"
          + "{\"kind\": \"claim\"},"
          + "{\"event_id\": \"e-red\", \"kind\": \"redemption\", \"coupon_id\": \"c1\", \"order_id\": \"o-1\","
          + " \"impression_event_id\": \"\", \"discount_minor\": 100, \"currency_code\": \"USD\"},"
          + "{\"event_id\": \"e-red-2\", \"kind\": \"redemption\", \"order_total_minor\": 5000},"
          + "{\"event_id\": \"e-view\", \"kind\": \"behaviour\", \"behaviour_type\": \" View \", \"item_id\": \"i1\"},"
          + "{\"event_id\": \"e-order\", \"kind\": \"behaviour\", \"behaviour_type\": \"BEHAVIOUR_TYPE_ORDER\", \"item_id\": \"i1\","
          + " \"order_id\": \"o-1\", \"amount_minor\": 0, \"currency_code\": \"USD\"},"
          + "{\"event_id\": \"e-cart\", \"kind\": \"behaviour\", \"behaviour_type\": \"ADD_TO_CART\"},"
          + "{\"event_id\": \"e-none\", \"kind\": \"behaviour\", \"behaviour_type\": \"\", \"event_time\": \"\"},"
          + "{\"event_id\": \"e-no-kind\", \"user_id\": \"u1\"}"
          + "]}]";

  @Test
  void eventsConvertToEvents() throws Exception {
    List<Event> events = parse(EVERY_KIND).get(0).events("java/");
    assertEquals(10, events.size());

    Event imp = events.get(0);
    assertEquals("java/e-imp", imp.getEventId());
    assertEquals("u1", imp.getUserId());
    assertEquals(1793530800L, imp.getEventTime().getSeconds()); // 11:00:00Z
    assertEquals(500_000_000, imp.getEventTime().getNanos());
    assertEquals(Event.KindCase.IMPRESSION, imp.getKindCase());
    assertEquals("c1", imp.getImpression().getCouponId());
    assertEquals("r-1", imp.getImpression().getRequestId(), "a request id is not an event id: no prefix");
    assertEquals(2, imp.getImpression().getPosition());
    assertEquals(Placement.PLACEMENT_CHECKOUT, imp.getImpression().getPlacement());

    Event claim = events.get(1);
    assertEquals("java/e-claim", claim.getEventId());
    assertEquals("c1", claim.getClaim().getCouponId());
    assertEquals("java/e-imp", claim.getClaim().getImpressionEventId());
    assertFalse(claim.hasEventTime());

    // a claim without fields is still a claim, on the wire too; an absent event id stays empty
    Event empty = Event.parseFrom(events.get(2).toByteArray());
    assertEquals(Event.KindCase.CLAIM, empty.getKindCase());
    assertEquals("", empty.getEventId());
    assertEquals("", empty.getClaim().getImpressionEventId());

    Event red = events.get(3);
    assertEquals(Event.KindCase.REDEMPTION, red.getKindCase());
    assertEquals("o-1", red.getRedemption().getOrderId());
    assertEquals("", red.getRedemption().getImpressionEventId(), "an empty id gets no prefix");
    assertTrue(red.getRedemption().hasDiscount());
    assertEquals(100, red.getRedemption().getDiscount().getAmountMinor());
    assertEquals("USD", red.getRedemption().getDiscount().getCurrencyCode());
    assertFalse(red.getRedemption().hasOrderTotal(), "no order_total_minor: no order total");
    Event red2 = events.get(4);
    assertFalse(red2.getRedemption().hasDiscount());
    assertTrue(red2.getRedemption().hasOrderTotal());
    assertEquals(5000, red2.getRedemption().getOrderTotal().getAmountMinor());
    assertEquals("", red2.getRedemption().getOrderTotal().getCurrencyCode());

    Event view = events.get(5);
    assertEquals(BehaviourType.BEHAVIOUR_TYPE_VIEW, view.getBehaviour().getType());
    assertEquals("i1", view.getBehaviour().getItemId());
    assertFalse(view.getBehaviour().hasAmount(), "no amount_minor: no amount");
    Event order = events.get(6);
    assertEquals(BehaviourType.BEHAVIOUR_TYPE_ORDER, order.getBehaviour().getType());
    assertEquals("o-1", order.getBehaviour().getOrderId());
    assertTrue(order.getBehaviour().hasAmount(), "amount_minor 0 is present: an amount");
    assertEquals(0, order.getBehaviour().getAmount().getAmountMinor());
    assertEquals("USD", order.getBehaviour().getAmount().getCurrencyCode());
    assertEquals(BehaviourType.BEHAVIOUR_TYPE_ADD_TO_CART, events.get(7).getBehaviour().getType());
    Event none = events.get(8);
    assertEquals(Event.KindCase.BEHAVIOUR, none.getKindCase());
    assertEquals(BehaviourType.BEHAVIOUR_TYPE_UNSPECIFIED, none.getBehaviour().getType());
    assertFalse(none.hasEventTime(), "an empty event_time is not set");

    Event noKind = events.get(9);
    assertEquals(Event.KindCase.KIND_NOT_SET, noKind.getKindCase());
    assertEquals("java/e-no-kind", noKind.getEventId());

    // without a prefix the ids go as written
    assertEquals("e-claim", parse(EVERY_KIND).get(0).events("").get(1).getEventId());
    assertEquals("e-imp", parse(EVERY_KIND).get(0).events("").get(1).getClaim().getImpressionEventId());
  }

  @Test
  void behaviourTypes() {
    assertEquals(BehaviourType.BEHAVIOUR_TYPE_UNSPECIFIED, ScenarioRunner.parseBehaviourType(""));
    for (String name : List.of("favourite", "FAVOURITE", "BEHAVIOUR_TYPE_FAVOURITE", "behaviour_type_favourite")) {
      assertEquals(BehaviourType.BEHAVIOUR_TYPE_FAVOURITE, ScenarioRunner.parseBehaviourType(name), name);
    }
    assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parseBehaviourType("purchase"));
    assertThrows(IllegalArgumentException.class, () -> ScenarioRunner.parseBehaviourType("UNRECOGNIZED"));
  }

  @Test
  void eventsTheClientRefusesAreClientErrorsAndSendNothing() {
    String[][] cases = {
      {"{\"event_id\": \"e-1\", \"kind\": \"purchase\"}", "kind: unknown kind \"purchase\" (impression, claim, redemption or behaviour)"},
      {"{\"kind\": \"Claim\"}", "kind: unknown kind \"Claim\" (impression, claim, redemption or behaviour)"},
      {"{\"kind\": \"\"}", "kind: unknown kind \"\" (impression, claim, redemption or behaviour)"},
      {"{\"kind\": \"behaviour\", \"item_id\": \"i1\", \"position\": 1, \"coupon_id\": \"c1\"}", "coupon_id: not a field of behaviour events"},
      {"{\"kind\": \"claim\", \"order_id\": \"o-1\"}", "order_id: not a field of claim events"},
      {"{\"event_id\": \"e-1\", \"coupon_id\": \"c1\"}", "coupon_id: not a field of an event without a kind"},
      {"{\"kind\": \"impression\", \"placement\": \"basket\"}", "placement: unknown placement \"basket\""},
      {"{\"kind\": \"behaviour\", \"behaviour_type\": \"purchase\"}", "behaviour_type: unknown behaviour type \"purchase\""},
      {"{\"kind\": \"impression\", \"position\": 2147483648}", "position: 2147483648 is out of range (int32)"},
    };
    try (CouponRankClient client = server.newClient()) {
      for (String[] c : cases) {
        // the bad event second: the message names it
        String json = "[{\"name\": \"bad\", \"events\": [{\"kind\": \"claim\"}, " + c[0] + "]}]";
        ScenarioRunner.Line line = ScenarioRunner.run(client, 3, parse(json).get(0), "java/");
        assertFalse(line.ok(), json);
        assertEquals(
            "{\"index\":3,\"name\":\"bad\",\"ok\":false,\"error_code\":\"CLIENT_ERROR\",\"error_message\":"
                + new JsonPrimitive("events[1]." + c[1])
                + "}",
            line.json(),
            json);
      }
      // a bad event_time: no zone, or not a time
      for (String t : List.of("2026-11-01T12:00:00", "yesterday")) {
        String json = "[{\"events\": [{\"event_id\": \"e-1\", \"event_time\": \"" + t + "\"}]}]";
        ScenarioRunner.Line line = ScenarioRunner.run(client, 0, parse(json).get(0), "");
        assertTrue(line.json().contains("\"error_code\":\"CLIENT_ERROR\",\"error_message\":\"events[0].event_time: "), line.json());
      }
    }
    assertEquals(0, server.recordEventsCalls(), "nothing sent");
  }

  @Test
  void eventsLinesCarryEachResultWithoutThePrefix() {
    String json =
        "[{\"name\": \"ev\", \"deadline_ms\": 2000, \"events\": ["
            + "{\"event_id\": \"e-1\", \"user_id\": \"u1\", \"event_time\": \"2026-11-01T12:00:00Z\", \"kind\": \"behaviour\","
            + " \"behaviour_type\": \"view\", \"item_id\": \"i1\"},"
            + "{\"event_id\": \"e-1\", \"user_id\": \"u1\", \"event_time\": \"2026-11-01T12:00:00Z\", \"kind\": \"behaviour\","
            + " \"behaviour_type\": \"view\", \"item_id\": \"i1\"},"
            + "{\"user_id\": \"u1\", \"event_time\": \"2026-11-01T12:00:00Z\", \"kind\": \"claim\", \"coupon_id\": \"c1\"},"
            + "{\"event_id\": \"e-2\", \"user_id\": \"u1\", \"event_time\": \"2026-11-01T12:00:00Z\", \"kind\": \"claim\","
            + " \"impression_event_id\": \"e-0\"}]},"
            + " {\"name\": \"empty\", \"events\": []}]";
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    int code =
        Example.run(
            new String[] {"-addr", addr, "-event-id-prefix", "java/", "-scenarios", "-"},
            new ByteArrayInputStream(json.getBytes(StandardCharsets.UTF_8)),
            new PrintStream(out, true, StandardCharsets.UTF_8), System.err);
    assertEquals(1, code, "the empty batch fails");
    String[] lines = out.toString(StandardCharsets.UTF_8).split("\n");
    assertEquals(2, lines.length);
    assertEquals(
        "{\"index\":0,\"name\":\"ev\",\"ok\":true,\"results\":["
            + "{\"event_id\":\"e-1\",\"status\":\"EVENT_STATUS_ACCEPTED\",\"detail\":\"\"},"
            + "{\"event_id\":\"e-1\",\"status\":\"EVENT_STATUS_DUPLICATE\",\"detail\":\"\"},"
            + "{\"event_id\":\"\",\"status\":\"EVENT_STATUS_REJECTED\",\"detail\":\"event_id: required\"},"
            + "{\"event_id\":\"e-2\",\"status\":\"EVENT_STATUS_REJECTED\",\"detail\":\"claim.coupon_id: required\"}]}",
        lines[0]);
    assertTrue(
        lines[1].startsWith("{\"index\":1,\"name\":\"empty\",\"ok\":false,\"error_code\":\"INVALID_ARGUMENT\",\"error_message\":\"events:"),
        lines[1]);

    // sent with the prefix on the non-empty ids, with the scenario's deadline
    RecordEventsRequest sent = server.eventCalls().get(0).request();
    assertEquals("java/e-1", sent.getEvents(0).getEventId());
    assertEquals("", sent.getEvents(2).getEventId());
    assertEquals("java/e-0", sent.getEvents(3).getClaim().getImpressionEventId());
    assertEquals(List.of("java/e-1"), server.recordedEvents().stream().map(Event::getEventId).toList());
    long left = server.eventCalls().get(0).deadline().timeRemaining(TimeUnit.MILLISECONDS);
    assertTrue(left > 1000 && left <= 2000, "deadline in " + left + " ms");

    // without -event-id-prefix the ids go as written: e-1 is new to the server
    ByteArrayOutputStream again = new ByteArrayOutputStream();
    assertEquals(
        1,
        Example.run(
            new String[] {"-addr", addr, "-scenarios", "-"},
            new ByteArrayInputStream(json.getBytes(StandardCharsets.UTF_8)),
            new PrintStream(again, true, StandardCharsets.UTF_8), System.err));
    assertTrue(
        again.toString(StandardCharsets.UTF_8).startsWith(
            "{\"index\":0,\"name\":\"ev\",\"ok\":true,\"results\":[{\"event_id\":\"e-1\",\"status\":\"EVENT_STATUS_ACCEPTED\""),
        again.toString(StandardCharsets.UTF_8));
    assertEquals("e-1", server.eventCalls().get(2).request().getEvents(0).getEventId());
  }

  @Test
  void eventsCallErrorsAreErrorLines() {
    server.failNextEvents(1, Status.PERMISSION_DENIED.withDescription("caller may not record events"));
    try (CouponRankClient client = server.newClient()) {
      ScenarioRunner.Line line =
          ScenarioRunner.run(client, 5, parse("[{\"name\": \"denied\", \"events\": [{\"event_id\": \"e-1\"}]}]").get(0), "p/");
      assertFalse(line.ok());
      assertEquals(
          "{\"index\":5,\"name\":\"denied\",\"ok\":false,\"error_code\":\"PERMISSION_DENIED\","
              + "\"error_message\":\"caller may not record events\"}",
          line.json());
    }
  }

  @Test
  void eventsResultsAsAnsweredOnlyAMatchingPrefixComesOff() throws Exception {
    // a server answering ids the client did not send and a status newer than the client
    String name = InProcessServerBuilder.generateName();
    Server inProcess =
        InProcessServerBuilder.forName(name)
            .directExecutor()
            .addService(
                new CouponRankingServiceGrpc.CouponRankingServiceImplBase() {
                  @Override
                  public void recordEvents(RecordEventsRequest req, StreamObserver<RecordEventsResponse> obs) {
                    obs.onNext(
                        RecordEventsResponse.newBuilder()
                            .addResults(EventResult.newBuilder().setEventId("p/p/e-1").setStatus(EventStatus.EVENT_STATUS_ACCEPTED))
                            .addResults(EventResult.newBuilder().setEventId("q/e-2").setStatusValue(42).setDetail("new"))
                            .build());
                    obs.onCompleted();
                  }
                })
            .build()
            .start();
    ManagedChannel channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    try (CouponRankClient client =
        CouponRankClient.newBuilder().channel(channel).defaultDeadline(Duration.ofSeconds(10)).build()) {
      ScenarioRunner.Line line =
          ScenarioRunner.run(client, 0, parse("[{\"events\": [{\"event_id\": \"e-1\"}, {\"event_id\": \"e-2\"}]}]").get(0), "p/");
      assertTrue(line.ok());
      assertEquals(
          "{\"index\":0,\"name\":\"\",\"ok\":true,\"results\":["
              + "{\"event_id\":\"p/e-1\",\"status\":\"EVENT_STATUS_ACCEPTED\",\"detail\":\"\"},"
              + "{\"event_id\":\"q/e-2\",\"status\":\"42\",\"detail\":\"new\"}]}",
          line.json());
    } finally {
      channel.shutdownNow(); // a channel passed in is the caller's to close
      inProcess.shutdownNow();
    }
  }

  @Test
  void durations() {
    assertEquals(500, Example.parseDuration("500ms").toMillis());
    assertEquals(1500, Example.parseDuration("1.5s").toMillis());
    assertEquals(90_000, Example.parseDuration("1m30s").toMillis());
    assertThrows(IllegalArgumentException.class, () -> Example.parseDuration("5"));
    assertThrows(IllegalArgumentException.class, () -> Example.parseDuration(""));
  }
}
