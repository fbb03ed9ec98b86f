package couponrank

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
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
// credentials.NewTLS(cfg). Without it Dial uses plaintext (insecure
// credentials), which suits a service mesh that terminates TLS in a sidecar.
// Ignored by NewClient, which uses the connection it is given.
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("transport credentials must not be nil")
		}
		o.creds = c
		return nil
	}
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
