package com.couponrank.client.testing;

import com.couponrank.client.CouponRankClient;
import com.couponrank.v1.BehaviourEvent;
import com.couponrank.v1.BehaviourType;
import com.couponrank.v1.CouponRankingServiceGrpc;
import com.couponrank.v1.Event;
import com.couponrank.v1.EventResult;
import com.couponrank.v1.EventStatus;
import com.couponrank.v1.GetModelInfoRequest;
import com.couponrank.v1.GetModelInfoResponse;
import com.couponrank.v1.ImpressionEvent;
import com.couponrank.v1.Money;
import com.couponrank.v1.Placement;
import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import com.couponrank.v1.RankedCoupon;
import com.couponrank.v1.RecordEventsRequest;
import com.couponrank.v1.RecordEventsResponse;
import com.couponrank.v1.RedemptionEvent;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Deadline;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerCredentials;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsServerCredentials;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

/**
 * A real gRPC server implementing {@code couponrank.v1.CouponRankingService} with canned answers,
 * for tests of code that calls CouponRank: no CouponRank deployment, model or data needed. It
 * ships in the client's main jar; use it from your test scope.
 *
 * <pre>{@code
 * try (FakeCouponRankServer server = FakeCouponRankServer.start();   // Netty on 127.0.0.1:<free port>
 *     CouponRankClient client = server.newClient()) {
 *   server.respondWith(RankCouponsResponse.newBuilder()
 *       .addRankedCoupons(RankedCoupon.newBuilder().setCouponId("c1").setRank(1).setScore(0.9))
 *       .build());
 *   server.failNext(2, Status.UNAVAILABLE);        // two failures, then the canned answer
 *
 *   RankCouponsResponse res = client.rankCoupons(myRequest); // the client retries twice
 *
 *   assertEquals("c1", res.getRankedCoupons(0).getCouponId());
 *   assertEquals(3, server.rankCouponsCalls());
 *   assertEquals("u-1", server.requests().get(0).getUserId());
 * }
 * }</pre>
 *
 * <p><b>Answers.</b> RankCoupons calls are answered, in order of precedence: with a failure queued
 * by {@link #failNext}; else by the {@linkplain #handler handler} if one is set; else with the
 * {@linkplain #respondWith canned response} if one is set; else by ranking the request's candidate
 * ids in the order given (rank 1, 2, ..., score 1/rank, at most {@code top_k}, model version
 * {@value #DEFAULT_MODEL_VERSION}). A response without a {@code request_id} gets the request's
 * one, or {@code "fake-N"} for the N-th call. GetModelInfo answers {@link #modelInfo} (default: model
 * {@value #DEFAULT_MODEL_VERSION}) or fails as set by {@link #failModelInfo}.
 *
 * <p><b>Events.</b> RecordEvents records events in memory: an event whose {@code event_id} the
 * server has recorded before is answered {@code EVENT_STATUS_DUPLICATE}, one that {@link
 * #checkEvent} (or the check set with {@link #eventCheck}) finds wrong {@code
 * EVENT_STATUS_REJECTED} with the reason, any other {@code EVENT_STATUS_ACCEPTED} and kept
 * ({@link #recordedEvents()}). An empty batch or one of more than {@link
 * CouponRankClient#MAX_EVENTS_PER_CALL} events fails with INVALID_ARGUMENT, as with the real
 * server; {@link #failNextEvents} injects failures.
 *
 * <p><b>Transports.</b> {@link #start()} and {@link Builder#start()} listen on 127.0.0.1 on a free
 * port (Netty, plaintext); {@link Builder#tls} and {@link Builder#requireClientCertificates} add
 * TLS and mutual TLS; {@link Builder#inProcess} uses grpc's in-process transport (no socket).
 * {@link #clientBuilder()} and {@link #newClient()} give a client connected to it; {@link
 * #target()} the address for your own client configuration.
 *
 * <p>Thread-safe: answers may be changed while calls run. {@link #close()} stops the server at
 * once and shuts down the channels this class created ({@link #newChannel()}, in-process
 * clients).
 */
public final class FakeCouponRankServer implements AutoCloseable {

  /** The model version of the default answers. */
  public static final String DEFAULT_MODEL_VERSION = "fake-model";

  /**
   * The default deadline of the clients from {@link #clientBuilder()}: long, so that the first
   * call in a cold JVM (class loading, TLS set-up) does not fail the test; set your own to test
   * deadlines.
   */
  public static final Duration CLIENT_DEFAULT_DEADLINE = Duration.ofSeconds(10);

  /** Answers one RankCoupons call. */
  @FunctionalInterface
  public interface Handler {
    /**
     * Returns the response to {@code request}, the {@code callNumber}-th RankCoupons call (from 1,
     * failed calls included). Throw a {@link StatusRuntimeException} (e.g. {@code
     * Status.INVALID_ARGUMENT.withDescription("user_id: must not be empty").asRuntimeException()})
     * to fail the call with that status; return {@code null} to never answer, so that the call
     * ends at the client's deadline or cancellation. Any other exception fails the call with
     * UNKNOWN. Runs on a gRPC server thread; may block.
     */
    RankCouponsResponse rank(RankCouponsRequest request, int callNumber);
  }

  /**
   * One RankCoupons call the server received.
   *
   * @param number the call's number, from 1
   * @param request the request as received
   * @param deadline the deadline the call arrived with, or null for none
   * @param headers the request headers (metadata) the call arrived with
   * @param authority the call's authority (the server name the client sent), or null
   */
  public record ReceivedCall(
      int number, RankCouponsRequest request, Deadline deadline, Metadata headers, String authority) {}

  /**
   * Decides whether the fake records an event whose {@code event_id} it has not recorded yet.
   */
  @FunctionalInterface
  public interface EventCheck {
    /**
     * Returns {@code null} or {@code ""} to accept {@code event}, else the detail of its rejection
     * (in words starting with the field's name, as the real server's). Runs with the server's
     * event lock held, one event at a time.
     */
    String check(Event event);
  }

  /**
   * One RecordEvents call the server received.
   *
   * @param number the call's number among the RecordEvents calls, from 1
   * @param request the request as received
   * @param deadline the deadline the call arrived with, or null for none
   * @param headers the request headers (metadata) the call arrived with
   * @param authority the call's authority (the server name the client sent), or null
   */
  public record ReceivedEventsCall(
      int number, RecordEventsRequest request, Deadline deadline, Metadata headers, String authority) {}

  private static final Context.Key<Metadata> HEADERS = Context.key("couponrank-fake-headers");
  private static final Context.Key<String> AUTHORITY = Context.key("couponrank-fake-authority");

  private final Server server;
  private final String inProcessName; // null for Netty
  private final boolean tls;
  private final List<ManagedChannel> channels = new CopyOnWriteArrayList<>();
  private final List<ReceivedCall> calls = new CopyOnWriteArrayList<>();
  private final AtomicInteger rankCalls = new AtomicInteger();
  private final AtomicInteger modelInfoCalls = new AtomicInteger();
  private final ConcurrentLinkedQueue<Status> failures = new ConcurrentLinkedQueue<>();
  private volatile Handler handler;
  private volatile RankCouponsResponse canned;
  private volatile Supplier<GetModelInfoResponse> modelInfo;
  private final List<ReceivedEventsCall> eventCalls = new CopyOnWriteArrayList<>();
  private final ConcurrentLinkedQueue<Status> eventFailures = new ConcurrentLinkedQueue<>();
  private volatile EventCheck eventCheck;
  private final Object eventLock = new Object();
  private final List<Event> events = new ArrayList<>(); // accepted, in order; under eventLock
  private final Set<String> eventIds = new HashSet<>(); // their ids; under eventLock

  private FakeCouponRankServer(Builder b) throws IOException {
    this.modelInfo = constant(defaultModelInfo());
    this.tls = b.certChain != null;
    ServerInterceptor captureHeaders =
        new ServerInterceptor() {
          @Override
          public <Q, R> ServerCall.Listener<Q> interceptCall(
              ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
            Context ctx =
                Context.current().withValues(HEADERS, headers, AUTHORITY, call.getAuthority());
            return Contexts.interceptCall(ctx, call, headers, next);
          }
        };
    io.grpc.ServerServiceDefinition service = ServerInterceptors.intercept(new Service(), captureHeaders);
    if (b.inProcess) {
      this.inProcessName = InProcessServerBuilder.generateName();
      this.server = InProcessServerBuilder.forName(inProcessName).addService(service).build().start();
    } else {
      this.inProcessName = null;
      NettyServerBuilder nb =
          b.certChain == null
              ? NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
              : NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0), b.serverCredentials());
      this.server = nb.addService(service).build().start();
    }
  }

  /** Starts a plaintext server on 127.0.0.1 on a free port, with the default answers. */
  public static FakeCouponRankServer start() throws IOException {
    return newBuilder().start();
  }

  /** A builder for TLS, mutual TLS or the in-process transport. */
  public static Builder newBuilder() {
    return new Builder();
  }

  // ---- answers ----------------------------------------------------------------------------

  /**
   * Answers RankCoupons with {@code response} (its {@code request_id}, when empty, is filled in as
   * described in the class comment) and removes the handler. {@code null}: back to the default
   * answer.
   */
  public FakeCouponRankServer respondWith(RankCouponsResponse response) {
    this.canned = response;
    this.handler = null;
    return this;
  }

  /** Answers RankCoupons with {@code handler}; {@code null}: back to the canned or default answer. */
  public FakeCouponRankServer handler(Handler handler) {
    this.handler = handler;
    return this;
  }

  /**
   * Fails the next {@code times} RankCoupons calls with {@code status} (for example {@code
   * Status.UNAVAILABLE}: the client retries them), before the normal answers resume. Queued after
   * the failures already queued.
   */
  public FakeCouponRankServer failNext(int times, Status status) {
    Objects.requireNonNull(status, "status");
    if (status.isOk()) {
      throw new IllegalArgumentException("failNext needs an error status, not OK");
    }
    if (times < 0) {
      throw new IllegalArgumentException("times must not be negative: " + times);
    }
    for (int i = 0; i < times; i++) {
      failures.add(status);
    }
    return this;
  }

  /** Answers GetModelInfo with {@code info}. */
  public FakeCouponRankServer modelInfo(GetModelInfoResponse info) {
    this.modelInfo = constant(Objects.requireNonNull(info, "info"));
    return this;
  }

  /** Fails every GetModelInfo call with {@code status} until {@link #modelInfo} is called. */
  public FakeCouponRankServer failModelInfo(Status status) {
    Objects.requireNonNull(status, "status");
    this.modelInfo =
        () -> {
          throw status.asRuntimeException();
        };
    return this;
  }

  /**
   * Fails the next {@code times} RecordEvents calls with {@code status} (for example {@code
   * Status.UNAVAILABLE}, which the client retries, or {@code Status.PERMISSION_DENIED}), recording
   * none of their events; then the normal answers resume. A queue of its own, apart from {@link
   * #failNext}'s.
   */
  public FakeCouponRankServer failNextEvents(int times, Status status) {
    Objects.requireNonNull(status, "status");
    if (status.isOk()) {
      throw new IllegalArgumentException("failNextEvents needs an error status, not OK");
    }
    if (times < 0) {
      throw new IllegalArgumentException("times must not be negative: " + times);
    }
    for (int i = 0; i < times; i++) {
      eventFailures.add(status);
    }
    return this;
  }

  /**
   * Replaces {@link #checkEvent}, the check of the events not recorded yet ({@code null}: {@link
   * #checkEvent} again). A check adding rules of your own can start with {@link #checkEvent}:
   *
   * <pre>{@code
   * server.eventCheck(e -> {
   *   String d = FakeCouponRankServer.checkEvent(e);
   *   return d != null ? d
   *       : e.getRedemption().getCouponId().equals("c-expired") ? "redemption.coupon_id: expired"
   *       : null;
   * });
   * }</pre>
   */
  public FakeCouponRankServer eventCheck(EventCheck check) {
    this.eventCheck = check;
    return this;
  }

  /** Forgets the recorded calls, events and queued failures; restores the default answers. */
  public FakeCouponRankServer reset() {
    failures.clear();
    calls.clear();
    eventFailures.clear();
    eventCalls.clear();
    eventCheck = null;
    synchronized (eventLock) {
      events.clear();
      eventIds.clear();
    }
    rankCalls.set(0);
    modelInfoCalls.set(0);
    handler = null;
    canned = null;
    modelInfo = constant(defaultModelInfo());
    return this;
  }

  // ---- what was received ------------------------------------------------------------------

  /** The RankCoupons requests received so far, in arrival order (failed calls included). */
  public List<RankCouponsRequest> requests() {
    List<RankCouponsRequest> out = new ArrayList<>();
    for (ReceivedCall c : calls) {
      out.add(c.request());
    }
    return List.copyOf(out);
  }

  /**
   * The RankCoupons calls received so far, with their deadlines, headers and authorities, in
   * arrival order.
   */
  public List<ReceivedCall> calls() {
    return List.copyOf(calls);
  }

  /** The number of RankCoupons calls received, failed ones included. */
  public int rankCouponsCalls() {
    return rankCalls.get();
  }

  /** The number of GetModelInfo calls received. */
  public int modelInfoCalls() {
    return modelInfoCalls.get();
  }

  /**
   * The events accepted so far, in the order they were accepted (duplicates and rejected events
   * are not in it).
   */
  public List<Event> recordedEvents() {
    synchronized (eventLock) {
      return List.copyOf(events);
    }
  }

  /**
   * The RecordEvents calls received so far, failed ones included, with their deadlines, headers
   * and authorities, in arrival order.
   */
  public List<ReceivedEventsCall> eventCalls() {
    return List.copyOf(eventCalls);
  }

  /** The number of RecordEvents calls received, failed ones included. */
  public int recordEventsCalls() {
    return eventCalls.size();
  }

  /**
   * The fake's default {@link EventCheck}: the API's rules that need no data. Returns the detail
   * of the rejection, or {@code null} for an event it accepts. It rejects an event without {@code
   * event_id}, {@code user_id}, {@code event_time} or kind; an id over 128 bytes (UTF-8); an
   * impression without {@code coupon_id}, with a {@code position} below 1 or without a placement;
   * a claim or redemption without {@code coupon_id}; a behaviour without type or {@code item_id},
   * or an order line without {@code order_id}; a negative amount. It does not check what needs
   * the server's clock or data: {@code event_time}'s window (5 minutes ahead, 30 days behind),
   * coupons in the catalogue, currencies, a redemption's impression.
   */
  public static String checkEvent(Event event) {
    Objects.requireNonNull(event, "event");
    String d = firstProblem(id("event_id", event.getEventId(), true), id("user_id", event.getUserId(), true));
    if (d != null) {
      return d;
    }
    if (!event.hasEventTime()) {
      return "event_time: required";
    }
    if (event.getEventTime().getNanos() < 0 || event.getEventTime().getNanos() > 999_999_999) {
      return "event_time: nanos out of range: " + event.getEventTime().getNanos();
    }
    switch (event.getKindCase()) {
      case IMPRESSION:
        ImpressionEvent imp = event.getImpression();
        d = firstProblem(
            id("impression.request_id", imp.getRequestId(), false),
            id("impression.coupon_id", imp.getCouponId(), true));
        if (d != null) {
          return d;
        }
        if (imp.getPosition() < 1) {
          return "impression.position: must be at least 1, got " + imp.getPosition();
        }
        if (imp.getPlacementValue() == Placement.PLACEMENT_UNSPECIFIED_VALUE) {
          return "impression.placement: required";
        }
        return null;
      case CLAIM:
        return firstProblem(
            id("claim.coupon_id", event.getClaim().getCouponId(), true),
            id("claim.impression_event_id", event.getClaim().getImpressionEventId(), false));
      case REDEMPTION:
        RedemptionEvent r = event.getRedemption();
        return firstProblem(
            id("redemption.coupon_id", r.getCouponId(), true),
            id("redemption.order_id", r.getOrderId(), false),
            id("redemption.impression_event_id", r.getImpressionEventId(), false),
            amount("redemption.discount", r.getDiscount()),
            amount("redemption.order_total", r.getOrderTotal()));
      case BEHAVIOUR:
        BehaviourEvent b = event.getBehaviour();
        if (b.getTypeValue() == BehaviourType.BEHAVIOUR_TYPE_UNSPECIFIED_VALUE) {
          return "behaviour.type: required";
        }
        return firstProblem(
            id("behaviour.item_id", b.getItemId(), true),
            id("behaviour.order_id", b.getOrderId(), b.getType() == BehaviourType.BEHAVIOUR_TYPE_ORDER),
            amount("behaviour.amount", b.getAmount()));
      default:
        return "kind: one of impression, claim, redemption or behaviour is required";
    }
  }

  private static String firstProblem(String... problems) {
    for (String p : problems) {
      if (p != null) {
        return p;
      }
    }
    return null;
  }

  private static String id(String field, String value, boolean required) {
    if (value.isEmpty()) {
      return required ? field + ": required" : null;
    }
    int bytes = value.getBytes(StandardCharsets.UTF_8).length;
    return bytes > 128 ? field + ": " + bytes + " bytes, more than 128" : null;
  }

  private static String amount(String field, Money money) {
    return money.getAmountMinor() < 0
        ? field + ": must not be negative, got " + money.getAmountMinor()
        : null;
  }

  // ---- connecting -------------------------------------------------------------------------

  /**
   * The address to give a client's {@code target(...)}: {@code "127.0.0.1:PORT"}.
   *
   * @throws IllegalStateException for an in-process server (use {@link #clientBuilder()})
   */
  public String target() {
    if (inProcessName != null) {
      throw new IllegalStateException("an in-process server has no network target; use clientBuilder()");
    }
    return "127.0.0.1:" + server.getPort();
  }

  /** The port the server listens on, or -1 in process. */
  public int port() {
    return inProcessName != null ? -1 : server.getPort();
  }

  /** Whether the server uses the in-process transport. */
  public boolean isInProcess() {
    return inProcessName != null;
  }

  /**
   * A client builder connected to this server, with {@link #CLIENT_DEFAULT_DEADLINE} as its
   * default deadline; set more options and {@code build()} it. Plaintext servers: {@code
   * target(target())}. TLS servers: the same with TLS on; add the CA that signed
   * the server's certificate ({@code trustCertificates}), the name it was issued for ({@code
   * overrideAuthority}) and, for mutual TLS, {@code clientCertificate}. In process: a channel
   * that {@link #close()} shuts down.
   */
  public CouponRankClient.Builder clientBuilder() {
    CouponRankClient.Builder b = CouponRankClient.newBuilder().defaultDeadline(CLIENT_DEFAULT_DEADLINE);
    if (inProcessName != null) {
      return b.channel(newChannel());
    }
    return b.target(target()).usePlaintext(!tls);
  }

  /**
   * A new channel to this server, for {@code CouponRankClient.Builder.channel(...)} or your own
   * stubs; {@link #close()} shuts it down. gRPC's built-in retries are disabled on it, as on the
   * channels {@link CouponRankClient} creates.
   *
   * @throws IllegalStateException for a TLS server (use {@link #clientBuilder()} with TLS options)
   */
  public ManagedChannel newChannel() {
    if (tls) {
      throw new IllegalStateException("a TLS server needs TLS options: use clientBuilder()");
    }
    ManagedChannel ch =
        inProcessName != null
            ? InProcessChannelBuilder.forName(inProcessName).disableRetry().build()
            : ManagedChannelBuilder.forTarget(target()).usePlaintext().disableRetry().build();
    channels.add(ch);
    return ch;
  }

  /** {@code clientBuilder().build()}: a client with the default options, connected here. */
  public CouponRankClient newClient() {
    return clientBuilder().build();
  }

  /**
   * Stops the server at once (calls in flight fail with UNAVAILABLE) and the channels it created;
   * waits up to five seconds for them to terminate.
   */
  @Override
  public void close() {
    server.shutdownNow();
    for (ManagedChannel ch : channels) {
      ch.shutdownNow();
    }
    try {
      server.awaitTermination(5, TimeUnit.SECONDS);
      for (ManagedChannel ch : channels) {
        ch.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  // ---- internals --------------------------------------------------------------------------

  private static Supplier<GetModelInfoResponse> constant(GetModelInfoResponse info) {
    return () -> info;
  }

  private static GetModelInfoResponse defaultModelInfo() {
    return GetModelInfoResponse.newBuilder()
        .setModelVersion(DEFAULT_MODEL_VERSION)
        .addFeatureNames("fake_feature")
        .build();
  }

  /** The default answer: the candidates in the order given, at most top_k. */
  static RankCouponsResponse rankInOrder(RankCouponsRequest request) {
    RankCouponsResponse.Builder res = RankCouponsResponse.newBuilder().setModelVersion(DEFAULT_MODEL_VERSION);
    int n = request.getCandidateCouponIdsCount();
    if (request.getTopK() > 0) {
      n = Math.min(n, request.getTopK());
    }
    for (int i = 0; i < n; i++) {
      res.addRankedCoupons(
          RankedCoupon.newBuilder()
              .setCouponId(request.getCandidateCouponIds(i))
              .setRank(i + 1)
              .setScore(1.0 / (i + 1)));
    }
    if (n == 0) {
      res.setNote("the fake server ranks only the candidate coupon ids named in the request");
    }
    return res.build();
  }

  private final class Service extends CouponRankingServiceGrpc.CouponRankingServiceImplBase {
    @Override
    public void rankCoupons(RankCouponsRequest req, StreamObserver<RankCouponsResponse> obs) {
      int n = rankCalls.incrementAndGet();
      calls.add(new ReceivedCall(n, req, Context.current().getDeadline(), HEADERS.get(), AUTHORITY.get()));
      Status failure = failures.poll();
      if (failure != null) {
        obs.onError(failure.withDescription(
            failure.getDescription() != null ? failure.getDescription() : "injected failure, call " + n)
            .asRuntimeException());
        return;
      }
      RankCouponsResponse res;
      try {
        Handler h = handler;
        RankCouponsResponse c = canned;
        res = h != null ? h.rank(req, n) : c != null ? c : rankInOrder(req);
      } catch (StatusRuntimeException e) {
        obs.onError(e);
        return;
      } catch (RuntimeException e) {
        obs.onError(Status.UNKNOWN.withDescription("fake handler threw " + e).withCause(e).asRuntimeException());
        return;
      }
      if (res == null) {
        return; // never answer: the client's deadline or cancellation ends the call
      }
      if (res.getRequestId().isEmpty()) {
        res = res.toBuilder()
            .setRequestId(req.getRequestId().isEmpty() ? "fake-" + n : req.getRequestId())
            .build();
      }
      obs.onNext(res);
      obs.onCompleted();
    }

    @Override
    public void recordEvents(RecordEventsRequest req, StreamObserver<RecordEventsResponse> obs) {
      int n;
      synchronized (eventCalls) { // numbers in arrival order
        n = eventCalls.size() + 1;
        eventCalls.add(new ReceivedEventsCall(n, req, Context.current().getDeadline(), HEADERS.get(), AUTHORITY.get()));
      }
      Status failure = eventFailures.poll();
      if (failure != null) {
        obs.onError(failure.withDescription(
            failure.getDescription() != null ? failure.getDescription() : "injected failure, events call " + n)
            .asRuntimeException());
        return;
      }
      int count = req.getEventsCount();
      if (count == 0 || count > CouponRankClient.MAX_EVENTS_PER_CALL) {
        obs.onError(Status.INVALID_ARGUMENT
            .withDescription(count == 0
                ? "events: at least one event is required"
                : "events: " + count + " events, more than the " + CouponRankClient.MAX_EVENTS_PER_CALL
                    + " allowed in one call")
            .asRuntimeException());
        return;
      }
      EventCheck check = eventCheck;
      RecordEventsResponse.Builder res = RecordEventsResponse.newBuilder();
      try {
        synchronized (eventLock) {
          for (Event e : req.getEventsList()) {
            EventResult.Builder r = EventResult.newBuilder().setEventId(e.getEventId());
            String detail;
            if (eventIds.contains(e.getEventId())) { // a retry, or the same event twice in the batch
              r.setStatus(EventStatus.EVENT_STATUS_DUPLICATE);
            } else if ((detail = check != null ? check.check(e) : checkEvent(e)) != null && !detail.isEmpty()) {
              r.setStatus(EventStatus.EVENT_STATUS_REJECTED).setDetail(detail);
            } else {
              r.setStatus(EventStatus.EVENT_STATUS_ACCEPTED);
              eventIds.add(e.getEventId());
              events.add(e);
            }
            res.addResults(r);
          }
        }
      } catch (RuntimeException e) {
        obs.onError(Status.UNKNOWN.withDescription("fake event check threw " + e).withCause(e).asRuntimeException());
        return;
      }
      obs.onNext(res.build());
      obs.onCompleted();
    }

    @Override
    public void getModelInfo(GetModelInfoRequest req, StreamObserver<GetModelInfoResponse> obs) {
      modelInfoCalls.incrementAndGet();
      try {
        obs.onNext(modelInfo.get());
        obs.onCompleted();
      } catch (StatusRuntimeException e) {
        obs.onError(e);
      }
    }
  }

  /** Options of a {@link FakeCouponRankServer}; {@link #start()} starts it. */
  public static final class Builder {
    private boolean inProcess;
    private Path certChain;
    private Path privateKey;
    private Path clientCa;

    private Builder() {}

    /** Uses grpc's in-process transport instead of a socket (no TLS). */
    public Builder inProcess() {
      this.inProcess = true;
      return this;
    }

    /** Serves TLS with this certificate chain and unencrypted PKCS#8 private key (PEM files). */
    public Builder tls(Path certificateChainPem, Path privateKeyPem) {
      this.certChain = Objects.requireNonNull(certificateChainPem, "certificateChainPem");
      this.privateKey = Objects.requireNonNull(privateKeyPem, "privateKeyPem");
      return this;
    }

    /**
     * Mutual TLS: refuses clients without a certificate signed by a CA of this PEM file. Needs
     * {@link #tls}.
     */
    public Builder requireClientCertificates(Path clientCaCertificatesPem) {
      this.clientCa = Objects.requireNonNull(clientCaCertificatesPem, "clientCaCertificatesPem");
      return this;
    }

    /**
     * Starts the server.
     *
     * @throws IOException if it cannot listen
     * @throws IllegalArgumentException for contradicting options or an unreadable TLS file (named)
     */
    public FakeCouponRankServer start() throws IOException {
      if (inProcess && certChain != null) {
        throw new IllegalArgumentException("the in-process transport has no TLS");
      }
      if (clientCa != null && certChain == null) {
        throw new IllegalArgumentException("requireClientCertificates needs tls(...)");
      }
      return new FakeCouponRankServer(this);
    }

    private ServerCredentials serverCredentials() {
      TlsServerCredentials.Builder tls = TlsServerCredentials.newBuilder();
      try {
        tls.keyManager(certChain.toFile(), privateKey.toFile());
      } catch (IOException | UncheckedIOException e) {
        throw new IllegalArgumentException("tls: cannot read " + certChain + " or " + privateKey + ": " + e, e);
      }
      if (clientCa != null) {
        try {
          tls.trustManager(clientCa.toFile());
        } catch (IOException | UncheckedIOException e) {
          throw new IllegalArgumentException("requireClientCertificates: cannot read " + clientCa + ": " + e, e);
        }
        tls.clientAuth(TlsServerCredentials.ClientAuth.REQUIRE);
      }
      return tls.build();
    }
  }
}
