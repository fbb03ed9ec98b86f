package couponrank_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

func TestParseMoney(t *testing.T) {
	for _, c := range []struct {
		amount, currency string
		want             int64
	}{
		{"19.99", "USD", 1999},
		{"19.9", "USD", 1990},
		{"19", "USD", 1900},
		{"0.05", "EUR", 5},
		{"0", "EUR", 0},
		{"007.50", "GBP", 750},
		{"-5.00", "USD", -500}, // the server judges negative cart totals
		{"1500", "JPY", 1500},
		{"1500", "KRW", 1500},
		{"1.234", "KWD", 1234},
		{"1.5", "BHD", 1500},
		{"2", "TND", 2000},
		{"1.2345", "CLF", 12345},
		{"9223372036854775807", "JPY", math.MaxInt64},
		{"-9223372036854775808", "JPY", math.MinInt64},
		{"92233720368547758.07", "USD", math.MaxInt64},
	} {
		m, err := couponrank.ParseMoney(c.amount, c.currency)
		if err != nil || m.GetAmountMinor() != c.want || m.GetCurrencyCode() != c.currency {
			t.Errorf("ParseMoney(%q, %q) = %v, %v; want %d", c.amount, c.currency, m, err, c.want)
		}
	}
}

func TestParseMoneyRejects(t *testing.T) {
	for _, c := range []struct{ amount, currency, want string }{
		{"19.999", "USD", "too many decimals (3; USD has 2)"},
		{"10.5", "JPY", "too many decimals (1; JPY has 0)"},
		{"1500.0", "JPY", "JPY has 0"},
		{"1.2345", "KWD", "KWD has 3"},
		{"", "USD", "not a decimal"},
		{".5", "USD", "not a decimal"},
		{"5.", "USD", "not a decimal"},
		{"+5", "USD", "not a decimal"},
		{" 5", "USD", "not a decimal"},
		{"5 ", "USD", "not a decimal"},
		{"1,000.00", "USD", "not a decimal"},
		{"1e3", "USD", "not a decimal"},
		{"--5", "USD", "not a decimal"},
		{"-", "USD", "not a decimal"},
		{"1.2.3", "USD", "not a decimal"},
		{"١٢", "USD", "not a decimal"},
		{"9223372036854775808", "JPY", "out of range"},
		{"92233720368547758.08", "USD", "out of range"},
		{"5", "usd", "three upper-case letters"},
		{"5", "US", "three upper-case letters"},
		{"5", "USDX", "three upper-case letters"},
		{"5", "U$D", "three upper-case letters"},
		{"5", "", "three upper-case letters"},
	} {
		m, err := couponrank.ParseMoney(c.amount, c.currency)
		if err == nil {
			t.Errorf("ParseMoney(%q, %q) = %v, want an error", c.amount, c.currency, m)
			continue
		}
		if m != nil || !strings.HasPrefix(err.Error(), "couponrank: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseMoney(%q, %q): %v, %q; want nil and an error saying %q", c.amount, c.currency, m, err, c.want)
		}
	}
}

func TestFormatMoney(t *testing.T) {
	for _, c := range []struct {
		minor    int64
		currency string
		want     string
	}{
		{1999, "USD", "19.99"},
		{5, "USD", "0.05"},
		{-5, "USD", "-0.05"},
		{-1999, "USD", "-19.99"},
		{0, "USD", "0.00"},
		{100, "EUR", "1.00"},
		{1500, "JPY", "1500"},
		{-1500, "JPY", "-1500"},
		{0, "JPY", "0"},
		{1234, "KWD", "1.234"},
		{1, "OMR", "0.001"},
		{12345, "CLF", "1.2345"},
		{math.MaxInt64, "USD", "92233720368547758.07"},
		{math.MinInt64, "USD", "-92233720368547758.08"},
		{math.MinInt64, "JPY", "-9223372036854775808"},
	} {
		m := couponrank.Money(c.currency, c.minor)
		got, err := couponrank.FormatMoney(m)
		if err != nil || got != c.want {
			t.Errorf("FormatMoney(%d %s) = %q, %v; want %q", c.minor, c.currency, got, err, c.want)
			continue
		}
		back, err := couponrank.ParseMoney(got, c.currency)
		if err != nil || back.GetAmountMinor() != c.minor {
			t.Errorf("ParseMoney(FormatMoney(%d %s)) = %v, %v", c.minor, c.currency, back, err)
		}
	}
	for _, m := range []*couponrankv1.Money{nil, couponrank.Money("usd", 1), couponrank.Money("", 1)} {
		if s, err := couponrank.FormatMoney(m); err == nil {
			t.Errorf("FormatMoney(%v) = %q, want an error", m, s)
		}
	}
}

func TestMinorUnitDigits(t *testing.T) {
	for code, want := range map[string]int{
		"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "MGA": 2, "XYZ": 2,
		"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "XAF": 0,
		"BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3, "IQD": 3, "LYD": 3,
		"CLF": 4, "UYW": 4,
	} {
		if got, err := couponrank.MinorUnitDigits(code); err != nil || got != want {
			t.Errorf("MinorUnitDigits(%q) = %d, %v; want %d", code, got, err, want)
		}
	}
	if _, err := couponrank.MinorUnitDigits("jpy"); err == nil {
		t.Error("MinorUnitDigits accepted a lower-case code")
	}
}

func TestRequestTime(t *testing.T) {
	if ts := couponrank.RequestTime(time.Time{}); ts != nil {
		t.Errorf("zero time gave %v, want nil (the server's clock)", ts)
	}
	tokyo := time.FixedZone("JST", 9*3600)
	at := time.Date(2026, 11, 1, 21, 0, 0, 123456789, tokyo)
	ts := couponrank.RequestTime(at)
	if ts == nil || !ts.AsTime().Equal(at) || ts.GetSeconds() != time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC).Unix() || ts.GetNanos() != 123456789 {
		t.Errorf("RequestTime(%v) = %v", at, ts)
	}
	req := &couponrankv1.RankCouponsRequest{Context: &couponrankv1.RequestContext{RequestTime: couponrank.RequestTime(at)}}
	if !req.GetContext().GetRequestTime().AsTime().Equal(at) {
		t.Errorf("request time %v", req.GetContext().GetRequestTime())
	}
}
