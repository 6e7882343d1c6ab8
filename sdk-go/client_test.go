package treadle_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	treadle "github.com/treadle-dev/treadle/sdk-go"
	"github.com/treadle-dev/treadle/sdk-go/internal/wiretest"
)

// fakeTaskAPI answers the Task API (§13) for a few canned operations.
func fakeTaskAPI(t *testing.T) *httptest.Server {
	polls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reply := func(status int, v any) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			if v != nil {
				_ = json.NewEncoder(w).Encode(v)
			}
		}
		if r.Header.Get("Authorization") != "Bearer secret" {
			reply(401, frame{"error": "Authentication required", "path": ""})
			return
		}
		switch r.Method + " " + r.URL.Path {
		case "POST /api/v1/queues/default/tasks":
			if err := wiretest.Validate(wiretest.TaskAPI+"#/$defs/submitRequest", body); err != nil {
				t.Error(err)
			}
			var req frame
			_ = json.Unmarshal(body, &req)
			if req.str("operationId") == "dup" {
				reply(409, frame{"error": "operationId exists with a different body", "path": "/operationId"})
				return
			}
			reply(201, frame{"operationId": req.str("operationId"), "state": "queued"})
		case "GET /api/v1/tasks/detail/op-ok/result":
			polls++
			if polls == 1 {
				reply(204, nil) // still running at the first timeout
				return
			}
			reply(200, frame{"status": "completed", "value": frame{"n": 7}, "attempt": 1, "disposition": "completed"})
		case "GET /api/v1/tasks/detail/op-cancelled/result":
			reply(200, frame{"status": "cancelled", "error": "user asked", "attempt": 2, "disposition": "cancelled"})
		case "GET /api/v1/tasks/detail/op-ok":
			reply(200, frame{"operationId": "op-ok", "state": "terminal", "attempt": 1, "queue": "default",
				"activityName": "wf.echo", "disposition": "completed", "status": "completed", "value": 7})
		case "POST /api/v1/tasks/detail/op-ok/cancel":
			if err := wiretest.Validate(wiretest.TaskAPI+"#/$defs/cancelRequest", body); err != nil {
				t.Error(err)
			}
			reply(202, frame{"recorded": false})
		default:
			reply(404, frame{"error": "unknown task", "path": ""})
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestClient(t *testing.T) {
	srv := fakeTaskAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := treadle.NewClient(treadle.ClientConfig{ServerURL: srv.URL, APIKey: "secret"})
	must(t, err)

	priority := 3
	sub, err := c.Submit(ctx, "default", treadle.Submission{
		Activity: "wf.echo", Input: frame{"n": 7}, OperationID: "op-ok", VisibilityTimeout: 5 * time.Second,
		Priority: &priority, RetryPolicy: &treadle.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Second, NonRetryableErrors: []string{"x"}},
	})
	if err != nil || sub.OperationID != "op-ok" || !sub.Created || sub.State != "queued" {
		t.Fatalf("Submit: %+v %v", sub, err)
	}
	var value struct{ N int }
	if err := c.Result(ctx, "op-ok", &value); err != nil || value.N != 7 {
		t.Fatalf("Result: %+v %v", value, err)
	}
	err = c.Result(ctx, "op-cancelled", nil)
	var failed *treadle.TaskFailedError
	if !errors.As(err, &failed) || !errors.Is(err, treadle.ErrCancelled) || failed.Message != "user asked" || failed.Attempt != 2 {
		t.Fatalf("Result of a cancelled task: %v", err)
	}
	if err := c.Result(ctx, "op-unknown", nil); !errors.Is(err, treadle.ErrTaskNotFound) {
		t.Fatalf("Result of an unknown task: %v", err)
	}
	if _, err := c.Submit(ctx, "default", treadle.Submission{Activity: "wf.echo", OperationID: "dup"}); !errors.Is(err, treadle.ErrTaskConflict) {
		t.Fatalf("Submit conflict: %v", err)
	}
	detail, err := c.Detail(ctx, "op-ok")
	if err != nil || detail.Disposition != "completed" || string(detail.Value) != "7" {
		t.Fatalf("Detail: %+v %v", detail, err)
	}
	if recorded, err := c.Cancel(ctx, "op-ok", "late"); err != nil || recorded {
		t.Fatalf("Cancel: %v %v", recorded, err)
	}
	anonymous, err := treadle.NewClient(treadle.ClientConfig{ServerURL: srv.URL})
	must(t, err)
	if _, err := anonymous.Detail(ctx, "op-ok"); !errors.Is(err, treadle.ErrAuthentication) {
		t.Fatalf("without a key: %v", err)
	}
	if _, err := treadle.NewClient(treadle.ClientConfig{}); !errors.Is(err, treadle.ErrInvalidConfig) {
		t.Fatalf("empty config: %v", err)
	}
}
