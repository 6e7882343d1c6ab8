// Package backoff computes jittered exponential delays for reconnects and retries (SDK-5).
//
// "Full jitter": the n-th delay is drawn uniformly from [0, min(cap, base·2ⁿ)], which spreads
// a fleet of workers that lost the same orchestrator instead of having them all return in the
// same instant. The random source is injectable so tests are exact.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff hands out delays: call Next after each failure and Reset after a success.
// It is not safe for concurrent use.
type Backoff struct {
	Base, Cap time.Duration
	// Jitter draws the delay uniformly from [0, ceiling]; without it the ceiling is used.
	Jitter bool
	// Rand returns a uniform float64 in [0, 1); nil means math/rand/v2.
	Rand     func() float64
	failures int
}

// New is a full-jitter backoff from base to limit.
func New(base, limit time.Duration) *Backoff {
	return &Backoff{Base: base, Cap: limit, Jitter: true}
}

// Ceiling is the largest delay the next failure can get.
func (b *Backoff) Ceiling() time.Duration {
	d := b.Base
	for i := 0; i < b.failures && d < b.Cap; i++ {
		d *= 2
	}
	return min(d, b.Cap)
}

// Next is the delay before the next try.
func (b *Backoff) Next() time.Duration {
	ceiling := b.Ceiling()
	b.failures++
	if !b.Jitter {
		return ceiling
	}
	random := b.Rand
	if random == nil {
		random = rand.Float64
	}
	return time.Duration(random() * float64(ceiling))
}

// Failures is the number of delays handed out since the last Reset.
func (b *Backoff) Failures() int { return b.failures }

// Reset starts again from Base.
func (b *Backoff) Reset() { b.failures = 0 }
