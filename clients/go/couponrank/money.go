package couponrank

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	couponrankv1 "github.com/couponrank/couponrank/clients/go/couponrankv1"
)

// minorUnitDigits lists the ISO 4217 currencies whose minor unit is not a
// hundredth of the major unit: the "Minor unit" column of ISO 4217 List One
// (current currency and funds codes), published by SIX Financial Information,
// the standard's maintenance agency
// (https://www.six-group.com/en/products-services/financial-information/data-standards.html),
// as amended up to 2024. Every other well-formed code has 2 digits. Codes
// whose minor unit is "N.A." (XAU, XDR, XXX, ...) are not shop currencies and
// also get 2.
var minorUnitDigits = map[string]int{
	// No minor unit.
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
	"PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	// Thousandths.
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
	// Ten-thousandths (units of account).
	"CLF": 4, "UYW": 4,
}

// MinorUnitDigits returns the number of decimal digits of currencyCode's
// minor unit: 2 for USD (cents), 0 for JPY, 3 for KWD, following ISO 4217.
// currencyCode must be three upper-case ASCII letters; whether the server
// accepts the currency is for the server to say (INVALID_ARGUMENT).
func MinorUnitDigits(currencyCode string) (int, error) {
	if err := checkCurrencyCode(currencyCode); err != nil {
		return 0, err
	}
	if d, ok := minorUnitDigits[currencyCode]; ok {
		return d, nil
	}
	return 2, nil
}

func checkCurrencyCode(code string) error {
	if len(code) != 3 {
		return fmt.Errorf("couponrank: currency code %q is not three upper-case letters (ISO 4217, e.g. \"USD\")", code)
	}
	for i := 0; i < len(code); i++ {
		if code[i] < 'A' || code[i] > 'Z' {
			return fmt.Errorf("couponrank: currency code %q is not three upper-case letters (ISO 4217, e.g. \"USD\")", code)
		}
	}
	return nil
}

// ParseMoney returns the couponrankv1.Money for a decimal amount in the major
// unit of an ISO 4217 currency: ParseMoney("19.99", "USD") is 1999 minor
// units, ParseMoney("1500", "JPY") is 1500, ParseMoney("1.5", "KWD") is 1500.
//
// amount is ASCII digits with an optional '-' sign and an optional '.'
// followed by at most as many digits as the currency's minor unit has (see
// MinorUnitDigits): "19.999" USD and "10.5" JPY are errors, not rounded. No
// spaces, '+', exponents or thousands separators. A negative amount is
// accepted here; the server rejects it in a cart total. An amount beyond
// int64 minor units is an error. To build Money from minor units, use Money.
func ParseMoney(amount, currencyCode string) (*couponrankv1.Money, error) {
	digits, err := MinorUnitDigits(currencyCode)
	if err != nil {
		return nil, err
	}
	bad := func(why string) error {
		return fmt.Errorf("couponrank: amount %q %s: %s", amount, currencyCode, why)
	}
	s, neg := strings.CutPrefix(amount, "-")
	whole, frac, hasPoint := strings.Cut(s, ".")
	if whole == "" || !allDigits(whole) || (hasPoint && (frac == "" || !allDigits(frac))) {
		return nil, bad("not a decimal number such as 19.99")
	}
	if len(frac) > digits {
		return nil, bad(fmt.Sprintf("too many decimals (%d; %s has %d)", len(frac), currencyCode, digits))
	}
	minor := whole + frac + strings.Repeat("0", digits-len(frac))
	if neg {
		minor = "-" + minor
	}
	n, err := strconv.ParseInt(minor, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return nil, bad("out of range")
		}
		return nil, bad(err.Error())
	}
	return Money(currencyCode, n), nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatMoney returns m's amount as a decimal string in the currency's major
// unit, with exactly as many decimals as its minor unit (see
// MinorUnitDigits): 1999 USD is "19.99", -5 USD is "-0.05", 1500 JPY is
// "1500". The currency code is not included. ParseMoney reads the string
// back. A nil m or a malformed currency code is an error, as the number of
// decimals would be a guess.
func FormatMoney(m *couponrankv1.Money) (string, error) {
	if m == nil {
		return "", errors.New("couponrank: nil Money")
	}
	digits, err := MinorUnitDigits(m.GetCurrencyCode())
	if err != nil {
		return "", err
	}
	n := m.GetAmountMinor()
	sign := ""
	if n < 0 {
		sign = "-"
	}
	abs := uint64(n)
	if n < 0 {
		abs = uint64(-(n + 1)) + 1 // no overflow for math.MinInt64
	}
	s := strconv.FormatUint(abs, 10)
	if digits == 0 {
		return sign + s, nil
	}
	if len(s) <= digits {
		s = strings.Repeat("0", digits-len(s)+1) + s
	}
	return sign + s[:len(s)-digits] + "." + s[len(s)-digits:], nil
}

// RequestTime returns t as a RequestContext.request_time: the instant the
// server evaluates validity windows and time features at. The zero time.Time
// returns nil, which leaves the field unset: the server then uses its own
// clock. Any time zone is fine (a Timestamp is an instant); the server
// rejects, with INVALID_ARGUMENT, instants outside 0001-01-01 .. 9999-12-31
// UTC.
func RequestTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
