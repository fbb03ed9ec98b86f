package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.client.testing.FakeCouponRankServer;
import com.couponrank.v1.IneligibilityReason;
import com.couponrank.v1.IneligibleCoupon;
import com.couponrank.v1.Placement;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.couponrank.v1.RankedCoupon;
import com.couponrank.v1.Reason;
import com.couponrank.v1.RequestContext;
import io.grpc.Status;
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

  @Test
  void durations() {
    assertEquals(500, Example.parseDuration("500ms").toMillis());
    assertEquals(1500, Example.parseDuration("1.5s").toMillis());
    assertEquals(90_000, Example.parseDuration("1m30s").toMillis());
    assertThrows(IllegalArgumentException.class, () -> Example.parseDuration("5"));
    assertThrows(IllegalArgumentException.class, () -> Example.parseDuration(""));
  }
}
