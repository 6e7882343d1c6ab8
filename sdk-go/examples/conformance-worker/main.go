// Command conformance-worker is the Go SDK's worker for the conformance suite and the
// end-to-end tests. It reads Weft's environment contract:
//
//	WEFT_WORKER_URL                         the stream URL (…/v1/tasks/<queue>/stream) or a base URL
//	WEFT_WORKER_QUEUE                       the queue (default: the URL's)
//	WEFT_WORKER_ACTIVITIES                  the qualified activities to offer (default: all three)
//	WEFT_WORKER_PROTOCOL_VERSION            must be 8 when set
//	WEFT_CONFORMANCE_HEARTBEAT_INTERVAL_MS  the session heartbeat interval
//	TREADLE_API_KEY                         an API key (optional)
//	TREADLE_TRANSPORT                       auto (default), websocket or longpoll
//	TREADLE_WORKER_ID                       the worker id (optional)
//	TREADLE_CONCURRENCY                     the concurrency (optional)
//	TREADLE_LOG_LEVEL                       debug, info (default), warn or error
//
// and offers conformance.echo, conformance.sleep and conformance.cancel (reference §18.5).
// SIGTERM and SIGINT drain the worker; it exits 0 after a clean drain.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	treadle "github.com/treadle-dev/treadle/sdk-go"
)

// Input is what the conformance activities read; the value they return is the input as sent.
type Input map[string]any

func milliseconds(in Input, fallback float64) time.Duration {
	if ms, ok := in["milliseconds"].(float64); ok {
		fallback = ms
	}
	return time.Duration(fallback * float64(time.Millisecond))
}

func echo(_ context.Context, in any) (any, error) { return in, nil }

func sleepActivity(ctx context.Context, in Input) (Input, error) {
	info, _ := treadle.ActivityInfoFromContext(ctx)
	if hold, _ := in["holdForReassignment"].(bool); hold {
		details, withDetails := in["heartbeatDetails"]
		if info.Attempt <= 1 {
			if withDetails {
				if err := treadle.Heartbeat(ctx, details); err != nil { // for the next attempt (HB-3)
					return nil, err
				}
			}
			<-ctx.Done() // never reply: wait to be reassigned
			return nil, context.Cause(ctx)
		}
		if withDetails {
			return Input{"lastHeartbeatDetails": info.LastHeartbeatDetails}, nil
		}
		return in, nil
	}
	timer := time.NewTimer(milliseconds(in, 25))
	defer timer.Stop()
	select {
	case <-timer.C:
		return in, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func cancelActivity(ctx context.Context, in Input) (Input, error) {
	timer := time.NewTimer(milliseconds(in, 25))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil, errors.New("Cancel was not delivered")
	case <-ctx.Done():
		return nil, context.Cause(ctx) // reported as cancelled with the server's reason
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "conformance-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmp.Or(os.Getenv("TREADLE_LOG_LEVEL"), "info"))); err != nil {
		return fmt.Errorf("TREADLE_LOG_LEVEL: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if v := os.Getenv("WEFT_WORKER_PROTOCOL_VERSION"); v != "" && v != "8" {
		return fmt.Errorf("protocol version %s is not supported (8 only)", v)
	}
	cfg := treadle.Config{
		ServerURL:      os.Getenv("WEFT_WORKER_URL"),
		Queue:          os.Getenv("WEFT_WORKER_QUEUE"),
		WorkerID:       os.Getenv("TREADLE_WORKER_ID"),
		APIKey:         os.Getenv("TREADLE_API_KEY"),
		Transport:      treadle.Transport(os.Getenv("TREADLE_TRANSPORT")),
		DeploymentName: "conformance",
		BuildID:        "go-conformance-worker",
		Logger:         logger,
	}
	if v := os.Getenv("WEFT_CONFORMANCE_HEARTBEAT_INTERVAL_MS"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return fmt.Errorf("WEFT_CONFORMANCE_HEARTBEAT_INTERVAL_MS=%q is not a positive integer", v)
		}
		cfg.HeartbeatInterval = time.Duration(ms) * time.Millisecond
	}
	if v := os.Getenv("TREADLE_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("TREADLE_CONCURRENCY=%q is not an integer", v)
		}
		cfg.Concurrency = n
	}
	w, err := treadle.NewWorker(cfg)
	if err != nil {
		return err
	}
	wanted := []string{"conformance.echo", "conformance.sleep", "conformance.cancel"}
	if v := os.Getenv("WEFT_WORKER_ACTIVITIES"); v != "" {
		wanted = strings.Split(v, ",")
	}
	for _, name := range wanted {
		switch strings.TrimSpace(name) {
		case "conformance.echo":
			err = treadle.RegisterActivity(w, "conformance", "echo", echo)
		case "conformance.sleep":
			err = treadle.RegisterActivity(w, "conformance", "sleep", sleepActivity)
		case "conformance.cancel":
			err = treadle.RegisterActivity(w, "conformance", "cancel", cancelActivity)
		default:
			err = fmt.Errorf("unknown activity %q", name)
		}
		if err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return w.Run(ctx)
}
