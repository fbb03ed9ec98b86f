package com.couponrank.client;

import com.couponrank.v1.CouponRankingServiceGrpc;
import com.couponrank.v1.Event;
import com.couponrank.v1.EventResult;
import com.couponrank.v1.GetModelInfoRequest;
import com.couponrank.v1.GetModelInfoResponse;
import com.couponrank.v1.RecordEventsRequest;
import com.couponrank.v1.RecordEventsResponse;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.google.common.util.concurrent.FutureCallback;
import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.ListenableFuture;
import com.google.common.util.concurrent.MoreExecutors;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ClientInterceptors;
import io.grpc.ConnectivityState;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.ForwardingClientCall;
import io.grpc.Grpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Function;

/**
 * Client of the CouponRank service ({@code couponrank.v1.CouponRankingService}).
 *
 * <p>Wraps the generated stubs with what every caller needs:
 *
 * <ul>
 *   <li><b>Deadlines.</b> Each call has one deadline covering all its attempts: the one passed to
 *       the call, else the deadline of the current gRPC {@link Context} (so a deadline received by
 *       a gRPC server handler propagates), else the builder's {@linkplain
 *       Builder#defaultDeadline default deadline}.
 *   <li><b>Retries on UNAVAILABLE only</b>, at most {@linkplain Builder#maxAttempts maxAttempts}
 *       attempts in total, with exponential backoff and jitter, and never past the deadline. Every
 *       other status is returned at once.
 *   <li><b>Fail-open calls.</b> {@link #rankOrEmpty} never throws: on any failure it returns an
 *       empty ranking and the error, within the same deadline.
 *   <li><b>Events.</b> {@link #recordEvents} records impressions, claims, redemptions and shopping
 *       behaviour (build them with {@link Conversions#event}), with the same deadline and retries:
 *       the call is idempotent by {@code event_id}.
 *   <li><b>TLS and mutual TLS</b> with the builder's {@link Builder#trustCertificates}, {@link
 *       Builder#clientCertificate} and {@link Builder#overrideAuthority}.
 *   <li><b>Caller identity</b> by a bearer token ({@link Builder#bearerToken}, {@link
 *       Builder#bearerTokenFile}) sent on every attempt of every call.
 * </ul>
 *
 * <p>Failures surface as {@link StatusRuntimeException} (blocking calls) or complete the future
 * exceptionally with one. A degraded ranking ({@code response.getDegraded()}) is a success.
 *
 * <pre>{@code
 * try (CouponRankClient client = CouponRankClient.newBuilder()
 *     .target("couponrank:50051")
 *     .defaultDeadline(Duration.ofMillis(150))
 *     .build()) {
 *   RankCouponsResponse res = client.rankCoupons(RankCouponsRequest.newBuilder()
 *       .setUserId("u-123")
 *       .setContext(RequestContext.newBuilder()
 *           .setPlacement(Placement.PLACEMENT_CHECKOUT)
 *           .setCartTotal(Money.newBuilder().setCurrencyCode("USD").setAmountMinor(4599)))
 *       .setTopK(5)
 *       .build());
 * }
 * }</pre>
 *
 * <p>Thread-safe; create one per process and share it.
 */
public final class CouponRankClient implements AutoCloseable {

  /** Deadline of a call when neither the call nor the current Context sets one. */
  public static final Duration DEFAULT_DEADLINE = Duration.ofMillis(500);
  /** Attempts (first try included) for a call that keeps failing with UNAVAILABLE. */
  public static final int DEFAULT_MAX_ATTEMPTS = 3;
  /** Pause before the first retry; doubled for each further retry. */
  public static final Duration DEFAULT_INITIAL_BACKOFF = Duration.ofMillis(25);
  /** Cap on the pause between two attempts. */
  public static final Duration DEFAULT_MAX_BACKOFF = Duration.ofMillis(250);
  /** Largest value {@link Builder#maxAttempts} accepts. */
  public static final int MAX_ATTEMPTS_LIMIT = 10;
  /**
   * The most events one {@link #recordEvents} call takes: the server fails a larger batch (or an
   * empty one) with INVALID_ARGUMENT. Split longer lists into batches of at most this many.
   */
  public static final int MAX_EVENTS_PER_CALL = 1000;

  private static final double JITTER = 0.2;

  /** The request header carrying the bearer token. */
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final ManagedChannel channel;
  private final boolean ownsChannel;
  private final Duration defaultDeadline;
  private final int maxAttempts;
  private final Duration initialBackoff;
  private final Duration maxBackoff;
  private final ScheduledExecutorService scheduler;
  private final boolean ownsScheduler;
  private final CouponRankingServiceGrpc.CouponRankingServiceBlockingStub blockingStub;
  private final CouponRankingServiceGrpc.CouponRankingServiceFutureStub futureStub;

  private CouponRankClient(Builder b) {
    if (b.channel != null) {
      this.channel = b.channel;
      this.ownsChannel = false;
    } else {
      ManagedChannelBuilder<?> cb;
      if (b.tlsCredentials != null) {
        try {
          cb = Grpc.newChannelBuilder(b.target, b.tlsCredentials);
        } catch (RuntimeException e) { // the transport rejected the credentials
          throw new IllegalArgumentException("TLS options: " + e.getMessage(), e);
        }
      } else {
        cb = ManagedChannelBuilder.forTarget(b.target);
        if (b.usesTls()) {
          cb.useTransportSecurity();
        } else {
          cb.usePlaintext();
        }
      }
      if (b.authority != null) {
        cb.overrideAuthority(b.authority);
      }
      // gRPC's own retries are off: this class retries UNAVAILABLE itself, and two layers
      // would multiply attempts.
      cb.disableRetry();
      this.channel = cb.build();
      this.ownsChannel = true;
    }
    this.defaultDeadline = b.defaultDeadline;
    this.maxAttempts = b.maxAttempts;
    this.initialBackoff = b.initialBackoff;
    this.maxBackoff = b.maxBackoff;
    if (b.scheduler != null) {
      this.scheduler = b.scheduler;
      this.ownsScheduler = false;
    } else {
      this.scheduler =
          Executors.newSingleThreadScheduledExecutor(
              r -> {
                Thread t = new Thread(r, "couponrank-client-retry");
                t.setDaemon(true);
                return t;
              });
      this.ownsScheduler = true;
    }
    Channel calls =
        b.bearerTokenValue != null
            ? ClientInterceptors.intercept(channel, new BearerTokenInterceptor(b.bearerTokenValue))
            : channel;
    this.blockingStub = CouponRankingServiceGrpc.newBlockingStub(calls);
    this.futureStub = CouponRankingServiceGrpc.newFutureStub(calls);
  }

  /** Returns a builder; set {@link Builder#target} or {@link Builder#channel}. */
  public static Builder newBuilder() {
    return new Builder();
  }

  /** The deadline of a call when neither the call nor the current Context sets one. */
  public Duration defaultDeadline() {
    return defaultDeadline;
  }

  /** The number of attempts made for a call that keeps failing with UNAVAILABLE. */
  public int maxAttempts() {
    return maxAttempts;
  }

  /**
   * Ranks coupons, blocking until the answer, the deadline or the last failed attempt.
   *
   * @throws StatusRuntimeException with the gRPC status of the failure
   */
  public RankCouponsResponse rankCoupons(RankCouponsRequest request) {
    return rankCoupons(request, null);
  }

  /**
   * Ranks coupons with an explicit deadline for this call (all attempts included); {@code null}
   * means the current Context's deadline, else the default deadline.
   *
   * @throws StatusRuntimeException with the gRPC status of the failure
   */
  public RankCouponsResponse rankCoupons(RankCouponsRequest request, Duration deadline) {
    Objects.requireNonNull(request, "request");
    return callBlocking(deadline, stub -> stub.rankCoupons(request));
  }

  /**
   * Ranks coupons without blocking. The future completes with the response, or exceptionally
   * with a {@link StatusRuntimeException}. Cancelling it cancels the call in flight.
   */
  public CompletableFuture<RankCouponsResponse> rankCouponsAsync(RankCouponsRequest request) {
    return rankCouponsAsync(request, null);
  }

  /** Like {@link #rankCouponsAsync(RankCouponsRequest)} with an explicit deadline for the call. */
  public CompletableFuture<RankCouponsResponse> rankCouponsAsync(
      RankCouponsRequest request, Duration deadline) {
    Objects.requireNonNull(request, "request");
    return callAsync(deadline, stub -> stub.rankCoupons(request));
  }

  /**
   * Ranks coupons and never throws: for a page that must render without coupons rather than fail
   * (checkout). Same deadline and retries as {@link #rankCoupons(RankCouponsRequest)}, so it
   * returns by the deadline (the default deadline when neither the call nor the Context sets
   * one), give or take the time for the transport to notice it.
   *
   * @return the server's response, or on any failure (UNAVAILABLE after the retries,
   *     INVALID_ARGUMENT, DEADLINE_EXCEEDED, a closed client, even a null request) an empty
   *     ranking that keeps the request's {@code request_id}, with the error in {@link
   *     FailOpenResult#error()} for logging. Never null.
   */
  public FailOpenResult rankOrEmpty(RankCouponsRequest request) {
    return rankOrEmpty(request, null);
  }

  /**
   * Like {@link #rankOrEmpty(RankCouponsRequest)} with an explicit deadline for this call ({@code
   * null}: the Context's, else the default). An invalid deadline is reported as the result's error.
   */
  public FailOpenResult rankOrEmpty(RankCouponsRequest request, Duration deadline) {
    try {
      return FailOpenResult.ok(rankCoupons(request, deadline));
    } catch (RuntimeException e) {
      return FailOpenResult.failed(request, e);
    }
  }

  /**
   * Records a batch of events: impressions of ranked coupons, claims, redemptions and shopping
   * behaviour. Blocks until the answer, the deadline or the last failed attempt.
   *
   * <p>Each event is answered on its own, in the order given: {@code EVENT_STATUS_ACCEPTED}
   * (recorded now), {@code EVENT_STATUS_DUPLICATE} (an event with this {@code event_id} was
   * recorded before; nothing is counted twice) or {@code EVENT_STATUS_REJECTED} ({@code
   * getDetail()} says why). One rejected event does not fail the call.
   *
   * <p>Same deadline and retries as {@link #rankCoupons(RankCouponsRequest)}: the call is
   * idempotent by {@code event_id}, so UNAVAILABLE is retried with the same batch, and after an
   * UNAVAILABLE or DEADLINE_EXCEEDED failure the caller may send the batch again as is.
   *
   * @return one result per event, in the order of {@code events} (unmodifiable)
   * @throws StatusRuntimeException with the gRPC status of the failure: INVALID_ARGUMENT for an
   *     empty batch or one of more than {@link #MAX_EVENTS_PER_CALL} events (the server checks),
   *     PERMISSION_DENIED when the server names its callers and this one may not record events,
   *     INTERNAL when the answer does not hold one result per event
   */
  public List<EventResult> recordEvents(List<Event> events) {
    return recordEvents(events, null);
  }

  /**
   * Like {@link #recordEvents(List)} with an explicit deadline for this call (all attempts
   * included); {@code null} means the current Context's deadline, else the default deadline.
   */
  public List<EventResult> recordEvents(List<Event> events, Duration deadline) {
    RecordEventsRequest request = recordEventsRequest(events);
    return eventResults(request, callBlocking(deadline, stub -> stub.recordEvents(request)));
  }

  /**
   * Records events without blocking: {@link #recordEvents(List)} whose future completes with the
   * results, or exceptionally with a {@link StatusRuntimeException}. Cancelling it cancels the
   * call in flight.
   */
  public CompletableFuture<List<EventResult>> recordEventsAsync(List<Event> events) {
    return recordEventsAsync(events, null);
  }

  /** Like {@link #recordEventsAsync(List)} with an explicit deadline for the call. */
  public CompletableFuture<List<EventResult>> recordEventsAsync(List<Event> events, Duration deadline) {
    RecordEventsRequest request = recordEventsRequest(events);
    CompletableFuture<RecordEventsResponse> call = callAsync(deadline, stub -> stub.recordEvents(request));
    // Completed by hand rather than by thenApply, which would wrap the failure in a
    // CompletionException: the future fails with the StatusRuntimeException itself, as
    // rankCouponsAsync's does.
    CompletableFuture<List<EventResult>> results = new CompletableFuture<>();
    call.whenComplete(
        (res, t) -> {
          if (t != null) {
            results.completeExceptionally(t);
            return;
          }
          try {
            results.complete(eventResults(request, res));
          } catch (StatusRuntimeException e) {
            results.completeExceptionally(e);
          }
        });
    results.whenComplete(
        (v, t) -> {
          if (t instanceof CancellationException) {
            call.cancel(true);
          }
        });
    return results;
  }

  private static RecordEventsRequest recordEventsRequest(List<Event> events) {
    Objects.requireNonNull(events, "events");
    RecordEventsRequest.Builder b = RecordEventsRequest.newBuilder();
    for (Event e : events) {
      b.addEvents(Objects.requireNonNull(e, "events must not hold null"));
    }
    return b.build();
  }

  private static List<EventResult> eventResults(RecordEventsRequest request, RecordEventsResponse response) {
    if (response.getResultsCount() != request.getEventsCount()) {
      throw Status.INTERNAL
          .withDescription(
              "the server answered " + response.getResultsCount() + " results for "
                  + request.getEventsCount() + " events")
          .asRuntimeException();
    }
    return response.getResultsList();
  }

  /**
   * Describes the model the server has loaded, with the same deadline and retry handling.
   *
   * @throws StatusRuntimeException with the gRPC status of the failure
   */
  public GetModelInfoResponse getModelInfo() {
    return callBlocking(null, stub -> stub.getModelInfo(GetModelInfoRequest.getDefaultInstance()));
  }

  /**
   * Connects the channel and waits until it is READY or {@code timeout} passes. Optional: calls
   * connect by themselves, but the first one then pays for the connection (and, in a fresh JVM,
   * for loading the transport), which can take hundreds of milliseconds. Call it at start-up to
   * keep that cost out of the first request's deadline.
   *
   * @return whether the channel is READY
   */
  public boolean awaitReady(Duration timeout) throws InterruptedException {
    long end = System.nanoTime() + timeout.toNanos();
    ConnectivityState state = channel.getState(true);
    while (state != ConnectivityState.READY) {
      long left = end - System.nanoTime();
      if (left <= 0) {
        return false;
      }
      CountDownLatch changed = new CountDownLatch(1);
      channel.notifyWhenStateChanged(state, changed::countDown);
      changed.await(left, TimeUnit.NANOSECONDS);
      state = channel.getState(true);
    }
    return true;
  }

  /** True for the only status this client retries: UNAVAILABLE. */
  public static boolean isRetryable(Throwable t) {
    return Status.fromThrowable(t).getCode() == Status.Code.UNAVAILABLE;
  }

  /**
   * Shuts down the channel (unless it was passed to {@link Builder#channel}) and the retry
   * scheduler (unless it was passed in), waiting up to five seconds for calls in flight.
   */
  @Override
  public void close() {
    if (ownsScheduler) {
      scheduler.shutdownNow();
    }
    if (ownsChannel) {
      channel.shutdown();
      try {
        if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
          channel.shutdownNow();
        }
      } catch (InterruptedException e) {
        channel.shutdownNow();
        Thread.currentThread().interrupt();
      }
    }
  }

  /** The deadline of one call: explicit, else the Context's, else the default. */
  Deadline callDeadline(Duration explicit) {
    if (explicit != null) {
      if (explicit.isNegative() || explicit.isZero()) {
        throw new IllegalArgumentException("deadline must be positive: " + explicit);
      }
      return Deadline.after(explicit.toNanos(), TimeUnit.NANOSECONDS);
    }
    Deadline fromContext = Context.current().getDeadline();
    if (fromContext != null) {
      return fromContext;
    }
    return Deadline.after(defaultDeadline.toNanos(), TimeUnit.NANOSECONDS);
  }

  private <T> T callBlocking(
      Duration explicitDeadline,
      Function<CouponRankingServiceGrpc.CouponRankingServiceBlockingStub, T> call) {
    Deadline deadline = callDeadline(explicitDeadline);
    long backoffNanos = initialBackoff.toNanos();
    for (int attempt = 1; ; attempt++) {
      try {
        return call.apply(blockingStub.withDeadline(deadline));
      } catch (StatusRuntimeException e) {
        long wait = jittered(backoffNanos);
        if (!isRetryable(e)
            || attempt >= maxAttempts
            || deadline.timeRemaining(TimeUnit.NANOSECONDS) <= wait) {
          throw e;
        }
        try {
          TimeUnit.NANOSECONDS.sleep(wait);
        } catch (InterruptedException ie) {
          Thread.currentThread().interrupt();
          throw Status.CANCELLED
              .withDescription("interrupted while waiting to retry")
              .withCause(ie)
              .asRuntimeException();
        }
        backoffNanos = Math.min(2 * backoffNanos, maxBackoff.toNanos());
      }
    }
  }

  private <T> CompletableFuture<T> callAsync(
      Duration explicitDeadline,
      Function<CouponRankingServiceGrpc.CouponRankingServiceFutureStub, ListenableFuture<T>> call) {
    Deadline deadline = callDeadline(explicitDeadline);
    // Retries run on the scheduler thread: carry the caller's Context (and so its deadline
    // and cancellation) over to them.
    Context context = Context.current();
    CompletableFuture<T> result = new CompletableFuture<>();
    AtomicReference<ListenableFuture<T>> inFlight = new AtomicReference<>();
    result.whenComplete(
        (v, t) -> {
          if (t instanceof CancellationException) {
            ListenableFuture<T> f = inFlight.get();
            if (f != null) {
              f.cancel(true);
            }
          }
        });
    new AsyncAttempt<>(call, deadline, context, result, inFlight).run();
    return result;
  }

  private final class AsyncAttempt<T> implements Runnable {
    private final Function<CouponRankingServiceGrpc.CouponRankingServiceFutureStub, ListenableFuture<T>>
        call;
    private final Deadline deadline;
    private final Context context;
    private final CompletableFuture<T> result;
    private final AtomicReference<ListenableFuture<T>> inFlight;
    private volatile int attempt = 0;
    private volatile long backoffNanos = initialBackoff.toNanos();

    AsyncAttempt(
        Function<CouponRankingServiceGrpc.CouponRankingServiceFutureStub, ListenableFuture<T>> call,
        Deadline deadline,
        Context context,
        CompletableFuture<T> result,
        AtomicReference<ListenableFuture<T>> inFlight) {
      this.call = call;
      this.deadline = deadline;
      this.context = context;
      this.result = result;
      this.inFlight = inFlight;
    }

    @Override
    public void run() {
      if (result.isDone()) {
        return;
      }
      attempt++;
      ListenableFuture<T> f;
      Context previous = context.attach();
      try {
        f = call.apply(futureStub.withDeadline(deadline));
      } catch (RuntimeException e) {
        result.completeExceptionally(e);
        return;
      } finally {
        context.detach(previous);
      }
      inFlight.set(f);
      if (result.isCancelled()) {
        f.cancel(true);
        return;
      }
      Futures.addCallback(
          f,
          new FutureCallback<T>() {
            @Override
            public void onSuccess(T value) {
              result.complete(value);
            }

            @Override
            public void onFailure(Throwable t) {
              long wait = jittered(backoffNanos);
              if (!isRetryable(t)
                  || attempt >= maxAttempts
                  || deadline.timeRemaining(TimeUnit.NANOSECONDS) <= wait
                  || result.isDone()) {
                result.completeExceptionally(t);
                return;
              }
              backoffNanos = Math.min(2 * backoffNanos, maxBackoff.toNanos());
              try {
                scheduler.schedule(AsyncAttempt.this, wait, TimeUnit.NANOSECONDS);
              } catch (RuntimeException e) { // scheduler shut down: the client was closed
                result.completeExceptionally(t);
              }
            }
          },
          MoreExecutors.directExecutor());
    }
  }

  /**
   * Adds {@code authorization: Bearer <token>} to the headers of every call (so to every attempt:
   * each is a call), in place of any authorization header already there. An interceptor rather
   * than {@code CallCredentials}, which grpc-java does not send over plaintext.
   */
  private static final class BearerTokenInterceptor implements ClientInterceptor {
    private final String value;

    BearerTokenInterceptor(String token) {
      this.value = "Bearer " + token;
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(
        MethodDescriptor<Q, R> method, CallOptions callOptions, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<Q, R>(
          next.newCall(method, callOptions)) {
        @Override
        public void start(Listener<R> responseListener, Metadata headers) {
          headers.removeAll(AUTHORIZATION);
          headers.put(AUTHORIZATION, value);
          super.start(responseListener, headers);
        }
      };
    }

    @Override
    public String toString() {
      return "BearerTokenInterceptor[token hidden]";
    }
  }

  private static long jittered(long nanos) {
    double f = 1 + JITTER * (2 * ThreadLocalRandom.current().nextDouble() - 1);
    return (long) (nanos * f);
  }

  /** Builds a {@link CouponRankClient}. */
  public static final class Builder {
    private String target;
    private ManagedChannel channel;
    private Boolean plaintext; // null: plaintext unless a TLS option is set
    private Path trustCertificates;
    private Path clientCertChain;
    private Path clientPrivateKey;
    private String authority;
    private ChannelCredentials tlsCredentials; // made by build() from the TLS options
    private String bearerToken;
    private boolean bearerTokenSet;
    private Path bearerTokenFile;
    private boolean bearerTokenFileSet;
    private String bearerTokenValue; // checked by build(): the token to send, or null
    private Duration defaultDeadline = DEFAULT_DEADLINE;
    private int maxAttempts = DEFAULT_MAX_ATTEMPTS;
    private Duration initialBackoff = DEFAULT_INITIAL_BACKOFF;
    private Duration maxBackoff = DEFAULT_MAX_BACKOFF;
    private ScheduledExecutorService scheduler;

    private Builder() {}

    /**
     * The server's gRPC target, e.g. {@code "localhost:50051"} or {@code
     * "dns:///couponrank.internal:50051"}. The channel connects lazily, so {@link #build} does
     * not fail when the server is down.
     */
    public Builder target(String target) {
      this.target = target;
      return this;
    }

    /**
     * Uses an existing channel instead of {@link #target}; the caller keeps owning it ({@link
     * CouponRankClient#close} does not shut it down).
     */
    public Builder channel(ManagedChannel channel) {
      this.channel = channel;
      return this;
    }

    /**
     * Plaintext (the default, for a service mesh that terminates TLS in a sidecar) or TLS with
     * the JVM's trust store. Ignored with {@link #channel}. Any of {@link #trustCertificates} and
     * {@link #clientCertificate} switches to TLS by itself; {@code usePlaintext(true)} with one of
     * them is rejected by {@link #build}.
     */
    public Builder usePlaintext(boolean plaintext) {
      this.plaintext = plaintext;
      return this;
    }

    /**
     * TLS, trusting the CA certificates of this PEM file instead of the JVM's trust store (for a
     * private CA). Read and checked by {@link #build}. Not with {@link #channel}.
     */
    public Builder trustCertificates(Path caCertificatesPem) {
      this.trustCertificates = caCertificatesPem;
      return this;
    }

    /**
     * Mutual TLS: presents this certificate chain (PEM, the client's certificate first) with its
     * private key (PEM, unencrypted PKCS#8: {@code -----BEGIN PRIVATE KEY-----}) to a server that
     * asks for one. Read and checked by {@link #build}, including that the key belongs to the
     * certificate. Not with {@link #channel}.
     */
    public Builder clientCertificate(Path certificateChainPem, Path privateKeyPem) {
      this.clientCertChain = certificateChainPem;
      this.clientPrivateKey = privateKeyPem;
      return this;
    }

    /**
     * The server name to send and, with TLS, to verify the server's certificate against, instead
     * of the host of {@link #target}: e.g. {@code target("10.0.0.7:50051")} with {@code
     * overrideAuthority("couponrank.internal")}. Not with {@link #channel}.
     */
    public Builder overrideAuthority(String authority) {
      this.authority = authority;
      return this;
    }

    /**
     * Sends {@code token} on every call (every attempt of {@code rankCoupons}, {@code
     * rankCouponsAsync}, {@code rankOrEmpty}, {@code recordEvents}, {@code recordEventsAsync} and
     * {@code getModelInfo}, retries included) as the
     * request header {@code authorization: Bearer <token>}, which the server uses to identify the
     * caller (a caller named with {@code explain = "all"} in the server's callers file sees the
     * user's own features in explanations). A token the server does not know fails every call
     * with UNAUTHENTICATED, which is not retried. Make tokens with {@code couponrank token}.
     *
     * <p>The token alone, not {@code "Bearer ..."}: {@link #build} throws {@link
     * IllegalArgumentException} for a null or empty token, or one holding whitespace or
     * characters other than printable ASCII. Not with {@link #bearerTokenFile}. Works with
     * {@link #channel} too.
     *
     * <p><b>Use it with TLS</b> ({@link #trustCertificates}, {@code usePlaintext(false)}): over
     * plaintext anyone on the network path can read the token and call as you. Plaintext is not
     * refused (loopback, tests, a sidecar that adds TLS).
     */
    public Builder bearerToken(String token) {
      this.bearerToken = token;
      this.bearerTokenSet = true;
      return this;
    }

    /**
     * {@link #bearerToken} with the token read from {@code file} (e.g. a mounted secret) by {@link
     * #build}, once; whitespace around it, such as a final newline, is ignored. {@link #build}
     * throws {@link IllegalArgumentException} naming the file when it cannot be read, is empty,
     * or holds anything but one token (whitespace inside, a {@code Bearer } prefix, non-ASCII). A
     * token changed in the file later is not seen: build a new client. Use it with TLS. Not with
     * {@link #bearerToken}.
     */
    public Builder bearerTokenFile(Path file) {
      this.bearerTokenFile = file;
      this.bearerTokenFileSet = true;
      return this;
    }

    /** The token to send, or null; checks the bearer options and reads the file. */
    private String checkedBearerToken() {
      if (bearerTokenSet && bearerTokenFileSet) {
        throw new IllegalArgumentException("bearerToken and bearerTokenFile cannot be used together");
      }
      if (bearerTokenSet) {
        String problem = tokenProblem(bearerToken);
        if (problem != null) {
          throw new IllegalArgumentException("bearerToken: " + problem);
        }
        return bearerToken;
      }
      if (!bearerTokenFileSet) {
        return null;
      }
      if (bearerTokenFile == null) {
        throw new IllegalArgumentException("bearerTokenFile: null file");
      }
      String token;
      try {
        // Latin-1 maps each byte to one char: any byte outside printable ASCII is then reported
        // by tokenProblem, whatever the file's encoding.
        token = new String(Files.readAllBytes(bearerTokenFile), StandardCharsets.ISO_8859_1).strip();
      } catch (IOException | RuntimeException e) {
        throw new IllegalArgumentException("bearerTokenFile: cannot read " + bearerTokenFile + ": " + e, e);
      }
      if (token.isEmpty()) {
        throw new IllegalArgumentException("bearerTokenFile: " + bearerTokenFile + ": the file holds no token");
      }
      String problem = tokenProblem(token);
      if (problem != null) {
        throw new IllegalArgumentException("bearerTokenFile: " + bearerTokenFile + ": " + problem);
      }
      return token;
    }

    /** Why {@code token} cannot be sent as "Bearer token", or null. Never quotes the token. */
    private static String tokenProblem(String token) {
      if (token == null || token.isEmpty()) {
        return "empty token";
      }
      for (int i = 0; i < token.length(); ) {
        int c = token.codePointAt(i);
        if (Character.isWhitespace(c) || Character.isSpaceChar(c)) {
          return "the token holds whitespace (give the token alone, without \"Bearer \")";
        }
        if (c < 0x21 || c > 0x7E) {
          return "the token holds a character other than printable ASCII";
        }
        i += Character.charCount(c);
      }
      return null;
    }

    private boolean hasTlsFiles() {
      return trustCertificates != null || clientCertChain != null || clientPrivateKey != null;
    }

    private boolean usesTls() {
      return plaintext == null ? hasTlsFiles() : !plaintext;
    }

    /**
     * Deadline of a call when neither the call nor the current Context sets one (default {@link
     * #DEFAULT_DEADLINE}). Covers all attempts. Must be positive.
     */
    public Builder defaultDeadline(Duration d) {
      this.defaultDeadline = d;
      return this;
    }

    /**
     * Attempts in total for a call failing with UNAVAILABLE (default {@link
     * #DEFAULT_MAX_ATTEMPTS}; 1 disables retries). Between 1 and {@link #MAX_ATTEMPTS_LIMIT}.
     */
    public Builder maxAttempts(int n) {
      this.maxAttempts = n;
      return this;
    }

    /**
     * Exponential backoff: about {@code initial} before the first retry, doubled each time, at
     * most {@code max}; each pause is jittered by ±20%. Requires 0 &lt; initial &lt;= max.
     */
    public Builder backoff(Duration initial, Duration max) {
      this.initialBackoff = initial;
      this.maxBackoff = max;
      return this;
    }

    /** Scheduler for asynchronous retries (default: one daemon thread owned by the client). */
    public Builder scheduler(ScheduledExecutorService scheduler) {
      this.scheduler = scheduler;
      return this;
    }

    /**
     * Builds the client.
     *
     * @throws IllegalArgumentException if an option is invalid
     */
    public CouponRankClient build() {
      if (channel == null && (target == null || target.isEmpty())) {
        throw new IllegalArgumentException("set target or channel");
      }
      if (channel != null && target != null) {
        throw new IllegalArgumentException("set target or channel, not both");
      }
      if (channel != null && (hasTlsFiles() || authority != null)) {
        throw new IllegalArgumentException(
            "trustCertificates, clientCertificate and overrideAuthority configure the channel the"
                + " client creates: not with channel(...)");
      }
      if (hasTlsFiles() && Boolean.TRUE.equals(plaintext)) {
        throw new IllegalArgumentException(
            "usePlaintext(true) contradicts trustCertificates/clientCertificate (TLS)");
      }
      if (authority != null && authority.isEmpty()) {
        throw new IllegalArgumentException("overrideAuthority must not be empty");
      }
      tlsCredentials = hasTlsFiles() ? tlsCredentials() : null;
      bearerTokenValue = checkedBearerToken();
      if (defaultDeadline == null || defaultDeadline.isNegative() || defaultDeadline.isZero()) {
        throw new IllegalArgumentException("defaultDeadline must be positive: " + defaultDeadline);
      }
      if (maxAttempts < 1 || maxAttempts > MAX_ATTEMPTS_LIMIT) {
        throw new IllegalArgumentException(
            "maxAttempts must be in [1, " + MAX_ATTEMPTS_LIMIT + "]: " + maxAttempts);
      }
      if (initialBackoff == null
          || maxBackoff == null
          || initialBackoff.isNegative()
          || initialBackoff.isZero()
          || maxBackoff.compareTo(initialBackoff) < 0) {
        throw new IllegalArgumentException(
            "backoff needs 0 < initial <= max: " + initialBackoff + ", " + maxBackoff);
      }
      return new CouponRankClient(this);
    }

    /** Reads and checks the TLS files; every error names the file. */
    private ChannelCredentials tlsCredentials() {
      TlsChannelCredentials.Builder tls = TlsChannelCredentials.newBuilder();
      if (trustCertificates != null) {
        byte[] pem = PemFiles.read("trustCertificates", trustCertificates);
        PemFiles.certificates("trustCertificates", trustCertificates, pem);
        try {
          tls.trustManager(new ByteArrayInputStream(pem));
        } catch (IOException | RuntimeException e) {
          throw new IllegalArgumentException(
              "trustCertificates: " + trustCertificates + ": " + e.getMessage(), e);
        }
      }
      if (clientCertChain != null || clientPrivateKey != null) {
        if (clientCertChain == null || clientPrivateKey == null) {
          throw new IllegalArgumentException("clientCertificate needs a certificate chain and a private key");
        }
        byte[] chainPem = PemFiles.read("clientCertificate", clientCertChain);
        byte[] keyPem = PemFiles.read("clientCertificate", clientPrivateKey);
        List<X509Certificate> chain = PemFiles.certificates("clientCertificate", clientCertChain, chainPem);
        PrivateKey key = PemFiles.privateKey("clientCertificate", clientPrivateKey, keyPem);
        PemFiles.checkKeyMatches("clientCertificate", clientCertChain, chain.get(0), clientPrivateKey, key);
        try {
          tls.keyManager(new ByteArrayInputStream(chainPem), new ByteArrayInputStream(keyPem));
        } catch (IOException | RuntimeException e) {
          throw new IllegalArgumentException(
              "clientCertificate: " + clientCertChain + ", " + clientPrivateKey + ": " + e.getMessage(), e);
        }
      }
      return tls.build();
    }
  }
}
