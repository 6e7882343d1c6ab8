package backoff

import (
	"testing"
	"time"
)

func TestCeilingDoublesToTheCapAndResets(t *testing.T) {
	b := New(500*time.Millisecond, 30*time.Second)
	b.Jitter = false
	var got []time.Duration
	for range 9 {
		got = append(got, b.Next())
	}
	want := []time.Duration{500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delay %d = %v, want %v", i, got[i], want[i]*time.Millisecond)
		}
	}
	b.Reset()
	if b.Next() != 500*time.Millisecond || b.Failures() != 1 {
		t.Fatal("reset")
	}
}

func TestFullJitterDrawsFromZeroToTheCeiling(t *testing.T) {
	b := New(500*time.Millisecond, 30*time.Second)
	draws := []float64{0, 0.5, 0.999}
	b.Rand = func() float64 { d := draws[0]; draws = draws[1:]; return d }
	if d := b.Next(); d != 0 {
		t.Fatal(d)
	}
	if d := b.Next(); d != 500*time.Millisecond { // half of 1 s
		t.Fatal(d)
	}
	if d := b.Next(); d != time.Duration(0.999*float64(2*time.Second)) {
		t.Fatal(d)
	}
	for range 100 {
		if d := New(time.Millisecond, time.Second).Next(); d < 0 || d > time.Millisecond {
			t.Fatal(d)
		}
	}
}
