package cadence

import (
	"math"
	"testing"
	"time"
)

func TestActivityHeartbeat(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	cases := []struct {
		vt   *float64
		want time.Duration
	}{
		{nil, 10 * time.Second},
		{f(30000), 10 * time.Second},
		{f(3000), time.Second},
		{f(500), time.Second},
		{f(6001), 2000 * time.Millisecond},
		{f(7000), 2333 * time.Millisecond},
		{f(math.Inf(1)), 10 * time.Second},
	}
	for _, c := range cases {
		if got := ActivityHeartbeat(c.vt); got != c.want {
			t.Errorf("ActivityHeartbeat(%v) = %v, want %v", c.vt, got, c.want)
		}
	}
}
