package com.couponrank.client;

import com.couponrank.v1.RankCouponsRequest;
import com.couponrank.v1.RankCouponsResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.Objects;
import java.util.Optional;

/**
 * The result of {@link CouponRankClient#rankOrEmpty}: always a response to render, plus the error
 * when the call failed.
 *
 * <p>On success {@link #response()} is the server's answer and {@link #error()} is empty. On any
 * failure {@link #response()} is an empty ranking (no ranked or ineligible coupons, the request's
 * {@code request_id} when it had one, every other field at its default) and {@link #error()} holds
 * the failure, for logs and metrics.
 */
public final class FailOpenResult {

  private final RankCouponsResponse response;
  private final StatusRuntimeException error;

  private FailOpenResult(RankCouponsResponse response, StatusRuntimeException error) {
    this.response = response;
    this.error = error;
  }

  /** A successful result. */
  static FailOpenResult ok(RankCouponsResponse response) {
    return new FailOpenResult(Objects.requireNonNull(response, "response"), null);
  }

  /** A failed result for {@code request} (may be null): an empty ranking and the error. */
  static FailOpenResult failed(RankCouponsRequest request, Throwable t) {
    StatusRuntimeException error =
        t instanceof StatusRuntimeException sre
            ? sre
            : Status.fromThrowable(t)
                .withDescription("RankCoupons failed in the client: " + t)
                .asRuntimeException();
    RankCouponsResponse.Builder empty = RankCouponsResponse.newBuilder();
    if (request != null) {
      empty.setRequestId(request.getRequestId());
    }
    return new FailOpenResult(empty.build(), error);
  }

  /** The server's response, or an empty ranking when the call failed. Never null. */
  public RankCouponsResponse response() {
    return response;
  }

  /** The failure, or empty when the call succeeded. */
  public Optional<StatusRuntimeException> error() {
    return Optional.ofNullable(error);
  }

  /** Whether the call succeeded ({@link #error()} is empty). */
  public boolean ok() {
    return error == null;
  }

  /** {@link Status#OK} on success, else the failure's status. */
  public Status status() {
    return error == null ? Status.OK : error.getStatus();
  }

  @Override
  public String toString() {
    return error == null
        ? "FailOpenResult{ok, ranked=" + response.getRankedCouponsCount() + "}"
        : "FailOpenResult{failed, " + error.getStatus() + "}";
  }
}
