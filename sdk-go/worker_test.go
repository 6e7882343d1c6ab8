package treadle_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	treadle "github.com/treadle-dev/treadle/sdk-go"
)

func TestRegistersRunsAndSettles(t *testing.T) {
	f := newFakeServer(t)
	cfg := testConfig(f)
	cfg.APIKey = "k1"
	cfg.HeartbeatInterval = 10 * time.Millisecond
	r := start(t, cfg, func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "echo", echo))
	})
	c := f.accept()
	if got := f.header(0).Get("Authorization"); got != "Bearer k1" {
		t.Fatalf("Authorization %q (SDK-3)", got)
	}
	reg := c.register(1)
	if reg["protocolVersion"] != 8.0 || reg.str("workerId") != "w-test" || reg["concurrency"] != 10.0 {
		t.Fatalf("register %v", reg)
	}
	if _, ok := reg["resumeSessionGeneration"]; ok {
		t.Fatal("a fresh start sent resumeSessionGeneration (GEN-6)")
	}
	manifest := reg["manifest"].(map[string]any)
	if _, ok := manifest["workflows"].(map[string]any)["wf"].(map[string]any)["activities"].(map[string]any)["echo"]; !ok {
		t.Fatalf("manifest %v", manifest)
	}
	c.next("heartbeat") // HB-1
	c.task("op-1", "wf.echo", frame{"n": 1.0}, frame{"workflowRevision": "rev-1"})
	result := c.next("taskResult")
	if result.str("status") != "completed" || result["value"].(map[string]any)["n"] != 1.0 ||
		result.str("attemptToken") != "tok-op-1" || result.str("workflowRevision") != "rev-1" {
		t.Fatalf("result %v", result)
	}
	c.ack(result)
	r.cancel()
	if err := r.result(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestFailuresUnknownActivitiesAndPanics(t *testing.T) {
	f := newFakeServer(t)
	start(t, testConfig(f), func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "fail", func(context.Context, any) (any, error) {
			return nil, errors.New("card declined")
		}))
		must(t, treadle.RegisterActivity(w, "wf", "panic", func(context.Context, any) (any, error) {
			panic("boom")
		}))
		must(t, treadle.RegisterActivity(w, "wf", "typed", func(_ context.Context, in struct{ N int }) (int, error) {
			return in.N * 2, nil
		}))
		must(t, treadle.RegisterActivity(w, "wf", "unencodable", func(context.Context, any) (any, error) {
			return make(chan int), nil
		}))
	})
	c := f.accept()
	c.register(1)
	cases := []struct{ activity, status, text string }{
		{"wf.fail", "failed", "card declined"},
		{"wf.nope", "failed", "Unknown activity: wf.nope"},
		{"wf.panic", "failed", "treadle: activity wf.panic panicked: boom"},
		{"wf.unencodable", "failed", "treadle: the value of wf.unencodable cannot be encoded as JSON: json: unsupported type: chan int"},
	}
	for i, want := range cases {
		c.task("op-"+want.activity, want.activity, i, nil)
		result := c.next("taskResult")
		if result.str("status") != want.status || result.str("error") != want.text || result.str("operationId") != "op-"+want.activity {
			t.Errorf("%s: result %v", want.activity, result)
		}
		c.ack(result)
	}
	c.task("op-typed", "wf.typed", frame{"N": 21}, nil)
	result := c.next("taskResult")
	if result["value"] != 42.0 {
		t.Errorf("typed: %v", result)
	}
	c.ack(result)
	c.task("op-bad-input", "wf.typed", "not an object", nil)
	result = c.next("taskResult")
	if result.str("status") != "failed" {
		t.Errorf("bad input: %v", result)
	}
	c.ack(result)
}

func TestCancelSignalsTheActivityWithTheReason(t *testing.T) {
	f := newFakeServer(t)
	reasons := make(chan string, 4)
	start(t, testConfig(f), func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "block", func(ctx context.Context, _ any) (any, error) {
			<-ctx.Done()
			reason, _ := treadle.CancelReason(ctx)
			reasons <- reason
			return nil, context.Cause(ctx)
		}))
		must(t, treadle.RegisterActivity(w, "wf", "stubborn", func(ctx context.Context, _ any) (string, error) {
			<-ctx.Done()
			return "done anyway", nil
		}))
	})
	c := f.accept()
	c.register(1)

	c.task("op-1", "wf.block", nil, nil)
	c.send(frame{"type": "cancel", "operationId": "op-1", "attemptToken": "other-token", "reason": "x"}) // ignored
	c.send(frame{"type": "cancel", "operationId": "op-1", "attemptToken": "tok-op-1", "reason": ""})     // malformed
	c.send(frame{"type": "cancel", "operationId": "op-1", "attemptToken": "tok-op-1", "reason": "user asked"})
	result := c.next("taskResult")
	if result.str("status") != "cancelled" || result["cancelled"] != true || result.str("error") != "user asked" {
		t.Fatalf("result %v (CANCEL-4)", result)
	}
	if got := <-reasons; got != "user asked" {
		t.Fatalf("CancelReason %q", got)
	}
	c.ack(result)

	c.task("op-2", "wf.block", nil, nil)
	c.send(frame{"type": "cancel", "operationId": "op-2", "attemptToken": "tok-op-2"})
	result = c.next("taskResult")
	if result.str("error") != "Task cancelled" {
		t.Fatalf("result %v", result)
	}
	c.ack(result)

	c.task("op-3", "wf.stubborn", nil, nil)
	c.send(frame{"type": "cancel", "operationId": "op-3", "attemptToken": "tok-op-3", "reason": "r"})
	result = c.next("taskResult")
	if result.str("status") != "completed" || result["value"] != "done anyway" {
		t.Fatalf("result %v (CANCEL-5)", result)
	}
	c.ack(result)
}

func TestHeartbeats(t *testing.T) {
	f := newFakeServer(t)
	infos := make(chan treadle.ActivityInfo, 1)
	release := make(chan struct{})
	start(t, testConfig(f), func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "beat", func(ctx context.Context, _ any) (any, error) {
			info, _ := treadle.ActivityInfoFromContext(ctx)
			infos <- info
			if err := treadle.Heartbeat(ctx, map[string]int{"cursor": 42}); err != nil {
				return nil, err
			}
			<-release
			return nil, nil
		}))
	})
	if err := treadle.Heartbeat(context.Background(), 1); !errors.Is(err, treadle.ErrNotInActivity) {
		t.Fatalf("Heartbeat outside an activity: %v", err)
	}
	c := f.accept()
	c.register(1)
	c.task("op-1", "wf.beat", nil, frame{"visibilityTimeout": 10, "attempt": 2, "lastHeartbeatDetails": frame{"cursor": 41}, "headers": frame{"x": "y"}})
	info := <-infos
	if info.Attempt != 2 || string(info.LastHeartbeatDetails) != `{"cursor":41}` || info.Headers["x"] != "y" || info.VisibilityTimeout != 10*time.Millisecond {
		t.Fatalf("info %+v", info)
	}
	beat := c.next("activityHeartbeat")
	if beat["details"].(map[string]any)["cursor"] != 42.0 || beat.str("workerId") != "w-test" {
		t.Fatalf("heartbeat %v", beat)
	}
	// HB-2: every max(1000, floor(vt/3)) ms, without details (HB-3).
	beat = c.next("activityHeartbeat")
	if _, ok := beat["details"]; ok || beat.str("attemptToken") != "tok-op-1" {
		t.Fatalf("automatic heartbeat %v", beat)
	}
	close(release)
	c.ack(c.next("taskResult"))
}

func TestReconnectResumesAndResendsTheOutbox(t *testing.T) {
	f := newFakeServer(t)
	details := make(chan struct{})
	r := start(t, testConfig(f), func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "echo", echo))
		must(t, treadle.RegisterActivity(w, "wf", "beat", func(ctx context.Context, _ any) (any, error) {
			must(t, treadle.Heartbeat(ctx, "progress"))
			close(details)
			<-ctx.Done()
			return nil, context.Cause(ctx)
		}))
	})
	first := f.accept()
	first.register(7)
	first.task("op-1", "wf.echo", "a", nil)
	first.task("op-2", "wf.beat", nil, nil)
	result := first.next("taskResult")
	<-details
	first.c.CloseNow() // an involuntary drop; op-1 was never acknowledged

	second := f.accept()
	reg := second.next("register")
	if reg["resumeSessionGeneration"] != 7.0 {
		t.Fatalf("register after a drop %v (GEN-6)", reg)
	}
	second.send(frame{"type": "registerAck", "protocolVersion": 8, "workerId": "w-test", "queue": "default",
		"concurrency": 10, "acceptedManifestDigest": "sha256:00", "serverCapabilities": []string{}, "sessionGeneration": 7})
	resent := second.next("taskResult")
	if resent.str("operationId") != "op-1" || resent.str("attemptToken") != result.str("attemptToken") {
		t.Fatalf("resent %v (OUTBOX-3)", resent)
	}
	if beat := second.next("activityHeartbeat"); beat["details"] != "progress" {
		t.Fatalf("details after reconnect %v (SDK-10)", beat)
	}
	second.ack(resent)
	second.send(frame{"type": "cancel", "operationId": "op-2", "attemptToken": "tok-op-2"})
	second.ack(second.next("taskResult"))
	r.cancel()
	must(t, r.result())
}

func TestRegistrationRefusals(t *testing.T) {
	f := newFakeServer(t)
	r := start(t, testConfig(f), func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "echo", echo))
	})
	// SDK-6: the hijack guard's refusal passes; it is retried.
	c := f.accept()
	c.next("register")
	c.send(frame{"type": "registerError", "code": "invalid_registration",
		"message": "workerId is already registered to an active connection", "supportedProtocolVersions": []int{8}})
	c = f.accept()
	c.next("register")
	c.send(frame{"type": "registerError", "code": "deployment_conflict", "message": "no", "supportedProtocolVersions": []int{8}})
	err := r.result()
	var refused *treadle.RegistrationError
	if !errors.As(err, &refused) || refused.Code != "deployment_conflict" || refused.Message != "no" || !errors.Is(err, treadle.ErrRegistration) {
		t.Fatalf("Run: %v", err)
	}
}

func TestUnauthorizedStopsTheWorker(t *testing.T) {
	f := newFakeServer(t)
	f.setRefuse(http.StatusUnauthorized)
	r := start(t, testConfig(f), func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "echo", echo))
	})
	if err := r.result(); !errors.Is(err, treadle.ErrAuthentication) {
		t.Fatalf("Run: %v", err)
	}
}

func TestShutdownDrainsRunningAttempts(t *testing.T) {
	f := newFakeServer(t)
	release := make(chan struct{})
	started := make(chan string, 4)
	r := start(t, testConfig(f), func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "slow", func(ctx context.Context, in string) (string, error) {
			started <- in
			<-release
			return in, nil
		}))
	})
	c := f.accept()
	c.register(1)
	c.task("op-1", "wf.slow", "first", nil)
	if got := <-started; got != "first" {
		t.Fatal(got)
	}
	c.send(frame{"type": "shutdown"})
	c.task("op-2", "wf.slow", "second", nil) // SDK-11: ignored while draining
	close(release)
	result := c.next("taskResult")
	if result.str("operationId") != "op-1" {
		t.Fatalf("result %v", result)
	}
	c.ack(result)
	if err := r.result(); err != nil {
		t.Fatalf("Run after a drain: %v", err)
	}
	if extra := c.closed("taskResult"); len(extra) != 0 {
		t.Fatalf("results after the drain: %v", extra)
	}
	select {
	case got := <-started:
		t.Fatalf("a task taken while draining: %s", got)
	default:
	}
}

func TestDrainDeadlineAbandonsWithoutAResult(t *testing.T) {
	f := newFakeServer(t)
	cfg := testConfig(f)
	cfg.ShutdownTimeout = 50 * time.Millisecond
	causes := make(chan error, 1)
	started := make(chan struct{})
	r := start(t, cfg, func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "forever", func(ctx context.Context, _ any) (any, error) {
			close(started)
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil, context.Cause(ctx)
		}))
	})
	c := f.accept()
	c.register(1)
	c.task("op-1", "wf.forever", nil, nil)
	<-started
	r.cancel()
	if err := r.result(); !errors.Is(err, treadle.ErrDrainIncomplete) {
		t.Fatalf("Run: %v", err)
	}
	if cause := <-causes; !errors.Is(cause, treadle.ErrAbandoned) {
		t.Fatalf("cause %v", cause)
	}
	if results := c.closed("taskResult"); len(results) != 0 {
		t.Fatalf("an abandoned attempt sent %v", results)
	}
}

// OUTBOX-2: a correlated protocolError settles the result; an uncorrelated one does not.
func TestCorrelatedProtocolErrorSettles(t *testing.T) {
	f := newFakeServer(t)
	cfg := testConfig(f)
	cfg.ShutdownTimeout = 50 * time.Millisecond
	r := start(t, cfg, func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "echo", echo))
	})
	c := f.accept()
	c.register(1)
	c.task("op-1", "wf.echo", 1, nil)
	c.task("op-2", "wf.echo", 2, nil)
	results := []frame{c.next("taskResult"), c.next("taskResult")}
	c.send(frame{"type": "protocolError", "code": "invalid_message", "message": "not yours"})
	for _, result := range results {
		c.send(frame{"type": "protocolError", "code": "invalid_message", "message": "stale attempt token",
			"operationId": result["operationId"], "attemptToken": result["attemptToken"]})
	}
	// Settled: the drain needs nothing more, so the connection is not kept for the budget.
	c.task("op-3", "wf.echo", 3, nil)
	c.ack(c.next("taskResult"))
	r.cancel()
	if err := r.result(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// OUTBOX-4: a task that arrives while the outbox is full is not run; the socket is failed.
func TestFullOutboxFailsTheSocket(t *testing.T) {
	f := newFakeServer(t)
	cfg := testConfig(f)
	cfg.OutboxLimit = 1
	r := start(t, cfg, func(w *treadle.Worker) {
		must(t, treadle.RegisterActivity(w, "wf", "echo", echo))
	})
	c := f.accept()
	c.register(1)
	c.task("op-1", "wf.echo", 1, nil)
	result := c.next("taskResult")
	c.task("op-2", "wf.echo", 2, nil)
	if late := c.closed("taskResult"); len(late) != 0 {
		t.Fatalf("ran a task with a full outbox: %v", late)
	}
	again := f.accept()
	again.register(1)
	if resent := again.next("taskResult"); resent.str("operationId") != "op-1" {
		t.Fatalf("resent %v", resent)
	}
	again.ack(result)
	again.task("op-2", "wf.echo", 2, nil)
	again.ack(again.next("taskResult"))
	r.cancel()
	must(t, r.result())
	if err := r.w.Run(context.Background()); !errors.Is(err, treadle.ErrAlreadyStarted) {
		t.Fatalf("second Run: %v", err)
	}
}
