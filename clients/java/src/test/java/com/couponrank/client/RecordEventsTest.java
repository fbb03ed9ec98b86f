package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.client.testing.FakeCouponRankServer;
import com.couponrank.client.testing.FakeCouponRankServer.ReceivedEventsCall;
import com.couponrank.v1.BehaviourEvent;
import com.couponrank.v1.BehaviourType;
import com.couponrank.v1.ClaimEvent;
import com.couponrank.v1.CouponRankingServiceGrpc;
import com.couponrank.v1.Event;
import com.couponrank.v1.EventResult;
import com.couponrank.v1.EventStatus;
import com.couponrank.v1.ImpressionEvent;
import com.couponrank.v1.Placement;
import com.couponrank.v1.RecordEventsRequest;
import com.couponrank.v1.RecordEventsResponse;
import com.couponrank.v1.RedemptionEvent;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** recordEvents against the fake server (in process) and a server answering too few results. */
@Timeout(30)
class RecordEventsTest {

  static final Instant T0 = Instant.parse("2026-11-01T12:00:00Z");

  private FakeCouponRankServer server;
  private CouponRankClient client;

  @BeforeEach
  void startServer() throws IOException {
    server = FakeCouponRankServer.newBuilder().inProcess().start();
    client = server.clientBuilder().backoff(Duration.ofMillis(1), Duration.ofMillis(5)).bearerToken("tok-1").build();
  }

  @AfterEach
  void tearDown() {
    client.close();
    server.close();
  }

  static List<Event> batch() {
    return List.of(
        Conversions.event("imp-1", "u-1", T0)
            .setImpression(ImpressionEvent.newBuilder()
                .setRequestId("r-1").setCouponId("c1").setPosition(1).setPlacement(Placement.PLACEMENT_CHECKOUT))
            .build(),
        Conversions.event("clm-1", "u-1", T0.plusSeconds(5))
            .setClaim(ClaimEvent.newBuilder().setCouponId("c1").setImpressionEventId("imp-1"))
            .build(),
        Conversions.event("bad-1", "u-1", T0).build(), // no kind: rejected
        Conversions.event("red-1", "u-1", T0.plusSeconds(180))
            .setRedemption(RedemptionEvent.newBuilder()
                .setCouponId("c1").setOrderId("o-1")
                .setDiscount(Conversions.money("5.00", "USD"))
                .setOrderTotal(Conversions.money("45.99", "USD")))
            .build(),
        Conversions.event("beh-1", "u-1", T0.plusSeconds(180))
            .setBehaviour(BehaviourEvent.newBuilder()
                .setType(BehaviourType.BEHAVIOUR_TYPE_ORDER).setItemId("item-9").setOrderId("o-1")
                .setAmount(Conversions.money("45.99", "USD")))
            .build());
  }

  static List<String> statuses(List<EventResult> results) {
    List<String> out = new ArrayList<>();
    for (EventResult r : results) {
      out.add(r.getEventId() + " " + r.getStatus().name().substring("EVENT_STATUS_".length()));
    }
    return out;
  }

  @Test
  void resultsOnePerEventInOrder() {
    List<EventResult> results = client.recordEvents(batch());
    assertEquals(
        List.of("imp-1 ACCEPTED", "clm-1 ACCEPTED", "bad-1 REJECTED", "red-1 ACCEPTED", "beh-1 ACCEPTED"),
        statuses(results));
    assertTrue(results.get(2).getDetail().startsWith("kind:"), results.get(2).getDetail());
    assertEquals("", results.get(0).getDetail());
    assertThrows(UnsupportedOperationException.class, () -> results.add(EventResult.getDefaultInstance()));

    // Sent again, as after a lost answer: nothing is recorded twice.
    List<Event> again = new ArrayList<>(batch().subList(0, 2));
    again.add(Conversions.event("clm-2", "u-1", T0).setClaim(ClaimEvent.newBuilder().setCouponId("c2")).build());
    assertEquals(List.of("imp-1 DUPLICATE", "clm-1 DUPLICATE", "clm-2 ACCEPTED"), statuses(client.recordEvents(again)));
    assertEquals(5, server.recordedEvents().size());
    assertEquals(batch().get(3), server.recordedEvents().get(2));
  }

  @Test
  void unavailableIsRetriedWithTheSameBatch() {
    server.failNextEvents(2, Status.UNAVAILABLE);
    List<EventResult> results = client.recordEvents(batch(), Duration.ofSeconds(7));
    assertEquals(5, results.size());
    assertEquals(3, server.recordEventsCalls());
    List<ReceivedEventsCall> calls = server.eventCalls();
    for (ReceivedEventsCall call : calls) {
      assertEquals(RecordEventsRequest.newBuilder().addAllEvents(batch()).build(), call.request());
      assertEquals("Bearer tok-1", call.headers().get(CouponRankClient.AUTHORIZATION));
      long left = call.deadline().timeRemaining(TimeUnit.MILLISECONDS);
      assertTrue(left > 0 && left <= 7000, "deadline " + left + " ms, want the call's 7 s");
    }
    assertEquals(List.of(1, 2, 3), calls.stream().map(ReceivedEventsCall::number).toList());
  }

  @Test
  void aBatchSentAgainAfterTheAttemptsRanOutComesBackDuplicate() {
    server.failNextEvents(3, Status.UNAVAILABLE);
    List<Event> events = batch().subList(0, 1);
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.recordEvents(events));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertEquals(3, server.recordEventsCalls()); // maxAttempts
    assertEquals(List.of("imp-1 ACCEPTED"), statuses(client.recordEvents(events)));
    assertEquals(List.of("imp-1 DUPLICATE"), statuses(client.recordEvents(events)));
  }

  @ParameterizedTest
  @EnumSource(
      value = Status.Code.class,
      names = {"PERMISSION_DENIED", "INVALID_ARGUMENT", "UNAUTHENTICATED", "RESOURCE_EXHAUSTED"})
  void otherCodesAreThrownAtOnce(Status.Code code) {
    server.failNextEvents(1, Status.fromCode(code).withDescription("no"));
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.recordEvents(batch()));
    assertEquals(code, e.getStatus().getCode());
    assertEquals("no", e.getStatus().getDescription());
    assertEquals(1, server.recordEventsCalls());
    assertEquals(List.of(), server.recordedEvents());
  }

  @Test
  void batchSizeIsCheckedByTheServer() {
    List<Event> many = new ArrayList<>();
    for (int i = 0; i <= CouponRankClient.MAX_EVENTS_PER_CALL; i++) {
      many.add(Conversions.event("e-" + i, "u-1", T0).setClaim(ClaimEvent.newBuilder().setCouponId("c1")).build());
    }
    for (List<Event> events : List.of(List.<Event>of(), many)) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.recordEvents(events));
      assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().startsWith("events:"), e.getStatus().getDescription());
    }
    assertEquals(
        CouponRankClient.MAX_EVENTS_PER_CALL,
        client.recordEvents(many.subList(0, CouponRankClient.MAX_EVENTS_PER_CALL)).size());
    assertThrows(NullPointerException.class, () -> client.recordEvents(null));
    assertThrows(NullPointerException.class, () -> client.recordEvents(java.util.Arrays.asList((Event) null)));
  }

  @Test
  void asyncRetriesAndFailsWithTheStatusItself() throws Exception {
    server.failNextEvents(1, Status.UNAVAILABLE);
    assertEquals(5, client.recordEventsAsync(batch()).get(10, TimeUnit.SECONDS).size());
    assertEquals(2, server.recordEventsCalls());

    server.failNextEvents(1, Status.PERMISSION_DENIED);
    Throwable[] seen = new Throwable[1];
    ExecutionException e =
        assertThrows(
            ExecutionException.class,
            () -> client.recordEventsAsync(batch()).whenComplete((v, t) -> seen[0] = t).get(10, TimeUnit.SECONDS));
    assertEquals(Status.Code.PERMISSION_DENIED, Status.fromThrowable(e.getCause()).getCode());
    assertInstanceOf(StatusRuntimeException.class, seen[0], "not wrapped in a CompletionException");
  }

  /** A server whose RecordEvents answers one result too few. */
  @Test
  void anAnswerWithoutOneResultPerEventIsInternal() throws Exception {
    String name = InProcessServerBuilder.generateName();
    Server shortServer =
        InProcessServerBuilder.forName(name)
            .addService(
                new CouponRankingServiceGrpc.CouponRankingServiceImplBase() {
                  @Override
                  public void recordEvents(RecordEventsRequest req, StreamObserver<RecordEventsResponse> obs) {
                    RecordEventsResponse.Builder res = RecordEventsResponse.newBuilder();
                    for (Event e : req.getEventsList().subList(1, req.getEventsCount())) {
                      res.addResults(EventResult.newBuilder().setEventId(e.getEventId()).setStatus(EventStatus.EVENT_STATUS_ACCEPTED));
                    }
                    obs.onNext(res.build());
                    obs.onCompleted();
                  }
                })
            .build()
            .start();
    ManagedChannel ch = InProcessChannelBuilder.forName(name).build();
    try (CouponRankClient c = CouponRankClient.newBuilder().channel(ch).defaultDeadline(Duration.ofSeconds(10)).build()) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> c.recordEvents(batch()));
      assertEquals(Status.Code.INTERNAL, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().contains("4 results for 5 events"), e.getStatus().getDescription());
      ExecutionException async =
          assertThrows(ExecutionException.class, () -> c.recordEventsAsync(batch()).get(10, TimeUnit.SECONDS));
      assertEquals(Status.Code.INTERNAL, Status.fromThrowable(async.getCause()).getCode());
    } finally {
      ch.shutdownNow();
      shortServer.shutdownNow();
    }
  }
}
