package treadle_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	treadle "github.com/treadle-dev/treadle/sdk-go"
	"github.com/treadle-dev/treadle/sdk-go/internal/wiretest"
)

const sessionToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// fakeSessions plays the worker-session endpoints (§12.2): one session, one task.
type fakeSessions struct {
	t       *testing.T
	polls   atomic.Int32
	results chan frame
	closed  chan struct{}
}

func (s *fakeSessions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.URL.Path != "/api/v1/worker-sessions" && r.Header.Get("Weft-Worker-Session-Token") != sessionToken {
		s.t.Errorf("%s %s without the session token (SESS-3)", r.Method, r.URL.Path)
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/worker-sessions":
		if err := wiretest.Validate(wiretest.Sessions+"#/$defs/openRequest", body); err != nil {
			s.t.Error(err)
		}
		reply(200, frame{"ok": true, "sessionId": "s1", "workerId": "s1", "queue": "default",
			"sessionToken": sessionToken, "acceptedManifestDigest": "sha256:00", "protocolVersion": 8, "sessionGeneration": 1})
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/worker-sessions/s1/tasks":
		if s.polls.Add(1) == 1 {
			reply(200, frame{"operationId": "op-1", "activityName": "wf.echo", "input": "hello", "attempt": 1,
				"attemptToken": "tok-1", "workerId": "s1", "visibilityTimeout": 30000, "workflowRevision": "rev-1"})
			return
		}
		<-r.Context().Done() // park until the worker lets go
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/worker-sessions/s1/results":
		if err := wiretest.Validate(wiretest.LongPoll+"#/$defs/resultRequest", body); err != nil {
			s.t.Error(err)
		}
		var f frame
		_ = json.Unmarshal(body, &f)
		s.results <- f
		reply(200, frame{"ok": true, "disposition": "applied"})
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/worker-sessions/s1/heartbeat":
		if len(body) > 0 && strings.Contains(string(body), "operationId") {
			if err := wiretest.Validate(wiretest.LongPoll+"#/$defs/heartbeatRequest", body); err != nil {
				s.t.Error(err)
			}
		}
		reply(200, frame{"ok": true})
	case r.Method == http.MethodDelete && r.URL.Path == "/api/v1/worker-sessions/s1":
		close(s.closed)
		reply(200, frame{"ok": true})
	default:
		s.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		reply(404, frame{"error": "not found"})
	}
}

// SDK-4: a refused upgrade (not 401) switches to worker sessions for the rest of the run.
func TestAutoFallsBackToWorkerSessions(t *testing.T) {
	f := newFakeServer(t)
	sessions := &fakeSessions{t: t, results: make(chan frame, 4), closed: make(chan struct{})}
	f.other = sessions
	f.setRefuse(http.StatusForbidden)
	cfg := testConfig(f)
	cfg.Transport = treadle.TransportAuto
	cfg.Concurrency = 2
	r := start(t, cfg, func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "echo", echo))
	})
	var result frame
	select {
	case result = <-sessions.results:
	case <-timeout():
		t.Fatal("no result posted")
	}
	if result.str("operationId") != "op-1" || result["value"] != "hello" || result.str("workflowRevision") != "rev-1" ||
		result.str("workerId") != "s1" || result.str("status") != "completed" {
		t.Fatalf("result %v (SESS-7)", result)
	}
	r.cancel()
	if err := r.result(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-sessions.closed:
	default:
		t.Fatal("the session was not closed")
	}
}
