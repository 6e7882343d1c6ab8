package treadle_test

import (
	"context"
	"errors"
	"testing"
	"time"

	treadle "github.com/treadle-dev/treadle/sdk-go"
)

func TestNewWorkerNamesTheBadField(t *testing.T) {
	base := treadle.Config{ServerURL: "http://127.0.0.1:7233"}
	cases := []struct {
		field  string
		change func(*treadle.Config)
	}{
		{"ServerURL", func(c *treadle.Config) { c.ServerURL = "" }},
		{"ServerURL", func(c *treadle.Config) { c.ServerURL = "ftp://x" }},
		{"ServerURL", func(c *treadle.Config) { c.ServerURL = "ws://h/v1/tasks/other/stream"; c.Queue = "q" }},
		{"Queue", func(c *treadle.Config) { c.Queue = "a b" }},
		{"Queue", func(c *treadle.Config) { c.Queue = "diagnostics" }},
		{"Concurrency", func(c *treadle.Config) { c.Concurrency = 1001 }},
		{"Concurrency", func(c *treadle.Config) { c.Concurrency = -1 }},
		{"Transport", func(c *treadle.Config) { c.Transport = "carrier-pigeon" }},
		{"PollTimeout", func(c *treadle.Config) { c.PollTimeout = time.Minute + 1 }},
		{"ShutdownTimeout", func(c *treadle.Config) { c.ShutdownTimeout = -time.Second }},
		{"ReconnectCap", func(c *treadle.Config) { c.ReconnectBase = time.Second; c.ReconnectCap = time.Millisecond }},
		{"OutboxLimit", func(c *treadle.Config) { c.OutboxLimit = -3 }},
		{"BuildID", func(c *treadle.Config) { c.BuildID = string(make([]byte, 513)) }},
	}
	for _, c := range cases {
		cfg := base
		c.change(&cfg)
		_, err := treadle.NewWorker(cfg)
		var bad *treadle.ConfigError
		if !errors.As(err, &bad) || bad.Field != c.field || !errors.Is(err, treadle.ErrInvalidConfig) {
			t.Errorf("%s: got %v", c.field, err)
		}
	}
	w, err := treadle.NewWorker(treadle.Config{ServerURL: "ws://127.0.0.1:1/v1/tasks/conformance/stream"})
	if err != nil || w.WorkerID() == "" {
		t.Fatalf("defaults: %v", err)
	}
}

func TestRegisterActivityRefusesBadRegistrations(t *testing.T) {
	w, err := treadle.NewWorker(treadle.Config{ServerURL: "http://127.0.0.1:1"})
	must(t, err)
	must(t, treadle.RegisterActivity(w, "wf", "echo", echo))
	for _, names := range [][2]string{{"wf", "echo"}, {"w.f", "x"}, {"wf", "1x"}, {"", "x"}} {
		if err := treadle.RegisterActivity(w, names[0], names[1], echo); !errors.Is(err, treadle.ErrInvalidActivity) {
			t.Errorf("%v: %v", names, err)
		}
	}
	if err := treadle.RegisterActivity[any, any](w, "wf", "nil", nil); !errors.Is(err, treadle.ErrInvalidActivity) {
		t.Errorf("nil: %v", err)
	}
	empty, err := treadle.NewWorker(treadle.Config{ServerURL: "http://127.0.0.1:1"})
	must(t, err)
	if err := empty.Run(context.Background()); !errors.Is(err, treadle.ErrNoActivities) {
		t.Errorf("Run without activities: %v", err)
	}
}
