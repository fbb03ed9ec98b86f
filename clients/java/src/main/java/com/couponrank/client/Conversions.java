package com.couponrank.client;

import com.couponrank.v1.Event;
import com.couponrank.v1.Membership;
import com.couponrank.v1.Money;
import com.couponrank.v1.RequestContext;
import com.google.protobuf.Timestamp;
import java.math.BigDecimal;
import java.time.Instant;
import java.util.Arrays;
import java.util.Currency;
import java.util.Objects;

/**
 * Conversions between Java values and the API's {@link Money}, {@link Timestamp} and {@link
 * Membership} messages, and the start of an {@link Event}.
 *
 * <pre>{@code
 * Money total = Conversions.money("19.99", "USD");          // amount_minor 1999
 * Money yen = Conversions.money(new BigDecimal("1500"), "JPY"); // amount_minor 1500
 * BigDecimal back = Conversions.toBigDecimal(total);          // 19.99
 * RequestContext.Builder ctx = RequestContext.newBuilder().setCartTotal(total);
 * Conversions.setRequestTime(ctx, Instant.parse("2026-11-01T12:00:00Z")); // null: the server's now
 * ctx.setMembership(Conversions.membership("gold", "newsletter")); // unset: the server's stored one
 * Event claim = Conversions.event("clm-1", "u-123", Instant.now())
 *     .setClaim(ClaimEvent.newBuilder().setCouponId("c1"))
 *     .build();
 * }</pre>
 *
 * <p>The number of minor-unit digits of a currency is {@link Currency#getDefaultFractionDigits()}
 * of the JDK's ISO 4217 table (2 for USD and EUR, 0 for JPY, 3 for BHD).
 */
public final class Conversions {

  /** The earliest instant a {@link Timestamp} may hold: 0001-01-01T00:00:00Z. */
  public static final Instant MIN_TIMESTAMP = Instant.parse("0001-01-01T00:00:00Z");
  /** The latest instant a {@link Timestamp} may hold: 9999-12-31T23:59:59.999999999Z. */
  public static final Instant MAX_TIMESTAMP = Instant.parse("9999-12-31T23:59:59.999999999Z");

  private Conversions() {}

  /**
   * Money from a decimal amount in major units and an ISO 4217 code: {@code ("19.99", "USD")} is
   * 1999 minor units, {@code ("1500", "JPY")} 1500. Trailing zeros are fine ({@code "19.990"}).
   *
   * @throws IllegalArgumentException naming the value if the currency is not an ISO 4217 code
   *     (upper case) with a minor unit, the amount has more decimal places than the currency, or
   *     the amount in minor units does not fit in a long
   */
  public static Money money(BigDecimal amount, String currencyCode) {
    if (amount == null) {
      throw new IllegalArgumentException("amount must not be null");
    }
    Currency currency = currency(currencyCode);
    int digits = currency.getDefaultFractionDigits();
    if (amount.signum() != 0 && amount.stripTrailingZeros().scale() > digits) {
      throw new IllegalArgumentException(
          "amount " + amount + " has more decimal places than " + currencyCode
              + " allows (" + digits + ")");
    }
    long amountMinor;
    try {
      amountMinor = amount.movePointRight(digits).setScale(0).longValueExact();
    } catch (ArithmeticException e) {
      throw new IllegalArgumentException(
          "amount " + amount + " " + currencyCode + " does not fit in int64 minor units");
    }
    return Money.newBuilder().setCurrencyCode(currencyCode).setAmountMinor(amountMinor).build();
  }

  /**
   * Money from a decimal string such as {@code "19.99"} (as {@link BigDecimal#BigDecimal(String)}
   * reads it) and an ISO 4217 code.
   *
   * @throws IllegalArgumentException naming the value if the string is not a decimal number, or
   *     for the reasons of {@link #money(BigDecimal, String)}
   */
  public static Money money(String amount, String currencyCode) {
    if (amount == null) {
      throw new IllegalArgumentException("amount must not be null");
    }
    BigDecimal value;
    try {
      value = new BigDecimal(amount);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("amount \"" + amount + "\" is not a decimal number");
    }
    return money(value, currencyCode);
  }

  /**
   * The amount of {@code money} in major units, with the currency's number of decimal places:
   * 1999 USD minor units is {@code 19.99}, 1500 JPY is {@code 1500}.
   *
   * @throws IllegalArgumentException naming the code if the currency is unknown
   */
  public static BigDecimal toBigDecimal(Money money) {
    Objects.requireNonNull(money, "money");
    int digits = currency(money.getCurrencyCode()).getDefaultFractionDigits();
    return BigDecimal.valueOf(money.getAmountMinor(), digits);
  }

  /**
   * The {@link Timestamp} of an instant.
   *
   * @throws IllegalArgumentException if the instant is null or outside {@link #MIN_TIMESTAMP} ..
   *     {@link #MAX_TIMESTAMP}, the range the server accepts
   */
  public static Timestamp timestamp(Instant instant) {
    if (instant == null) {
      throw new IllegalArgumentException(
          "instant must not be null (leave the field unset for the server's current time)");
    }
    if (instant.isBefore(MIN_TIMESTAMP) || instant.isAfter(MAX_TIMESTAMP)) {
      throw new IllegalArgumentException(
          "instant " + instant + " is outside " + MIN_TIMESTAMP + " .. " + MAX_TIMESTAMP);
    }
    return Timestamp.newBuilder().setSeconds(instant.getEpochSecond()).setNanos(instant.getNano()).build();
  }

  /**
   * The instant of a {@link Timestamp}.
   *
   * @throws IllegalArgumentException if its nanos are outside 0 .. 999,999,999 or it is outside
   *     {@link #MIN_TIMESTAMP} .. {@link #MAX_TIMESTAMP}
   */
  public static Instant toInstant(Timestamp timestamp) {
    Objects.requireNonNull(timestamp, "timestamp");
    if (timestamp.getNanos() < 0 || timestamp.getNanos() > 999_999_999) {
      throw new IllegalArgumentException("timestamp nanos out of range: " + timestamp.getNanos());
    }
    Instant instant = Instant.ofEpochSecond(timestamp.getSeconds(), timestamp.getNanos());
    if (instant.isBefore(MIN_TIMESTAMP) || instant.isAfter(MAX_TIMESTAMP)) {
      throw new IllegalArgumentException("timestamp " + instant + " is outside " + MIN_TIMESTAMP + " .. " + MAX_TIMESTAMP);
    }
    return instant;
  }

  /**
   * Sets {@code context.request_time} to {@code at}, or clears it when {@code at} is null: unset
   * means the server's current time. Returns {@code context} for chaining.
   *
   * @throws IllegalArgumentException as {@link #timestamp(Instant)} for an instant out of range
   */
  public static RequestContext.Builder setRequestTime(RequestContext.Builder context, Instant at) {
    Objects.requireNonNull(context, "context");
    return at == null ? context.clearRequestTime() : context.setRequestTime(timestamp(at));
  }

  /**
   * The user's membership as the caller knows it now (for example right after the user joined or
   * moved up a tier), for {@code RequestContext.Builder.setMembership}: the server then uses it
   * in place of the membership it has stored for the user, both for the coupons' audiences
   * ({@code INELIGIBILITY_REASON_NOT_IN_AUDIENCE}) and for the model's features. Leave the field
   * unset to have the server use its stored membership.
   *
   * <p>{@code tier} is one of the server's tiers ({@code "gold"}), or {@code ""} for a user who is
   * not a member: {@code membership("")} says so explicitly. {@code segmentIds} are the audience
   * segments the user belongs to. The values are not checked here: the server rejects, with
   * INVALID_ARGUMENT naming {@code context.membership.tier} or {@code
   * context.membership.segment_ids}, a tier it does not declare, more than 100 segment ids, or an
   * id that is empty or over 128 bytes.
   *
   * @throws IllegalArgumentException if {@code tier}, {@code segmentIds} or one of the ids is null
   */
  public static Membership membership(String tier, String... segmentIds) {
    if (segmentIds == null) {
      throw new IllegalArgumentException("segmentIds must not be null");
    }
    return membership(tier, Arrays.asList(segmentIds));
  }

  /**
   * {@link #membership(String, String...)} with the segment ids in an {@link Iterable}.
   *
   * @throws IllegalArgumentException if {@code tier}, {@code segmentIds} or one of the ids is null
   */
  public static Membership membership(String tier, Iterable<String> segmentIds) {
    if (tier == null) {
      throw new IllegalArgumentException(
          "membership tier must not be null (\"\" for a user who is not a member)");
    }
    if (segmentIds == null) {
      throw new IllegalArgumentException("segmentIds must not be null");
    }
    Membership.Builder m = Membership.newBuilder().setTier(tier);
    for (String id : segmentIds) {
      if (id == null) {
        throw new IllegalArgumentException("membership segment ids must not hold null");
      }
      m.addSegmentIds(id);
    }
    return m.build();
  }

  /**
   * The start of an event for {@link CouponRankClient#recordEvents}: a builder with its {@code
   * event_id} (the caller's id of the event, its idempotency key), {@code user_id} and {@code
   * event_time} set; set its kind ({@code setImpression}, {@code setClaim}, {@code
   * setRedemption} or {@code setBehaviour}) and build it:
   *
   * <pre>{@code
   * Event shown = Conversions.event("imp-8812-1", "u-123", Instant.now())
   *     .setImpression(ImpressionEvent.newBuilder()
   *         .setRequestId(response.getRequestId())  // the ranking it was shown in
   *         .setCouponId("c1").setPosition(1).setPlacement(Placement.PLACEMENT_CHECKOUT))
   *     .build();
   * }</pre>
   *
   * <p>The values are not checked here beyond nulls: the server rejects the event (not the call)
   * with a detail naming the field when an id is empty or over 128 bytes, or {@code eventTime} is
   * more than 5 minutes ahead of its clock or 30 days behind it.
   *
   * @throws IllegalArgumentException if an argument is null, or {@code eventTime} is outside
   *     {@link #MIN_TIMESTAMP} .. {@link #MAX_TIMESTAMP}
   */
  public static Event.Builder event(String eventId, String userId, Instant eventTime) {
    if (eventId == null) {
      throw new IllegalArgumentException("eventId must not be null");
    }
    if (userId == null) {
      throw new IllegalArgumentException("userId must not be null");
    }
    if (eventTime == null) {
      throw new IllegalArgumentException("eventTime must not be null (it is required)");
    }
    return Event.newBuilder().setEventId(eventId).setUserId(userId).setEventTime(timestamp(eventTime));
  }

  private static Currency currency(String code) {
    Currency currency;
    try {
      currency = code == null ? null : Currency.getInstance(code);
    } catch (IllegalArgumentException e) {
      currency = null;
    }
    if (currency == null) {
      throw new IllegalArgumentException(
          "unknown currency code " + (code == null ? "null" : "\"" + code + "\"")
              + " (want an upper-case ISO 4217 code such as \"USD\")");
    }
    if (currency.getDefaultFractionDigits() < 0) {
      throw new IllegalArgumentException(
          "currency code \"" + code + "\" has no minor unit (ISO 4217 fund or metal code)");
    }
    return currency;
  }
}
