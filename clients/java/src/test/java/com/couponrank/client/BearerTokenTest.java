package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.client.testing.FakeCouponRankServer;
import com.couponrank.v1.CouponRankingServiceGrpc;
import com.couponrank.v1.GetModelInfoRequest;
import com.couponrank.v1.GetModelInfoResponse;
import com.couponrank.v1.RankCouponsRequest;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The bearer token options, against FakeCouponRankServer (which records each call's headers). */
@Timeout(60)
class BearerTokenTest {

  /** Looks like what {@code couponrank token} makes: URL-safe base64. */
  static final String TOKEN = "q3Zt-Vb9_x0Lw2pK7mN4rS8uY1aE6hJcDfGiHoT5BnM";

  @TempDir Path dir;

  /** The authorization values of one call's headers, in order (empty when none). */
  static List<String> authorizations(Metadata headers) {
    List<String> out = new ArrayList<>();
    Iterable<String> all = headers.getAll(CouponRankClient.AUTHORIZATION);
    if (all != null) {
      all.forEach(out::add);
    }
    return out;
  }

  private static void assertBearerOnEachCall(List<FakeCouponRankServer.ReceivedCall> calls, int n, String token) {
    assertEquals(n, calls.size(), "calls received");
    for (FakeCouponRankServer.ReceivedCall c : calls) {
      assertEquals(List.of("Bearer " + token), authorizations(c.headers()), "call " + c.number());
    }
  }

  private static RankCouponsRequest request() {
    return RankCouponsRequest.newBuilder().setRequestId("r-1").setUserId("u-1").build();
  }

  /** A client of {@code server} (plaintext over 127.0.0.1, or in process) with short backoffs. */
  private static CouponRankClient.Builder client(FakeCouponRankServer server) {
    return server.clientBuilder().backoff(Duration.ofMillis(1), Duration.ofMillis(5));
  }

  private Path write(String name, String content) throws Exception {
    return Files.writeString(dir.resolve(name), content, StandardCharsets.UTF_8);
  }

  // ---- sent on every attempt -------------------------------------------------------------

  @Test
  void tokenIsSentOnEveryAttemptIncludingRetries() throws Exception {
    try (FakeCouponRankServer server = FakeCouponRankServer.start();
        CouponRankClient client = client(server).bearerToken(TOKEN).build()) {
      server.failNext(2, Status.UNAVAILABLE);
      client.rankCoupons(request()); // two retries
      assertBearerOnEachCall(server.calls(), 3, TOKEN);

      server.reset().failNext(2, Status.UNAVAILABLE);
      client.rankCouponsAsync(request()).get(); // retries on the scheduler thread
      assertBearerOnEachCall(server.calls(), 3, TOKEN);

      server.reset().failNext(1, Status.UNAVAILABLE);
      assertTrue(client.rankOrEmpty(request()).ok());
      assertBearerOnEachCall(server.calls(), 2, TOKEN);
    }
  }

  @Test
  void tokenIsSentOnAChannelPassedIn() throws Exception {
    try (FakeCouponRankServer server = FakeCouponRankServer.newBuilder().inProcess().start();
        CouponRankClient client = client(server).bearerToken(TOKEN).build()) {
      server.failNext(1, Status.UNAVAILABLE);
      client.rankCoupons(request());
      assertBearerOnEachCall(server.calls(), 2, TOKEN);
    }
  }

  @Test
  void noAuthorizationHeaderWithoutTheOption() throws Exception {
    try (FakeCouponRankServer server = FakeCouponRankServer.start();
        CouponRankClient client = client(server).build()) {
      server.failNext(1, Status.UNAVAILABLE);
      client.rankCoupons(request());
      assertEquals(2, server.calls().size());
      for (FakeCouponRankServer.ReceivedCall c : server.calls()) {
        assertEquals(List.of(), authorizations(c.headers()), "call " + c.number());
      }
    }
  }

  @Test
  void headersAddedByTheCallersChannelAreKept() throws Exception {
    Metadata extra = new Metadata();
    Metadata.Key<String> checkout = Metadata.Key.of("x-checkout-id", Metadata.ASCII_STRING_MARSHALLER);
    extra.put(checkout, "co-1");
    try (FakeCouponRankServer server = FakeCouponRankServer.start()) {
      ManagedChannel channel =
          ManagedChannelBuilder.forTarget(server.target())
              .usePlaintext()
              .disableRetry()
              .intercept(MetadataUtils.newAttachHeadersInterceptor(extra))
              .build();
      try (CouponRankClient client =
          CouponRankClient.newBuilder()
              .channel(channel)
              .defaultDeadline(FakeCouponRankServer.CLIENT_DEFAULT_DEADLINE)
              .backoff(Duration.ofMillis(1), Duration.ofMillis(5))
              .bearerToken(TOKEN)
              .build()) {
        server.failNext(1, Status.UNAVAILABLE);
        client.rankCoupons(request());
        assertBearerOnEachCall(server.calls(), 2, TOKEN);
        for (FakeCouponRankServer.ReceivedCall c : server.calls()) {
          assertEquals("co-1", c.headers().get(checkout), "call " + c.number());
        }
      } finally {
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      }
    }
  }

  // ---- GetModelInfo ----------------------------------------------------------------------

  /**
   * An in-process server whose GetModelInfo fails its first calls with {@code fail}, then
   * answers, recording each call's headers (FakeCouponRankServer records RankCoupons headers
   * only).
   */
  private static final class ModelInfoServer implements AutoCloseable {
    final List<Metadata> headers = new CopyOnWriteArrayList<>();
    final String name = InProcessServerBuilder.generateName();
    final Server server;
    final ManagedChannel channel;

    ModelInfoServer(Status.Code... fail) throws Exception {
      ServerInterceptor record =
          new ServerInterceptor() {
            @Override
            public <Q, R> ServerCall.Listener<Q> interceptCall(
                ServerCall<Q, R> call, Metadata h, ServerCallHandler<Q, R> next) {
              headers.add(h);
              return next.startCall(call, h);
            }
          };
      CouponRankingServiceGrpc.CouponRankingServiceImplBase svc =
          new CouponRankingServiceGrpc.CouponRankingServiceImplBase() {
            @Override
            public void getModelInfo(GetModelInfoRequest req, StreamObserver<GetModelInfoResponse> obs) {
              int n = headers.size();
              if (n <= fail.length) {
                obs.onError(Status.fromCode(fail[n - 1]).withDescription("injected").asRuntimeException());
                return;
              }
              obs.onNext(GetModelInfoResponse.newBuilder().setModelVersion("m1").build());
              obs.onCompleted();
            }
          };
      server =
          InProcessServerBuilder.forName(name)
              .addService(ServerInterceptors.intercept(svc, record))
              .build()
              .start();
      channel = InProcessChannelBuilder.forName(name).disableRetry().build();
    }

    CouponRankClient.Builder client() {
      return CouponRankClient.newBuilder()
          .channel(channel)
          .defaultDeadline(FakeCouponRankServer.CLIENT_DEFAULT_DEADLINE)
          .backoff(Duration.ofMillis(1), Duration.ofMillis(5));
    }

    @Override
    public void close() throws InterruptedException {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void tokenIsSentOnEveryGetModelInfoAttempt() throws Exception {
    try (ModelInfoServer s = new ModelInfoServer(Status.Code.UNAVAILABLE);
        CouponRankClient client = s.client().bearerToken(TOKEN).build()) {
      assertEquals("m1", client.getModelInfo().getModelVersion());
      assertEquals(2, s.headers.size(), "attempts");
      for (Metadata h : s.headers) {
        assertEquals(List.of("Bearer " + TOKEN), authorizations(h));
      }
    }
  }

  // ---- UNAUTHENTICATED is final ----------------------------------------------------------

  @Test
  void unauthenticatedIsNotRetried() throws Exception {
    try (FakeCouponRankServer server = FakeCouponRankServer.start();
        CouponRankClient client = client(server).maxAttempts(5).bearerToken(TOKEN).build()) {
      assertFalse(CouponRankClient.isRetryable(Status.UNAUTHENTICATED.asRuntimeException()));

      server.failNext(1, Status.UNAUTHENTICATED.withDescription("authorization: the bearer token matches no caller"));
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, () -> client.rankCoupons(request()));
      assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
      assertBearerOnEachCall(server.calls(), 1, TOKEN);

      server.reset().failNext(1, Status.UNAUTHENTICATED);
      ExecutionException ee =
          assertThrows(ExecutionException.class, () -> client.rankCouponsAsync(request()).get());
      StatusRuntimeException cause = assertInstanceOf(StatusRuntimeException.class, ee.getCause());
      assertEquals(Status.Code.UNAUTHENTICATED, cause.getStatus().getCode());
      assertEquals(1, server.rankCouponsCalls());

      server.reset().failNext(1, Status.UNAUTHENTICATED);
      FailOpenResult r = client.rankOrEmpty(request());
      assertEquals(Status.Code.UNAUTHENTICATED, r.error().orElseThrow().getStatus().getCode());
      assertEquals(1, server.rankCouponsCalls());
    }
  }

  @Test
  void getModelInfoUnauthenticatedIsNotRetried() throws Exception {
    try (ModelInfoServer s = new ModelInfoServer(Status.Code.UNAUTHENTICATED);
        CouponRankClient client = s.client().maxAttempts(5).bearerToken(TOKEN).build()) {
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, client::getModelInfo);
      assertEquals(Status.Code.UNAUTHENTICATED, e.getStatus().getCode());
      assertEquals(1, s.headers.size(), "attempts");
    }
  }

  // ---- the token file --------------------------------------------------------------------

  @Test
  void tokenFileIsReadAndTrimmed() throws Exception {
    Path file = write("token", "\n  " + TOKEN + "\r\n\n");
    try (FakeCouponRankServer server = FakeCouponRankServer.start();
        CouponRankClient client = client(server).bearerTokenFile(file).build()) {
      client.rankCoupons(request());
      assertBearerOnEachCall(server.calls(), 1, TOKEN);
    }
  }

  private static void assertBuildFails(CouponRankClient.Builder b, String... mustMention) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, b::build);
    for (String s : mustMention) {
      assertTrue(e.getMessage().contains(s), "message \"" + e.getMessage() + "\" should mention " + s);
    }
    assertFalse(e.getMessage().contains(TOKEN), "message \"" + e.getMessage() + "\" quotes the token");
  }

  private static CouponRankClient.Builder builder() {
    return CouponRankClient.newBuilder().target("127.0.0.1:1");
  }

  @Test
  void tokenFileErrorsNameTheFile() throws Exception {
    Path missing = dir.resolve("missing-token");
    Path empty = write("empty-token", "");
    Path blank = write("blank-token", " \n\t\n");
    Path twoTokens = write("two-tokens", "abc def\n");
    Path twoLines = write("two-lines", "abc\ndef\n");
    Path prefixed = write("prefixed-token", "Bearer " + TOKEN + "\n");
    Path nonAscii = write("non-ascii-token", "t\u00e9st\n");
    for (Path bad : List.of(missing, dir, empty, blank, twoTokens, twoLines, prefixed, nonAscii)) {
      assertBuildFails(builder().bearerTokenFile(bad), "bearerTokenFile", bad.toString());
    }
    assertBuildFails(builder().bearerTokenFile(blank), "no token");
    assertBuildFails(builder().bearerTokenFile(prefixed), "whitespace");
    assertBuildFails(builder().bearerTokenFile(nonAscii), "printable ASCII");
    assertBuildFails(builder().bearerTokenFile(null), "bearerTokenFile");
    // Checked with channel(...) too.
    try (FakeCouponRankServer server = FakeCouponRankServer.newBuilder().inProcess().start()) {
      assertBuildFails(server.clientBuilder().bearerTokenFile(missing), missing.toString());
    }
  }

  @Test
  void invalidTokensAreRejected() throws Exception {
    assertBuildFails(builder().bearerToken(null), "bearerToken", "empty");
    assertBuildFails(builder().bearerToken(""), "bearerToken", "empty");
    assertBuildFails(builder().bearerToken("abc def"), "bearerToken", "whitespace");
    assertBuildFails(builder().bearerToken(TOKEN + "\n"), "bearerToken", "whitespace");
    assertBuildFails(builder().bearerToken("Bearer " + TOKEN), "bearerToken", "whitespace");
    assertBuildFails(builder().bearerToken("abc\u0000def"), "bearerToken", "printable ASCII");
    assertBuildFails(builder().bearerToken("t\u00e9st"), "bearerToken", "printable ASCII");
    Path good = write("good-token", TOKEN);
    assertBuildFails(builder().bearerToken(TOKEN).bearerTokenFile(good), "together");
    assertBuildFails(builder().bearerTokenFile(good).bearerToken(TOKEN), "together");
  }

  @Test
  void validTokenBuilds() throws Exception {
    try (CouponRankClient c = builder().bearerToken(TOKEN).build()) {
      assertEquals(CouponRankClient.DEFAULT_MAX_ATTEMPTS, c.maxAttempts());
    }
    try (CouponRankClient c = builder().bearerTokenFile(write("token", TOKEN + "\n")).build()) {
      assertEquals(CouponRankClient.DEFAULT_MAX_ATTEMPTS, c.maxAttempts());
    }
  }
}
