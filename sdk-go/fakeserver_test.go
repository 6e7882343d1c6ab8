package treadle_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	treadle "github.com/treadle-dev/treadle/sdk-go"
	"github.com/treadle-dev/treadle/sdk-go/internal/wiretest"
)

// wait bounds every wait of these tests; nothing sleeps.
const wait = 5 * time.Second

type frame map[string]any

func (f frame) str(key string) string { s, _ := f[key].(string); return s }

// fakeServer plays the orchestrator's side of the WebSocket stream, frame by frame. Every frame
// the worker sends is validated against the protocol schema.
type fakeServer struct {
	t     *testing.T
	srv   *httptest.Server
	conns chan *fakeConn
	// refuse, when set, answers upgrades with that status.
	mu      sync.Mutex
	refuse  int
	headers []http.Header
	// other serves requests that are not upgrades (the long-poll fallback).
	other http.Handler
}

type fakeConn struct {
	t      *testing.T
	c      *websocket.Conn
	frames chan frame
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{t: t, conns: make(chan *fakeConn, 16)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	refuse, other := f.refuse, f.other
	f.mu.Unlock()
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		if other == nil {
			http.NotFound(w, r)
			return
		}
		other.ServeHTTP(w, r)
		return
	}
	if refuse != 0 {
		http.Error(w, "refused", refuse)
		return
	}
	if r.URL.Path != "/api/v1/tasks/default/stream" {
		http.NotFound(w, r)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(4 << 20)
	conn := &fakeConn{t: f.t, c: c, frames: make(chan frame, 256)}
	f.conns <- conn
	go conn.read()
}

func (f *fakeServer) setRefuse(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse = status
}

func (f *fakeServer) header(i int) http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.headers[i]
}

func (c *fakeConn) read() {
	defer close(c.frames)
	for {
		kind, data, err := c.c.Read(context.Background())
		if err != nil {
			return
		}
		if kind != websocket.MessageText {
			c.t.Errorf("worker sent a binary frame (FRAME-2)")
		}
		if err := wiretest.Validate(wiretest.Messages, data); err != nil {
			c.t.Errorf("worker sent an invalid frame: %v", err)
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.t.Errorf("worker frame %s: %v", data, err)
		}
		c.frames <- f
	}
}

// accept waits for the worker's next connection.
func (f *fakeServer) accept() *fakeConn {
	f.t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(wait):
		f.t.Fatal("timed out waiting for the worker to connect")
		return nil
	}
}

// next returns the next frame of one of types, skipping others (heartbeats, say).
func (c *fakeConn) next(types ...string) frame {
	c.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("connection closed while waiting for %v", types)
			}
			for _, kind := range types {
				if f.str("type") == kind {
					return f
				}
			}
		case <-timeout:
			c.t.Fatalf("timed out waiting for %v", types)
		}
	}
}

// closed waits for the connection to end and returns the frames of types sent meanwhile.
func (c *fakeConn) closed(types ...string) []frame {
	c.t.Helper()
	var got []frame
	timeout := time.After(wait)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return got
			}
			for _, kind := range types {
				if f.str("type") == kind {
					got = append(got, f)
				}
			}
		case <-timeout:
			c.t.Fatal("timed out waiting for the connection to close")
		}
	}
}

func (c *fakeConn) send(v any) {
	c.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, data); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// register reads the worker's register frame and acknowledges it with generation.
func (c *fakeConn) register(generation int) frame {
	c.t.Helper()
	reg := c.next("register")
	c.send(frame{
		"type": "registerAck", "protocolVersion": 8, "workerId": reg.str("workerId"), "queue": "default",
		"concurrency": reg["concurrency"], "acceptedManifestDigest": "sha256:00",
		"serverCapabilities": []string{}, "sessionGeneration": generation,
	})
	return reg
}

func (c *fakeConn) task(op, activity string, input any, extra frame) {
	c.t.Helper()
	f := frame{"type": "task", "operationId": op, "activityName": activity, "input": input,
		"attempt": 1, "attemptToken": "tok-" + op, "visibilityTimeout": 30000}
	for k, v := range extra {
		f[k] = v
	}
	c.send(f)
}

func (c *fakeConn) ack(result frame) {
	c.t.Helper()
	c.send(frame{"type": "taskResultAck", "operationId": result["operationId"],
		"attemptToken": result["attemptToken"], "disposition": "applied"})
}

// testConfig is a worker config for f: fast reconnects, a short drain, no logs.
func testConfig(f *fakeServer) treadle.Config {
	return treadle.Config{
		ServerURL:       f.srv.URL,
		WorkerID:        "w-test",
		Transport:       treadle.TransportWebSocket,
		ReconnectBase:   5 * time.Millisecond,
		ReconnectCap:    20 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// running is a worker whose Run is in progress.
type running struct {
	t      *testing.T
	w      *treadle.Worker
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg treadle.Config, register func(*treadle.Worker)) *running {
	t.Helper()
	w, err := treadle.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	register(w)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(2 * wait):
			t.Error("Run did not return")
		}
	})
	return r
}

// result waits for Run to return.
func (r *running) result() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(2 * wait):
		r.t.Fatal("timed out waiting for Run to return")
		return nil
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func echo(_ context.Context, in any) (any, error) { return in, nil }

func timeout() <-chan time.Time { return time.After(wait) }
