package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.client.testing.FakeCouponRankServer;
import com.couponrank.v1.GetModelInfoResponse;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.couponrank.v1.RankedCoupon;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.net.ServerSocket;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Tests against a real gRPC server running in process (FakeCouponRankServer, in-process mode). */
@Timeout(30)
class CouponRankClientTest {

  static FakeCouponRankServer.Handler failFirst(int times, Status.Code code) {
    return (req, n) -> {
      if (n <= times) {
        throw Status.fromCode(code).withDescription("failure " + n).asRuntimeException();
      }
      return RankCouponsResponse.newBuilder()
          .setModelVersion("m1")
          .addRankedCoupons(RankedCoupon.newBuilder().setCouponId("c1").setRank(1).setScore(0.5))
          .build();
    };
  }

  private FakeCouponRankServer server;
  private ManagedChannel channel;
  private CouponRankClient client;

  @BeforeEach
  void startServer() throws IOException {
    server = FakeCouponRankServer.newBuilder().inProcess().start();
  }

  /** A client from {@code builder} on an in-process channel to the fake server. */
  private CouponRankClient start(CouponRankClient.Builder builder) {
    channel = server.newChannel();
    client = builder.channel(channel).build();
    return client;
  }

  private static CouponRankClient.Builder fastRetries() {
    return CouponRankClient.newBuilder().backoff(Duration.ofMillis(1), Duration.ofMillis(5));
  }

  private static RankCouponsRequest request() {
    return RankCouponsRequest.newBuilder().setRequestId("r-1").setUserId("u-1").build();
  }

  @AfterEach
  void tearDown() throws InterruptedException {
    if (client != null) {
      client.close();
    }
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    if (server != null) {
      server.close();
    }
  }

  // ---- options ---------------------------------------------------------------------------

  @Test
  void defaults() {
    try (CouponRankClient c = CouponRankClient.newBuilder().target("localhost:1").build()) {
      assertEquals(CouponRankClient.DEFAULT_DEADLINE, c.defaultDeadline());
      assertEquals(CouponRankClient.DEFAULT_MAX_ATTEMPTS, c.maxAttempts());
    }
  }

  @Test
  void invalidOptionsAreRejected() {
    assertThrows(IllegalArgumentException.class, () -> CouponRankClient.newBuilder().build());
    assertThrows(
        IllegalArgumentException.class,
        () -> CouponRankClient.newBuilder().target("x:1").defaultDeadline(Duration.ZERO).build());
    assertThrows(
        IllegalArgumentException.class,
        () -> CouponRankClient.newBuilder().target("x:1").maxAttempts(0).build());
    assertThrows(
        IllegalArgumentException.class,
        () -> CouponRankClient.newBuilder().target("x:1").maxAttempts(CouponRankClient.MAX_ATTEMPTS_LIMIT + 1).build());
    assertThrows(
        IllegalArgumentException.class,
        () -> CouponRankClient.newBuilder().target("x:1").backoff(Duration.ofSeconds(1), Duration.ofMillis(1)).build());
    assertThrows(
        IllegalArgumentException.class,
        () -> CouponRankClient.newBuilder().target("x:1").backoff(Duration.ZERO, Duration.ofMillis(1)).build());
  }

  // ---- retries -----------------------------------------------------------------------------

  @Test
  void retriesUnavailableThenSucceeds() throws IOException {
    server.handler(failFirst(2, Status.Code.UNAVAILABLE));
    start(fastRetries().maxAttempts(3));
    RankCouponsResponse res = client.rankCoupons(request());
    assertEquals("c1", res.getRankedCoupons(0).getCouponId());
    assertEquals("r-1", res.getRequestId());
    assertEquals(3, server.rankCouponsCalls());
  }

  @Test
  void retriesAreBounded() throws IOException {
    server.handler(failFirst(1000, Status.Code.UNAVAILABLE));
    start(fastRetries().maxAttempts(4).defaultDeadline(Duration.ofSeconds(10)));
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertEquals(4, server.rankCouponsCalls());
  }

  @Test
  void maxAttemptsOneDisablesRetries() throws IOException {
    server.handler(failFirst(1, Status.Code.UNAVAILABLE));
    start(fastRetries().maxAttempts(1));
    assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
    assertEquals(1, server.rankCouponsCalls());
  }

  @ParameterizedTest
  @EnumSource(
      value = Status.Code.class,
      names = {"OK", "UNAVAILABLE"},
      mode = EnumSource.Mode.EXCLUDE)
  void otherCodesAreNotRetried(Status.Code code) throws IOException {
    server.handler(failFirst(1000, code));
    start(fastRetries().maxAttempts(5));
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
    assertEquals(code, e.getStatus().getCode());
    assertEquals(1, server.rankCouponsCalls(), "no retry for " + code);
  }

  @ParameterizedTest
  @EnumSource(
      value = Status.Code.class,
      names = {"INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "INTERNAL", "RESOURCE_EXHAUSTED"})
  void otherCodesAreNotRetriedAsync(Status.Code code) throws IOException {
    server.handler(failFirst(1000, code));
    start(fastRetries().maxAttempts(5));
    ExecutionException e =
        assertThrows(ExecutionException.class, () -> client.rankCouponsAsync(request()).get());
    assertEquals(code, Status.fromThrowable(e.getCause()).getCode());
    assertEquals(1, server.rankCouponsCalls());
  }

  @Test
  void asyncRetriesUnavailableThenSucceeds() throws Exception {
    server.handler(failFirst(2, Status.Code.UNAVAILABLE));
    start(fastRetries().maxAttempts(3));
    RankCouponsResponse res = client.rankCouponsAsync(request()).get(5, TimeUnit.SECONDS);
    assertEquals("c1", res.getRankedCoupons(0).getCouponId());
    assertEquals(3, server.rankCouponsCalls());
  }

  @Test
  void asyncRetriesAreBounded() throws Exception {
    server.handler(failFirst(1000, Status.Code.UNAVAILABLE));
    start(fastRetries().maxAttempts(3).defaultDeadline(Duration.ofSeconds(10)));
    ExecutionException e =
        assertThrows(ExecutionException.class, () -> client.rankCouponsAsync(request()).get(5, TimeUnit.SECONDS));
    assertInstanceOf(StatusRuntimeException.class, e.getCause());
    assertEquals(Status.Code.UNAVAILABLE, Status.fromThrowable(e.getCause()).getCode());
    assertEquals(3, server.rankCouponsCalls());
  }

  @Test
  void noRetryWhenBackoffWouldPassTheDeadline() throws IOException {
    server.handler(failFirst(1000, Status.Code.UNAVAILABLE));
    start(CouponRankClient.newBuilder().maxAttempts(5).backoff(Duration.ofSeconds(1), Duration.ofSeconds(1))
        .defaultDeadline(Duration.ofMillis(100)));
    long start = System.nanoTime();
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertEquals(1, server.rankCouponsCalls());
    assertTrue(System.nanoTime() - start < TimeUnit.MILLISECONDS.toNanos(500), "did not sleep");
  }

  @Test
  void retriesWhenServerIsDown() throws IOException {
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort(); // closed again: nothing listens there
    }
    AtomicInteger attempts = new AtomicInteger();
    ManagedChannel ch =
        io.grpc.ManagedChannelBuilder.forTarget("127.0.0.1:" + port)
            .usePlaintext()
            .disableRetry()
            .intercept(
                new io.grpc.ClientInterceptor() {
                  @Override
                  public <Q, R> io.grpc.ClientCall<Q, R> interceptCall(
                      io.grpc.MethodDescriptor<Q, R> m, io.grpc.CallOptions o, io.grpc.Channel next) {
                    attempts.incrementAndGet();
                    return next.newCall(m, o);
                  }
                })
            .build();
    try (CouponRankClient c =
        fastRetries().channel(ch).maxAttempts(3).defaultDeadline(Duration.ofSeconds(10)).build()) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> c.rankCoupons(request()));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertEquals(3, attempts.get());
    } finally {
      ch.shutdownNow();
    }
  }

  // ---- deadlines ---------------------------------------------------------------------------

  @Test
  void defaultDeadlineReachesServer() throws IOException {
    start(fastRetries().defaultDeadline(Duration.ofMillis(300)));
    client.rankCoupons(request());
    Deadline seen = server.calls().get(0).deadline();
    assertNotNull(seen, "server saw no deadline");
    long left = seen.timeRemaining(TimeUnit.MILLISECONDS);
    assertTrue(left > 150 && left <= 300, "server deadline in " + left + " ms, want about 300");
  }

  @Test
  void explicitDeadlineReachesServer() throws IOException {
    start(fastRetries().defaultDeadline(Duration.ofMillis(100)));
    client.rankCoupons(request(), Duration.ofSeconds(5));
    long left = server.calls().get(0).deadline().timeRemaining(TimeUnit.MILLISECONDS);
    assertTrue(left > 4000 && left <= 5000, "server deadline in " + left + " ms, want about 5000");
  }

  @Test
  void contextDeadlinePropagates() throws Exception {
    start(fastRetries().defaultDeadline(Duration.ofMillis(100)));
    java.util.concurrent.ScheduledExecutorService timer =
        java.util.concurrent.Executors.newSingleThreadScheduledExecutor();
    Context.CancellableContext ctx = Context.current().withDeadlineAfter(3, TimeUnit.SECONDS, timer);
    try {
      ctx.run(() -> client.rankCoupons(request()));
      ctx.call(() -> client.rankCouponsAsync(request()).get(5, TimeUnit.SECONDS));
    } finally {
      ctx.cancel(null);
      timer.shutdownNow();
    }
    for (FakeCouponRankServer.ReceivedCall call : server.calls()) {
      long left = call.deadline().timeRemaining(TimeUnit.MILLISECONDS);
      assertTrue(left > 2000 && left <= 3000, "server deadline in " + left + " ms, want about 3000");
    }
    assertEquals(2, server.calls().size());
  }

  @Test
  void deadlineExceededIsNotRetried() throws IOException {
    server.handler((req, n) -> null); // never answers
    start(CouponRankClient.newBuilder().maxAttempts(5).defaultDeadline(Duration.ofMillis(100)));
    long start = System.nanoTime();
    StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
    assertEquals(1, server.rankCouponsCalls());
    assertTrue(System.nanoTime() - start < TimeUnit.SECONDS.toNanos(2));
  }

  @Test
  void asyncDeadlineExceeded() throws IOException {
    server.handler((req, n) -> null);
    start(CouponRankClient.newBuilder().maxAttempts(5).defaultDeadline(Duration.ofMillis(100)));
    ExecutionException e =
        assertThrows(ExecutionException.class, () -> client.rankCouponsAsync(request()).get(5, TimeUnit.SECONDS));
    assertEquals(Status.Code.DEADLINE_EXCEEDED, Status.fromThrowable(e.getCause()).getCode());
    assertEquals(1, server.rankCouponsCalls());
  }

  @Test
  void cancellingTheFutureCancelsTheCall() throws Exception {
    CountDownLatch cancelled = new CountDownLatch(1);
    CountDownLatch received = new CountDownLatch(1);
    server.handler(
        (req, n) -> {
          Context.current().addListener(c -> cancelled.countDown(), Runnable::run);
          received.countDown();
          return null;
        });
    start(CouponRankClient.newBuilder().defaultDeadline(Duration.ofSeconds(20)));
    CompletableFuture<RankCouponsResponse> f = client.rankCouponsAsync(request());
    assertTrue(received.await(5, TimeUnit.SECONDS));
    assertTrue(f.cancel(true));
    assertTrue(cancelled.await(5, TimeUnit.SECONDS), "server call not cancelled");
  }

  // ---- misc --------------------------------------------------------------------------------

  @Test
  void getModelInfo() throws IOException {
    server.modelInfo(GetModelInfoResponse.newBuilder().setModelVersion("m1").addFeatureNames("f1").build());
    start(fastRetries());
    GetModelInfoResponse info = client.getModelInfo();
    assertEquals("m1", info.getModelVersion());
    assertEquals(List.of("f1"), info.getFeatureNamesList());
  }

  @Test
  void closeLeavesABorrowedChannelOpen() throws IOException {
    start(fastRetries());
    client.close();
    assertFalse(channel.isShutdown());
    client = null;
  }

  @Test
  void awaitReady() throws Exception {
    start(fastRetries());
    assertTrue(client.awaitReady(Duration.ofSeconds(5)));
    int port;
    try (ServerSocket s = new ServerSocket(0)) {
      port = s.getLocalPort();
    }
    try (CouponRankClient down = CouponRankClient.newBuilder().target("127.0.0.1:" + port).build()) {
      assertFalse(down.awaitReady(Duration.ofMillis(200)));
    }
  }

  @Test
  void isRetryable() {
    assertTrue(CouponRankClient.isRetryable(Status.UNAVAILABLE.asRuntimeException()));
    assertFalse(CouponRankClient.isRetryable(Status.DEADLINE_EXCEEDED.asRuntimeException()));
    assertFalse(CouponRankClient.isRetryable(new RuntimeException("boom")));
  }
}
