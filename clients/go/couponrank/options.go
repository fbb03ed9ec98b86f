package couponrank

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/couponrank/couponrank/clients/go/internal/tlsfiles"
)

// Defaults used by Dial and NewClient when no option overrides them.
const (
	// DefaultTimeout bounds a call whose context has no deadline, retries
	// included.
	DefaultTimeout = 500 * time.Millisecond
	// DefaultMaxAttempts is the number of attempts (first try included) made
	// for a call that keeps failing with codes.Unavailable.
	DefaultMaxAttempts = 3
	// DefaultInitialBackoff is the pause before the first retry; each further
	// retry doubles it, up to DefaultMaxBackoff.
	DefaultInitialBackoff = 25 * time.Millisecond
	// DefaultMaxBackoff caps the pause between two attempts.
	DefaultMaxBackoff = 250 * time.Millisecond
	// MaxAttemptsLimit is the largest value WithMaxAttempts accepts.
	MaxAttemptsLimit = 10
)

// Option configures a Client. Options are checked when the client is built:
// Dial and NewClient return an error for an invalid one.
type Option func(*options) error

type options struct {
	timeout        time.Duration
	maxAttempts    int
	initialBackoff time.Duration
	maxBackoff     time.Duration
	jitter         float64
	creds          credentials.TransportCredentials
	dialOptions    []grpc.DialOption

	// Set by WithTLS, WithClientCertificate and WithServerName; turned into
	// creds by buildOptions once all options are in.
	tls                       bool
	caFile, certFile, keyFile string
	serverName                string

	// Set by WithBearerToken and WithBearerTokenFile; checked (and the file
	// read) by buildBearer, which leaves the token to send in bearerToken.
	bearerToken     string
	bearerTokenSet  bool
	bearerTokenFile string
}

func defaultOptions() options {
	return options{
		timeout:        DefaultTimeout,
		maxAttempts:    DefaultMaxAttempts,
		initialBackoff: DefaultInitialBackoff,
		maxBackoff:     DefaultMaxBackoff,
		jitter:         0.2,
	}
}

func buildOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return options{}, fmt.Errorf("couponrank: %w", err)
		}
	}
	if err := o.buildTLS(); err != nil {
		return options{}, fmt.Errorf("couponrank: %w", err)
	}
	if err := o.buildBearer(); err != nil {
		return options{}, fmt.Errorf("couponrank: %w", err)
	}
	return o, nil
}

// WithTimeout sets the timeout applied to a call whose context has no
// deadline (default DefaultTimeout). It bounds the whole call, retries and
// backoff included. A deadline already on the context always wins, whether
// shorter or longer. d must be positive.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be positive, got %v", d)
		}
		o.timeout = d
		return nil
	}
}

// WithMaxAttempts sets how many times a call is tried in total when it fails
// with codes.Unavailable (default DefaultMaxAttempts; 1 disables retries).
// n must be between 1 and MaxAttemptsLimit.
func WithMaxAttempts(n int) Option {
	return func(o *options) error {
		if n < 1 || n > MaxAttemptsLimit {
			return fmt.Errorf("max attempts must be in [1, %d], got %d", MaxAttemptsLimit, n)
		}
		o.maxAttempts = n
		return nil
	}
}

// WithBackoff sets the exponential backoff between attempts: the first retry
// waits about initial, each later one twice as long as the previous, never
// more than max. Each wait is jittered by ±20%. Requires 0 < initial <= max.
func WithBackoff(initial, max time.Duration) Option {
	return func(o *options) error {
		if initial <= 0 || max < initial {
			return fmt.Errorf("backoff needs 0 < initial <= max, got initial=%v max=%v", initial, max)
		}
		o.initialBackoff, o.maxBackoff = initial, max
		return nil
	}
}

// WithTransportCredentials sets the connection's transport security, e.g.
// credentials.NewTLS(cfg). Without it (or WithTLS) Dial uses plaintext
// (insecure credentials), which suits a service mesh that terminates TLS in a
// sidecar. WithTLS is the simpler way to TLS from files. Ignored by
// NewClient, which uses the connection it is given.
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("transport credentials must not be nil")
		}
		o.creds = c
		return nil
	}
}

// WithTLS makes Dial connect over TLS, checking the server's certificate
// against the CA certificates (PEM) in caFile, or against the system's roots
// when caFile is "". Without it (and without WithTransportCredentials) Dial
// uses plaintext. The file is read when the client is built: Dial fails,
// naming the file, when it cannot be read or holds no certificate. Cannot be
// combined with WithTransportCredentials. Ignored by NewClient.
//
// A server whose certificate the client does not trust fails every call with
// codes.Unavailable (the handshake fails, so nothing reached the server).
func WithTLS(caFile string) Option {
	return func(o *options) error {
		o.tls, o.caFile = true, caFile
		return nil
	}
}

// WithClientCertificate presents the certificate in certFile (PEM, with any
// intermediates after it) and its private key in keyFile (PEM) to the server,
// for mutual TLS. It needs WithTLS. The files are read when the client is
// built: Dial fails, naming the file, when one cannot be read or parsed.
func WithClientCertificate(certFile, keyFile string) Option {
	return func(o *options) error {
		if certFile == "" || keyFile == "" {
			return fmt.Errorf("client certificate needs both a certificate file and a key file, got %q and %q", certFile, keyFile)
		}
		o.certFile, o.keyFile = certFile, keyFile
		return nil
	}
}

// WithServerName sets the name the server's certificate must hold, in place
// of the host of Dial's target; it is also sent as the TLS SNI. Use it when
// the target is an IP address or a load balancer's name. It needs WithTLS.
func WithServerName(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("server name must not be empty")
		}
		o.serverName = name
		return nil
	}
}

// buildTLS checks the TLS options together and turns them into creds.
func (o *options) buildTLS() error {
	if !o.tls {
		if o.certFile != "" {
			return errors.New("WithClientCertificate needs WithTLS (a CA file, or \"\" for the system roots)")
		}
		if o.serverName != "" {
			return errors.New("WithServerName needs WithTLS (a CA file, or \"\" for the system roots)")
		}
		return nil
	}
	if o.creds != nil {
		return errors.New("WithTLS and WithTransportCredentials cannot be used together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.serverName}
	if o.caFile != "" {
		pool, err := tlsfiles.CertPool("TLS CA file", o.caFile)
		if err != nil {
			return err
		}
		cfg.RootCAs = pool
	}
	if o.certFile != "" {
		cert, err := tlsfiles.KeyPair("client certificate", o.certFile, o.keyFile)
		if err != nil {
			return err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	o.creds = credentials.NewTLS(cfg)
	return nil
}

// WithBearerToken sends token on every call (every attempt of RankCoupons and
// GetModelInfo, retries included) as the gRPC metadata
// "authorization: Bearer <token>", which the server uses to identify the
// caller (a caller named with explain = "all" in the server's callers file
// sees the user's own features in explanations). A token the server does not
// know fails every call with codes.Unauthenticated, which is not retried. Make
// tokens with `couponrank token`.
//
// The token must be non-empty printable ASCII without whitespace (the option
// takes the token alone, not "Bearer ..."); Dial and NewClient return an
// error otherwise. It replaces any "authorization" metadata already on a
// call's context; all other metadata there is sent as well.
//
// Use it with TLS (WithTLS or WithTransportCredentials): over plaintext the
// token can be read by anyone on the network path and replayed. Plaintext is
// not refused, for loopback, tests and a mesh sidecar that adds TLS. Cannot be
// combined with WithBearerTokenFile.
func WithBearerToken(token string) Option {
	return func(o *options) error {
		if err := checkToken(token); err != nil {
			return fmt.Errorf("bearer token: %w", err)
		}
		o.bearerToken, o.bearerTokenSet = token, true
		return nil
	}
}

// WithBearerTokenFile is WithBearerToken with the token read from path (e.g.
// a mounted secret), once, when the client is built; whitespace around the
// token, such as a final newline, is ignored. Dial and NewClient return an
// error naming the file when it cannot be read, is empty, or holds anything
// but one token (whitespace inside, non-ASCII characters). A token changed in
// the file later is not seen: build a new client. Use it with TLS, as
// WithBearerToken. Cannot be combined with WithBearerToken.
func WithBearerTokenFile(path string) Option {
	return func(o *options) error {
		if path == "" {
			return errors.New("bearer token file: empty file name")
		}
		o.bearerTokenFile = path
		return nil
	}
}

// buildBearer checks the bearer token options together and reads the token
// file.
func (o *options) buildBearer() error {
	if o.bearerTokenFile == "" {
		return nil
	}
	if o.bearerTokenSet {
		return errors.New("WithBearerToken and WithBearerTokenFile cannot be used together")
	}
	data, err := os.ReadFile(o.bearerTokenFile)
	if err != nil {
		return fmt.Errorf("bearer token file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return fmt.Errorf("bearer token file %s: the file holds no token", o.bearerTokenFile)
	}
	if err := checkToken(token); err != nil {
		return fmt.Errorf("bearer token file %s: %w", o.bearerTokenFile, err)
	}
	o.bearerToken, o.bearerTokenSet = token, true
	return nil
}

// checkToken checks that token can be sent as "Bearer <token>". The errors
// never quote the token: it is a secret.
func checkToken(token string) error {
	if token == "" {
		return errors.New("empty token")
	}
	for _, r := range token {
		switch {
		case unicode.IsSpace(r):
			return errors.New("the token holds whitespace (give the token alone, without \"Bearer \")")
		case r < 0x21 || r > 0x7E:
			return errors.New("the token holds a character other than printable ASCII")
		}
	}
	return nil
}

// WithDialOptions adds grpc.DialOptions (interceptors, a custom dialer,
// keepalive parameters, ...) to the connection Dial creates. Ignored by
// NewClient.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) error {
		o.dialOptions = append(o.dialOptions, opts...)
		return nil
	}
}

func (o *options) grpcDialOptions() []grpc.DialOption {
	creds := o.creds
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	// gRPC's own retry support is switched off: this package retries
	// UNAVAILABLE itself, and two layers of retries would multiply attempts.
	dial := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithDisableRetry()}
	return append(dial, o.dialOptions...)
}
