package couponrank_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/couponrank/couponrank/clients/go/couponrank"
	"github.com/couponrank/couponrank/clients/go/couponranktest"
	"github.com/couponrank/couponrank/clients/go/internal/testcerts"
)

// tlsCall dials addr with opts (one attempt, no retry) and makes one call.
func tlsCall(t *testing.T, addr string, opts ...couponrank.Option) error {
	t.Helper()
	opts = append([]couponrank.Option{couponrank.WithMaxAttempts(1), couponrank.WithTimeout(10 * time.Second)}, opts...)
	c, err := couponrank.Dial(addr, opts...)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	_, err = c.RankCoupons(context.Background(), rankReq())
	return err
}

func TestTLS(t *testing.T) {
	pki := testcerts.Write(t)
	srv := couponranktest.Start(t, couponranktest.WithTLS(pki.ServerCert, pki.ServerKey))

	if err := tlsCall(t, srv.Addr(), couponrank.WithTLS(pki.CA)); err != nil {
		t.Fatalf("TLS call: %v", err)
	}
	// The certificate names couponrank.test too: a target the certificate
	// does not name works with WithServerName.
	if err := tlsCall(t, "localhost:"+port(srv.Addr()), couponrank.WithTLS(pki.CA), couponrank.WithServerName(testcerts.ServerName)); err != nil {
		t.Fatalf("TLS call with server name: %v", err)
	}
	if n := len(srv.Calls()); n != 2 {
		t.Fatalf("server calls %d, want 2", n)
	}

	other := testcerts.Write(t) // another CA, which did not sign the server's certificate
	for name, opts := range map[string][]couponrank.Option{
		"wrong CA":           {couponrank.WithTLS(other.CA)},
		"system roots":       {couponrank.WithTLS("")},
		"wrong server name":  {couponrank.WithTLS(pki.CA), couponrank.WithServerName("other.test")},
		"plaintext":          nil,
		"plaintext explicit": {couponrank.WithTransportCredentials(insecure.NewCredentials())},
	} {
		t.Run(name, func(t *testing.T) {
			if err := tlsCall(t, srv.Addr(), opts...); status.Code(err) != codes.Unavailable {
				t.Errorf("got %v, want UNAVAILABLE", err)
			}
		})
	}
	if n := len(srv.Calls()); n != 2 {
		t.Errorf("server calls %d, want still 2: failed handshakes reach no handler", n)
	}
}

func TestMutualTLS(t *testing.T) {
	pki := testcerts.Write(t)
	srv := couponranktest.Start(t, couponranktest.WithTLS(pki.ServerCert, pki.ServerKey), couponranktest.WithClientCA(pki.CA))

	if err := tlsCall(t, srv.Addr(), couponrank.WithTLS(pki.CA), couponrank.WithClientCertificate(pki.ClientCert, pki.ClientKey)); err != nil {
		t.Fatalf("mTLS call: %v", err)
	}
	other := testcerts.Write(t)
	for name, opts := range map[string][]couponrank.Option{
		"no client certificate":     {couponrank.WithTLS(pki.CA)},
		"certificate of another CA": {couponrank.WithTLS(pki.CA), couponrank.WithClientCertificate(other.ClientCert, other.ClientKey)},
	} {
		t.Run(name, func(t *testing.T) {
			if err := tlsCall(t, srv.Addr(), opts...); status.Code(err) != codes.Unavailable {
				t.Errorf("got %v, want UNAVAILABLE", err)
			}
		})
	}
	if n := len(srv.Calls()); n != 1 {
		t.Errorf("server calls %d, want 1: refused clients reach no handler", n)
	}
}

func TestTLSOptionErrors(t *testing.T) {
	pki := testcerts.Write(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for name, tc := range map[string]struct {
		opts []couponrank.Option
		want string // in the error
	}{
		"CA missing":                 {[]couponrank.Option{couponrank.WithTLS(missing)}, missing},
		"CA not PEM":                 {[]couponrank.Option{couponrank.WithTLS(garbage)}, garbage},
		"CA is a key":                {[]couponrank.Option{couponrank.WithTLS(pki.ClientKey)}, pki.ClientKey},
		"client cert missing":        {[]couponrank.Option{couponrank.WithTLS(pki.CA), couponrank.WithClientCertificate(missing, pki.ClientKey)}, missing},
		"client key missing":         {[]couponrank.Option{couponrank.WithTLS(pki.CA), couponrank.WithClientCertificate(pki.ClientCert, missing)}, missing},
		"client key not PEM":         {[]couponrank.Option{couponrank.WithTLS(pki.CA), couponrank.WithClientCertificate(pki.ClientCert, garbage)}, garbage},
		"key of another cert":        {[]couponrank.Option{couponrank.WithTLS(pki.CA), couponrank.WithClientCertificate(pki.ClientCert, pki.ServerKey)}, pki.ServerKey},
		"client cert without key":    {[]couponrank.Option{couponrank.WithTLS(pki.CA), couponrank.WithClientCertificate(pki.ClientCert, "")}, "key file"},
		"client cert without TLS":    {[]couponrank.Option{couponrank.WithClientCertificate(pki.ClientCert, pki.ClientKey)}, "needs WithTLS"},
		"server name without TLS":    {[]couponrank.Option{couponrank.WithServerName("couponrank.test")}, "needs WithTLS"},
		"empty server name":          {[]couponrank.Option{couponrank.WithTLS(pki.CA), couponrank.WithServerName("")}, "server name"},
		"TLS and transport creds":    {[]couponrank.Option{couponrank.WithTLS(pki.CA), couponrank.WithTransportCredentials(insecure.NewCredentials())}, "WithTransportCredentials"},
		"transport creds, TLS after": {[]couponrank.Option{couponrank.WithTransportCredentials(insecure.NewCredentials()), couponrank.WithTLS("")}, "WithTransportCredentials"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := couponrank.Dial("127.0.0.1:1", tc.opts...)
			if err == nil {
				c.Close()
				t.Fatal("Dial accepted bad TLS options")
			}
			if !strings.HasPrefix(err.Error(), "couponrank: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want the package prefix and %q", err, tc.want)
			}
		})
	}
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }
