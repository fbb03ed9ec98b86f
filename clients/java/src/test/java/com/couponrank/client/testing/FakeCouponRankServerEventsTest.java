package com.couponrank.client.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.client.Conversions;
import com.couponrank.client.CouponRankClient;
import com.couponrank.v1.BehaviourEvent;
import com.couponrank.v1.BehaviourType;
import com.couponrank.v1.ClaimEvent;
import com.couponrank.v1.Event;
import com.couponrank.v1.EventResult;
import com.couponrank.v1.EventStatus;
import com.couponrank.v1.ImpressionEvent;
import com.couponrank.v1.Money;
import com.couponrank.v1.Placement;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RedemptionEvent;
import com.google.protobuf.Timestamp;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The fake server's RecordEvents as another team would use it: public API only. */
@Timeout(30)
class FakeCouponRankServerEventsTest {

  static final Instant T0 = Instant.parse("2026-11-01T12:00:00Z");

  static Event claim(String id, String couponId) {
    return Conversions.event(id, "u-1", T0).setClaim(ClaimEvent.newBuilder().setCouponId(couponId)).build();
  }

  static Event.Builder ev() {
    return Conversions.event("e", "u", T0);
  }

  static String check(Event.Builder e) {
    return FakeCouponRankServer.checkEvent(e.build());
  }

  static Money usd(long minor) {
    return Money.newBuilder().setCurrencyCode("USD").setAmountMinor(minor).build();
  }

  @Test
  void checkEventAcceptsWhatNeedsNoData() {
    ImpressionEvent.Builder imp =
        ImpressionEvent.newBuilder().setCouponId("c1").setPosition(1).setPlacement(Placement.PLACEMENT_CART);
    assertNull(check(ev().setImpression(imp)));
    assertNull(check(ev().setClaim(ClaimEvent.newBuilder().setCouponId("c1"))));
    assertNull(check(ev().setRedemption(RedemptionEvent.newBuilder().setCouponId("c1").setDiscount(usd(0)))));
    assertNull(check(ev().setBehaviour(
        BehaviourEvent.newBuilder().setType(BehaviourType.BEHAVIOUR_TYPE_VIEW).setItemId("i1"))));
    assertNull(check(ev().setBehaviour(BehaviourEvent.newBuilder()
        .setType(BehaviourType.BEHAVIOUR_TYPE_ORDER).setItemId("i1").setOrderId("o1").setAmount(usd(100)))));
    // Not checked: the time window, the catalogue.
    assertNull(check(Conversions.event("e", "u", Instant.parse("2001-01-01T00:00:00Z")).setImpression(imp)));
  }

  @Test
  void checkEventRejectsNamingTheField() {
    String long129 = "x".repeat(129);
    ClaimEvent.Builder c1 = ClaimEvent.newBuilder().setCouponId("c1");
    ImpressionEvent.Builder imp =
        ImpressionEvent.newBuilder().setCouponId("c1").setPosition(1).setPlacement(Placement.PLACEMENT_CART);
    Object[][] cases = {
      {ev().setEventId("").setClaim(c1), "event_id: required"},
      {ev().setEventId(long129).setClaim(c1), "event_id: 129 bytes"},
      {ev().setEventId("é".repeat(65)).setClaim(c1), "event_id: 130 bytes"}, // UTF-8 bytes, not chars
      {ev().setUserId("").setClaim(c1), "user_id: required"},
      {ev().clearEventTime().setClaim(c1), "event_time: required"},
      {ev().setEventTime(Timestamp.newBuilder().setNanos(-1)).setClaim(c1), "event_time: "},
      {ev(), "kind: "},
      {ev().setImpression(imp.clone().clearCouponId()), "impression.coupon_id: required"},
      {ev().setImpression(imp.clone().setPosition(0)), "impression.position: must be at least 1"},
      {ev().setImpression(imp.clone().clearPlacement()), "impression.placement: required"},
      {ev().setImpression(imp.clone().setRequestId(long129)), "impression.request_id: 129 bytes"},
      {ev().setClaim(ClaimEvent.getDefaultInstance()), "claim.coupon_id: required"},
      {ev().setRedemption(RedemptionEvent.getDefaultInstance()), "redemption.coupon_id: required"},
      {ev().setRedemption(RedemptionEvent.newBuilder().setCouponId("c1").setDiscount(usd(-1))),
        "redemption.discount: must not be negative"},
      {ev().setRedemption(RedemptionEvent.newBuilder().setCouponId("c1").setOrderTotal(usd(-1))),
        "redemption.order_total: must not be negative"},
      {ev().setBehaviour(BehaviourEvent.newBuilder().setItemId("i1")), "behaviour.type: required"},
      {ev().setBehaviour(BehaviourEvent.newBuilder().setType(BehaviourType.BEHAVIOUR_TYPE_VIEW)),
        "behaviour.item_id: required"},
      {ev().setBehaviour(BehaviourEvent.newBuilder().setType(BehaviourType.BEHAVIOUR_TYPE_ORDER).setItemId("i1")),
        "behaviour.order_id: required"},
      {ev().setBehaviour(BehaviourEvent.newBuilder()
          .setType(BehaviourType.BEHAVIOUR_TYPE_ORDER).setItemId("i1").setOrderId("o1").setAmount(usd(-5))),
        "behaviour.amount: must not be negative"},
    };
    for (Object[] c : cases) {
      String got = check((Event.Builder) c[0]);
      assertTrue(got != null && got.startsWith((String) c[1]), "want " + c[1] + ", got " + got);
    }
  }

  @ParameterizedTest(name = "inProcess={0}")
  @ValueSource(booleans = {false, true})
  void duplicatesByIdAndRejectionsAreNotRecorded(boolean inProcess) throws IOException {
    try (FakeCouponRankServer server = FakeCouponRankServerTest.start(inProcess);
        CouponRankClient client = FakeCouponRankServerTest.client(server)) {
      List<EventResult> res =
          client.recordEvents(List.of(claim("e1", "c1"), claim("e1", "c1"), claim("e2", ""), claim("e3", "c3")));
      assertEquals(EventStatus.EVENT_STATUS_ACCEPTED, res.get(0).getStatus());
      assertEquals(EventStatus.EVENT_STATUS_DUPLICATE, res.get(1).getStatus()); // same id, same batch
      assertEquals(EventStatus.EVENT_STATUS_REJECTED, res.get(2).getStatus());
      assertEquals("claim.coupon_id: required", res.get(2).getDetail());
      assertEquals(List.of(claim("e1", "c1"), claim("e3", "c3")), server.recordedEvents());
      // A rejected event sent again unchanged: the same answer.
      assertEquals(EventStatus.EVENT_STATUS_REJECTED, client.recordEvents(List.of(claim("e2", ""))).get(0).getStatus());
      assertEquals(0, server.rankCouponsCalls());
      assertEquals(2, server.recordEventsCalls());
    }
  }

  @Test
  void eventCheckReplacesTheDefault() throws IOException {
    try (FakeCouponRankServer server = FakeCouponRankServer.newBuilder().inProcess().start();
        CouponRankClient client = FakeCouponRankServerTest.client(server)) {
      server.eventCheck(
          e -> {
            String d = FakeCouponRankServer.checkEvent(e);
            return d != null ? d
                : e.getClaim().getCouponId().equals("c-gone") ? "claim.coupon_id: c-gone is not in the catalogue"
                : "";
          });
      List<EventResult> res = client.recordEvents(List.of(claim("e1", "c1"), claim("e2", "c-gone"), claim("e3", "")));
      assertEquals(EventStatus.EVENT_STATUS_ACCEPTED, res.get(0).getStatus());
      assertEquals("claim.coupon_id: c-gone is not in the catalogue", res.get(1).getDetail());
      assertEquals("claim.coupon_id: required", res.get(2).getDetail());
      server.eventCheck(null);
      assertEquals(EventStatus.EVENT_STATUS_ACCEPTED, client.recordEvents(List.of(claim("e2", "c-gone"))).get(0).getStatus());

      server.eventCheck(e -> {
        throw new IllegalStateException("bug in the check");
      });
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.recordEvents(List.of(claim("e9", "c1"))));
      assertEquals(Status.Code.UNKNOWN, e.getStatus().getCode());
    }
  }

  @Test
  void failNextEventsIsItsOwnQueueAndResetForgetsEvents() throws IOException {
    try (FakeCouponRankServer server = FakeCouponRankServer.newBuilder().inProcess().start();
        CouponRankClient client = FakeCouponRankServerTest.client(server)) {
      server.failNextEvents(1, Status.PERMISSION_DENIED.withDescription("caller may not record events"));
      client.rankCoupons(RankCouponsRequest.newBuilder().setUserId("u-1").build()); // not failed
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.recordEvents(List.of(claim("e1", "c1"))));
      assertEquals(Status.Code.PERMISSION_DENIED, e.getStatus().getCode());
      assertEquals("caller may not record events", e.getStatus().getDescription());
      server.failNext(1, Status.INTERNAL);
      assertEquals(EventStatus.EVENT_STATUS_ACCEPTED, client.recordEvents(List.of(claim("e1", "c1"))).get(0).getStatus());
      assertThrows(IllegalArgumentException.class, () -> server.failNextEvents(1, Status.OK));
      assertThrows(IllegalArgumentException.class, () -> server.failNextEvents(-1, Status.UNAVAILABLE));

      server.reset();
      assertEquals(List.of(), server.recordedEvents());
      assertEquals(0, server.recordEventsCalls());
      assertEquals(EventStatus.EVENT_STATUS_ACCEPTED, client.recordEvents(List.of(claim("e1", "c1"))).get(0).getStatus());
    }
  }

  @Test
  void concurrentBatchesRecordEachEventOnce() throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try (FakeCouponRankServer server = FakeCouponRankServer.start();
        CouponRankClient client = FakeCouponRankServerTest.client(server)) {
      AtomicInteger accepted = new AtomicInteger();
      List<Future<?>> futures = new java.util.ArrayList<>();
      for (int i = 0; i < 8; i++) {
        futures.add(pool.submit(() -> {
          for (EventResult r : client.recordEvents(List.of(claim("a", "c1"), claim("b", "c1"), claim("c", "c1")))) {
            if (r.getStatus() == EventStatus.EVENT_STATUS_ACCEPTED) {
              accepted.incrementAndGet();
            }
          }
        }));
      }
      for (Future<?> f : futures) {
        f.get();
      }
      assertEquals(3, accepted.get());
      assertEquals(3, server.recordedEvents().size());
    } finally {
      pool.shutdownNow();
    }
  }
}
