package treadle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/treadle-dev/treadle/sdk-go/internal/manifest"
)

// activityFunc runs one activity on an attempt's input and returns its value's JSON.
type activityFunc func(ctx context.Context, input json.RawMessage) (json.RawMessage, error)

// RegisterActivity registers fn as the activity workflow.activity of w. The task's input is
// decoded into T with encoding/json (an input that does not decode fails the attempt), and
// fn's value is encoded as the result's JSON (a value that cannot be encoded fails the attempt,
// SDK-7). A returned error fails the attempt with err.Error() as its text (SDK-8), unless the
// server cancelled the attempt first, in which case it is reported cancelled with the server's
// reason (SDK-9).
//
// Names must match ^[A-Za-z_][A-Za-z0-9_-]*$ (MANIFEST-4); the routing name is
// "workflow.activity". Register every activity before Run.
func RegisterActivity[T, U any](w *Worker, workflow, activity string, fn func(ctx context.Context, in T) (U, error)) error {
	if fn == nil {
		return fmt.Errorf("%w: %s.%s: nil function", ErrInvalidActivity, workflow, activity)
	}
	qualified := workflow + "." + activity
	run := func(ctx context.Context, input json.RawMessage) (json.RawMessage, error) {
		var in T
		if err := json.Unmarshal(input, &in); err != nil {
			return nil, fmt.Errorf("treadle: cannot decode the input of %s: %w", qualified, err)
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		value, err := json.Marshal(out)
		if err != nil {
			return nil, &encodeError{fmt.Errorf("treadle: the value of %s cannot be encoded as JSON: %w", qualified, err)}
		}
		return value, nil
	}
	return w.register(workflow, activity, run)
}

// encodeError marks a value that could not be encoded: the attempt fails even if it was
// cancelled meanwhile, since the activity did return.
type encodeError struct{ error }

func (e *encodeError) Unwrap() error { return e.error }

func validName(kind, name string) error {
	if !manifest.NamePattern.MatchString(name) || len(name) > maxIdentifierBytes {
		return fmt.Errorf("%w: %s name %q must match ^[A-Za-z_][A-Za-z0-9_-]*$ (at most %d bytes)",
			ErrInvalidActivity, kind, name, maxIdentifierBytes)
	}
	return nil
}

// ActivityInfo describes the attempt an activity is running.
type ActivityInfo struct {
	// OperationID identifies the task; AttemptToken this attempt of it.
	OperationID, AttemptToken string
	// ActivityName is the qualified name, "workflow.activity".
	ActivityName string
	// Attempt is 1 for a task's first attempt and grows with every requeue.
	Attempt int
	// Headers are the task's headers, if it had any.
	Headers map[string]string
	// WorkflowExecutionToken and WorkflowRevision are the task's, if it had them.
	WorkflowExecutionToken, WorkflowRevision string
	// VisibilityTimeout is the attempt's lease length; zero when the task did not say.
	VisibilityTimeout time.Duration
	// LastHeartbeatDetails are the details of the last Heartbeat of an earlier attempt, as the
	// server returned them; nil when there were none (SDK-10).
	LastHeartbeatDetails json.RawMessage
}

type attemptKeyType struct{}

var attemptContextKey attemptKeyType

func attemptFrom(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptContextKey).(*attempt)
	return a
}

// ActivityInfoFromContext returns the attempt an activity's context belongs to.
func ActivityInfoFromContext(ctx context.Context) (ActivityInfo, bool) {
	a := attemptFrom(ctx)
	if a == nil {
		return ActivityInfo{}, false
	}
	return a.info, true
}

// Heartbeat sends an activityHeartbeat for the activity's attempt at once, carrying details
// (any value encoding/json can encode). The server keeps the latest details and returns them
// to the next attempt as ActivityInfo.LastHeartbeatDetails. While the worker is disconnected
// nothing is queued, but the latest details of each running attempt are sent again once it is
// registered (SDK-10). Heartbeats without details are sent automatically (HB-2).
func Heartbeat(ctx context.Context, details any) error {
	a := attemptFrom(ctx)
	if a == nil {
		return ErrNotInActivity
	}
	raw, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("treadle: heartbeat details cannot be encoded as JSON: %w", err)
	}
	a.worker.heartbeatDetails(a, raw)
	return nil
}

// CancelReason reports whether the server cancelled the activity's attempt, and its reason.
// It is context.Cause(ctx) as a *CancelledError.
func CancelReason(ctx context.Context) (string, bool) {
	var cancelled *CancelledError
	if errors.As(context.Cause(ctx), &cancelled) {
		return cancelled.Reason, true
	}
	return "", false
}
