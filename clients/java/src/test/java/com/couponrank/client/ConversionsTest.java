package com.couponrank.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.couponrank.v1.ClaimEvent;
import com.couponrank.v1.Event;
import com.couponrank.v1.Membership;
import com.couponrank.v1.Money;
import com.couponrank.v1.RequestContext;
import com.google.protobuf.Timestamp;
import java.math.BigDecimal;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class ConversionsTest {

  @Test
  void event() {
    Instant at = Instant.parse("2026-11-01T12:00:00.250Z");
    Event e = Conversions.event("e-1", "u-1", at).setClaim(ClaimEvent.newBuilder().setCouponId("c1")).build();
    assertEquals("e-1", e.getEventId());
    assertEquals("u-1", e.getUserId());
    assertEquals(at, Conversions.toInstant(e.getEventTime()));
    assertEquals(Event.KindCase.CLAIM, e.getKindCase());
    assertEquals(Event.KindCase.KIND_NOT_SET, Conversions.event("e", "u", at).build().getKindCase());
    // Not checked here: the server rejects the event, naming the field.
    assertEquals("", Conversions.event("", "", at).build().getEventId());
    for (String name : List.of("eventId", "userId", "eventTime")) {
      IllegalArgumentException x =
          assertThrows(
              IllegalArgumentException.class,
              () -> Conversions.event(
                  name.equals("eventId") ? null : "e",
                  name.equals("userId") ? null : "u",
                  name.equals("eventTime") ? null : at));
      assertTrue(x.getMessage().startsWith(name), x.getMessage());
    }
    assertThrows(IllegalArgumentException.class, () -> Conversions.event("e", "u", Instant.MAX));
  }

  @Test
  void membership() {
    Membership gold = Conversions.membership("gold", "s1", "s2");
    assertEquals("gold", gold.getTier());
    assertEquals(List.of("s1", "s2"), gold.getSegmentIdsList());
    assertEquals(gold, Conversions.membership("gold", List.of("s1", "s2")));
    Membership none = Conversions.membership(""); // explicitly not a member
    assertEquals("", none.getTier());
    assertEquals(0, none.getSegmentIdsCount());
    assertTrue(RequestContext.newBuilder().setMembership(none).build().hasMembership());
    assertFalse(RequestContext.newBuilder().build().hasMembership()); // unset: the server's stored one
    // Not checked here: the server answers INVALID_ARGUMENT.
    assertEquals("diamond", Conversions.membership("diamond", "").getTier());
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> Conversions.membership(null));
    assertTrue(e.getMessage().contains("not a member"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> Conversions.membership("gold", "s1", null));
    assertThrows(IllegalArgumentException.class, () -> Conversions.membership("gold", (List<String>) null));
    assertThrows(IllegalArgumentException.class, () -> Conversions.membership("gold", (String[]) null));
  }

  @ParameterizedTest(name = "{0} {1} -> {2}")
  @CsvSource({
    "19.99, USD, 1999",
    "19.990, USD, 1999",
    "19, USD, 1900",
    "0, EUR, 0",
    "0.00, EUR, 0",
    "1500, JPY, 1500",
    "1500.00, JPY, 1500",
    "1.234, BHD, 1234",
    "1E+3, JPY, 1000",
    "-5.25, USD, -525",
    "92233720368547758.07, USD, 9223372036854775807",
  })
  void moneyFromDecimal(String amount, String currency, long minor) {
    Money m = Conversions.money(amount, currency);
    assertEquals(Money.newBuilder().setCurrencyCode(currency).setAmountMinor(minor).build(), m);
    assertEquals(m, Conversions.money(new BigDecimal(amount), currency));
    assertEquals(0, new BigDecimal(amount).compareTo(Conversions.toBigDecimal(m)));
  }

  @Test
  void toBigDecimalHasTheCurrencyScale() {
    assertEquals(new BigDecimal("19.99"), Conversions.toBigDecimal(Conversions.money("19.99", "USD")));
    assertEquals(new BigDecimal("19.00"), Conversions.toBigDecimal(Money.newBuilder().setCurrencyCode("USD").setAmountMinor(1900).build()));
    assertEquals(new BigDecimal("1500"), Conversions.toBigDecimal(Money.newBuilder().setCurrencyCode("JPY").setAmountMinor(1500).build()));
    assertEquals(new BigDecimal("1.234"), Conversions.toBigDecimal(Money.newBuilder().setCurrencyCode("BHD").setAmountMinor(1234).build()));
  }

  private static void assertRejected(String mustMention, Runnable r) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, r::run);
    assertTrue(e.getMessage().contains(mustMention), "\"" + e.getMessage() + "\" should mention " + mustMention);
  }

  @Test
  void rejectsBadInput() {
    assertRejected("19.999", () -> Conversions.money("19.999", "USD"));
    assertRejected("JPY", () -> Conversions.money("1500.5", "JPY"));
    assertRejected("\"XYZ\"", () -> Conversions.money("1", "XYZ"));
    assertRejected("\"usd\"", () -> Conversions.money("1", "usd"));
    assertRejected("\"\"", () -> Conversions.money("1", ""));
    assertRejected("null", () -> Conversions.money("1", null));
    assertRejected("\"XAU\"", () -> Conversions.money("1", "XAU")); // gold: no minor unit
    assertRejected("\"19,99\"", () -> Conversions.money("19,99", "EUR"));
    assertRejected("\" 1\"", () -> Conversions.money(" 1", "EUR"));
    assertRejected("int64", () -> Conversions.money("92233720368547758.08", "USD"));
    assertRejected("amount", () -> Conversions.money((String) null, "USD"));
    assertRejected("amount", () -> Conversions.money((BigDecimal) null, "USD"));
    assertRejected("\"ABC\"", () -> Conversions.toBigDecimal(Money.newBuilder().setCurrencyCode("ABC").build()));
  }

  @Test
  void timestamps() {
    Instant at = Instant.parse("2026-11-01T12:00:00.123456789Z");
    Timestamp ts = Conversions.timestamp(at);
    assertEquals(1793534400L, ts.getSeconds());
    assertEquals(123456789, ts.getNanos());
    assertEquals(at, Conversions.toInstant(ts));

    Timestamp before1970 = Conversions.timestamp(Instant.parse("1969-12-31T23:59:59.5Z"));
    assertEquals(-1, before1970.getSeconds());
    assertEquals(500_000_000, before1970.getNanos());

    assertEquals(Conversions.MIN_TIMESTAMP, Conversions.toInstant(Conversions.timestamp(Conversions.MIN_TIMESTAMP)));
    assertEquals(Conversions.MAX_TIMESTAMP, Conversions.toInstant(Conversions.timestamp(Conversions.MAX_TIMESTAMP)));
    assertRejected("outside", () -> Conversions.timestamp(Conversions.MIN_TIMESTAMP.minusNanos(1)));
    assertRejected("outside", () -> Conversions.timestamp(Conversions.MAX_TIMESTAMP.plusNanos(1)));
    assertRejected("server's current time", () -> Conversions.timestamp(null));
    assertRejected("nanos", () -> Conversions.toInstant(Timestamp.newBuilder().setNanos(-1).build()));
  }

  @Test
  void requestTimeSetOrUnset() {
    Instant at = Instant.parse("2026-11-01T12:00:00Z");
    RequestContext.Builder ctx = RequestContext.newBuilder();
    assertEquals(ctx, Conversions.setRequestTime(ctx, at));
    assertTrue(ctx.hasRequestTime());
    assertEquals(at, Conversions.toInstant(ctx.getRequestTime()));
    Conversions.setRequestTime(ctx, null); // unset: the server's current time
    assertFalse(ctx.hasRequestTime());
  }
}
