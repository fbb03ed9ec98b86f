package couponrank

import (
	"context"
	"time"
)

// Hooks for the tests of package couponrank_test, which need the fake
// server of couponranktest (itself an importer of couponrank).

// Backoff returns the client's backoff bounds.
func Backoff(c *Client) (initial, max time.Duration) {
	return c.opts.initialBackoff, c.opts.maxBackoff
}

// SetJitter sets the client's backoff jitter (0: none).
func SetJitter(c *Client, j float64) { c.opts.jitter = j }

// SetSleep replaces the client's backoff wait.
func SetSleep(c *Client, sleep func(ctx context.Context, d time.Duration) error) { c.sleep = sleep }

// Jittered is jittered.
var Jittered = jittered
