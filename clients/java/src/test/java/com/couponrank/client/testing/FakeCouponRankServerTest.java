package com.couponrank.client.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.client.CouponRankClient;
import com.couponrank.v1.CouponRankingServiceGrpc;
import com.couponrank.v1.GetModelInfoResponse;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.couponrank.v1.RankedCoupon;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The fake server as another team would use it: public API only, both transports. */
@Timeout(30)
class FakeCouponRankServerTest {

  static FakeCouponRankServer start(boolean inProcess) throws IOException {
    return inProcess ? FakeCouponRankServer.newBuilder().inProcess().start() : FakeCouponRankServer.start();
  }

  static CouponRankClient client(FakeCouponRankServer server) {
    return server.clientBuilder()
        .defaultDeadline(Duration.ofSeconds(10))
        .backoff(Duration.ofMillis(1), Duration.ofMillis(2))
        .build();
  }

  static RankCouponsRequest request(String... candidates) {
    return RankCouponsRequest.newBuilder()
        .setRequestId("r-1")
        .setUserId("u-1")
        .addAllCandidateCouponIds(List.of(candidates))
        .build();
  }

  @ParameterizedTest(name = "inProcess={0}")
  @ValueSource(booleans = {false, true})
  void defaultAnswerRanksTheCandidatesInOrder(boolean inProcess) throws IOException {
    try (FakeCouponRankServer server = start(inProcess);
        CouponRankClient client = client(server)) {
      RankCouponsResponse res = client.rankCoupons(request("c3", "c1", "c2").toBuilder().setTopK(2).build());
      assertEquals(2, res.getRankedCouponsCount());
      assertEquals("c3", res.getRankedCoupons(0).getCouponId());
      assertEquals(1, res.getRankedCoupons(0).getRank());
      assertEquals("c1", res.getRankedCoupons(1).getCouponId());
      assertEquals(2, res.getRankedCoupons(1).getRank());
      assertTrue(res.getRankedCoupons(0).getScore() > res.getRankedCoupons(1).getScore());
      assertEquals(FakeCouponRankServer.DEFAULT_MODEL_VERSION, res.getModelVersion());
      assertEquals("r-1", res.getRequestId());
      assertEquals("", res.getNote());

      RankCouponsResponse none = client.rankCoupons(RankCouponsRequest.newBuilder().setUserId("u").build());
      assertEquals(0, none.getRankedCouponsCount());
      assertFalse(none.getNote().isEmpty());
      assertEquals("fake-2", none.getRequestId(), "no request id: the server assigns one");
    }
  }

  @ParameterizedTest(name = "inProcess={0}")
  @ValueSource(booleans = {false, true})
  void unavailableTwiceThenTheCannedAnswer(boolean inProcess) throws IOException {
    try (FakeCouponRankServer server = start(inProcess);
        CouponRankClient client = client(server)) {
      server
          .respondWith(
              RankCouponsResponse.newBuilder()
                  .addRankedCoupons(RankedCoupon.newBuilder().setCouponId("c9").setRank(1).setScore(0.9))
                  .setModelVersion("m7")
                  .build())
          .failNext(2, Status.UNAVAILABLE);
      RankCouponsResponse res = client.rankCoupons(request("c1"));
      assertEquals("c9", res.getRankedCoupons(0).getCouponId());
      assertEquals("m7", res.getModelVersion());
      assertEquals("r-1", res.getRequestId());
      assertEquals(3, server.rankCouponsCalls());
      assertEquals(3, server.requests().size());
      for (FakeCouponRankServer.ReceivedCall call : server.calls()) {
        assertEquals("u-1", call.request().getUserId());
        assertNotNull(call.deadline(), "the client sends a deadline");
      }
      assertEquals(List.of(1, 2, 3), server.calls().stream().map(FakeCouponRankServer.ReceivedCall::number).toList());
    }
  }

  @Test
  void queuedFailuresComeInOrderAndAreNotRetriedUnlessUnavailable() throws IOException {
    try (FakeCouponRankServer server = start(true);
        CouponRankClient client = client(server)) {
      server.failNext(1, Status.UNAVAILABLE).failNext(1, Status.INVALID_ARGUMENT.withDescription("user_id: bad"));
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
      assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
      assertEquals("user_id: bad", e.getStatus().getDescription());
      assertEquals(2, server.rankCouponsCalls());
      assertEquals(0, client.rankCoupons(request()).getRankedCouponsCount(), "failures used up");
      assertThrows(IllegalArgumentException.class, () -> server.failNext(1, Status.OK));
      assertThrows(IllegalArgumentException.class, () -> server.failNext(-1, Status.INTERNAL));
    }
  }

  @Test
  void handlerSeesTheRequestAndCallNumber() throws IOException {
    try (FakeCouponRankServer server = start(false);
        CouponRankClient client = client(server)) {
      server.handler(
          (req, n) -> {
            if (req.getUserId().isEmpty()) {
              throw Status.INVALID_ARGUMENT.withDescription("user_id: must not be empty").asRuntimeException();
            }
            return RankCouponsResponse.newBuilder().setNote("call " + n + " for " + req.getUserId()).build();
          });
      assertEquals("call 1 for u-1", client.rankCoupons(request()).getNote());
      StatusRuntimeException e =
          assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(RankCouponsRequest.getDefaultInstance()));
      assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());

      server.handler((req, n) -> { throw new IllegalStateException("bug in the test's handler"); });
      assertEquals(
          Status.Code.UNKNOWN,
          assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request())).getStatus().getCode());

      server.respondWith(RankCouponsResponse.newBuilder().setModelVersion("canned").build());
      assertEquals("canned", client.rankCoupons(request()).getModelVersion(), "respondWith replaces the handler");
    }
  }

  @Test
  void handlerReturningNullNeverAnswers() throws IOException {
    try (FakeCouponRankServer server = start(true);
        CouponRankClient client = client(server)) {
      server.handler((req, n) -> null);
      StatusRuntimeException e =
          assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request(), Duration.ofMillis(50)));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
      assertEquals(1, server.rankCouponsCalls());
    }
  }

  @Test
  void recordsHeadersAndAuthority() throws IOException {
    Metadata.Key<String> caller = Metadata.Key.of("x-caller", Metadata.ASCII_STRING_MARSHALLER);
    Metadata headers = new Metadata();
    headers.put(caller, "checkout");
    try (FakeCouponRankServer server = start(false)) {
      ManagedChannel ch = server.newChannel();
      CouponRankingServiceGrpc.newBlockingStub(ch)
          .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers))
          .rankCoupons(request("c1"));
      FakeCouponRankServer.ReceivedCall call = server.calls().get(0);
      assertEquals("checkout", call.headers().get(caller));
      assertEquals(server.target(), call.authority());
      server.close();
      assertTrue(ch.isShutdown(), "close() shuts down the channels it made");
    }
  }

  @Test
  void modelInfo() throws IOException {
    try (FakeCouponRankServer server = start(true);
        CouponRankClient client = client(server)) {
      assertEquals(FakeCouponRankServer.DEFAULT_MODEL_VERSION, client.getModelInfo().getModelVersion());
      server.modelInfo(GetModelInfoResponse.newBuilder().setModelVersion("m2").addFeatureNames("f").build());
      assertEquals("m2", client.getModelInfo().getModelVersion());
      server.failModelInfo(Status.UNAVAILABLE);
      assertEquals(
          Status.Code.UNAVAILABLE,
          assertThrows(StatusRuntimeException.class, client::getModelInfo).getStatus().getCode());
      assertEquals(2 + CouponRankClient.DEFAULT_MAX_ATTEMPTS, server.modelInfoCalls(), "UNAVAILABLE retried");
    }
  }

  @Test
  void resetForgetsEverything() throws IOException {
    try (FakeCouponRankServer server = start(true);
        CouponRankClient client = client(server)) {
      server.respondWith(RankCouponsResponse.newBuilder().setModelVersion("canned").build());
      client.rankCoupons(request("c1"));
      server.failNext(5, Status.INTERNAL).reset();
      assertEquals(0, server.rankCouponsCalls());
      assertTrue(server.calls().isEmpty());
      RankCouponsResponse res = client.rankCoupons(request("c1"));
      assertEquals(FakeCouponRankServer.DEFAULT_MODEL_VERSION, res.getModelVersion());
      assertEquals(1, server.rankCouponsCalls());
    }
  }

  @Test
  void targetsAndPorts() throws IOException {
    try (FakeCouponRankServer netty = start(false);
        FakeCouponRankServer inProcess = start(true)) {
      assertTrue(netty.port() > 0);
      assertEquals("127.0.0.1:" + netty.port(), netty.target());
      assertFalse(netty.isInProcess());
      assertTrue(inProcess.isInProcess());
      assertEquals(-1, inProcess.port());
      assertThrows(IllegalStateException.class, inProcess::target);
      // A client configured from the target alone, as a service under test would be.
      try (CouponRankClient c = CouponRankClient.newBuilder().target(netty.target()).build()) {
        assertEquals("c1", c.rankCoupons(request("c1")).getRankedCoupons(0).getCouponId());
      }
    }
  }

  @Test
  void invalidBuilderOptions() {
    java.nio.file.Path p = java.nio.file.Path.of("x.pem");
    assertThrows(IllegalArgumentException.class, () -> FakeCouponRankServer.newBuilder().inProcess().tls(p, p).start());
    assertThrows(IllegalArgumentException.class, () -> FakeCouponRankServer.newBuilder().requireClientCertificates(p).start());
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> FakeCouponRankServer.newBuilder().tls(p, p).start());
    assertTrue(e.getMessage().contains("x.pem"), e.getMessage());
  }
}
