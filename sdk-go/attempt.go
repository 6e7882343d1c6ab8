package treadle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/treadle-dev/treadle/sdk-go/internal/cadence"
	"github.com/treadle-dev/treadle/sdk-go/internal/outbox"
	"github.com/treadle-dev/treadle/sdk-go/internal/wire"
)

// defaultCancelReason is the reason of a cancel that gave none (CANCEL-4).
const defaultCancelReason = "Task cancelled"

// task is one attempt as either transport delivers it.
type task struct {
	info     ActivityInfo
	input    json.RawMessage
	revision *string
	vt       *float64
}

func taskFromFrame(m *wire.TaskMessage) task {
	t := task{input: m.Input, revision: m.WorkflowRevision, vt: m.VisibilityTimeout}
	t.info = ActivityInfo{
		OperationID:          m.OperationID,
		AttemptToken:         m.AttemptToken,
		ActivityName:         m.ActivityName,
		Attempt:              1,
		Headers:              m.Headers,
		LastHeartbeatDetails: m.LastHeartbeatDetails,
	}
	if m.Attempt != nil {
		t.info.Attempt = int(*m.Attempt)
	}
	if m.WorkflowExecutionToken != nil {
		t.info.WorkflowExecutionToken = *m.WorkflowExecutionToken
	}
	if m.WorkflowRevision != nil {
		t.info.WorkflowRevision = *m.WorkflowRevision
	}
	if m.VisibilityTimeout != nil {
		t.info.VisibilityTimeout = time.Duration(*m.VisibilityTimeout * float64(time.Millisecond))
	}
	return t
}

func taskFromClaim(c *wire.LongPollTaskClaim) task {
	vt := c.VisibilityTimeout
	attempt := c.Attempt
	return taskFromFrame(&wire.TaskMessage{
		Type:                   wire.MessageTypeTask,
		OperationID:            c.OperationID,
		ActivityName:           c.ActivityName,
		Input:                  c.Input,
		Attempt:                &attempt,
		Headers:                c.Headers,
		WorkflowExecutionToken: c.WorkflowExecutionToken,
		WorkflowRevision:       c.WorkflowRevision,
		AttemptToken:           c.AttemptToken,
		VisibilityTimeout:      &vt,
		LastHeartbeatDetails:   c.LastHeartbeatDetails,
	})
}

// attempt is one running activity attempt.
type attempt struct {
	worker   *Worker
	key      outbox.Key
	info     ActivityInfo
	input    json.RawMessage
	revision *string
	via      string
	fn       activityFunc
	interval time.Duration
	ctx      context.Context
	cancel   context.CancelCauseFunc
	done     chan struct{}

	// Guarded by worker.mu.
	cancelled   bool
	abandoned   bool
	finished    bool
	lastDetails json.RawMessage
}

// errOutboxFull: a task arrived while the outbox had no room (OUTBOX-4).
var errOutboxFull = errors.New("treadle: outbox full")

// accept starts an attempt for t, held under the identity via (a session id, or ""). It
// returns nil without an error when the task is ignored: the worker is draining, or the
// attempt is already running (SDK-7). A task for an unknown activity gets its failed result
// at once and no attempt.
func (w *Worker) accept(t task, via string) (*attempt, error) {
	key := outbox.Key{OperationID: t.info.OperationID, AttemptToken: t.info.AttemptToken}
	w.mu.Lock()
	if w.draining {
		w.mu.Unlock()
		w.log.Debug("task ignored while draining", "operation_id", key.OperationID)
		return nil, nil
	}
	if _, running := w.attempts[key]; running {
		w.mu.Unlock()
		return nil, nil
	}
	if w.outbox.Full() {
		w.mu.Unlock()
		return nil, errOutboxFull
	}
	fn, known := w.activities[t.info.ActivityName]
	if !known {
		r := outbox.Result{Key: key, Status: wire.ResultStatusFailed, Error: unknownActivityPrefix + t.info.ActivityName,
			WorkflowRevision: t.revision, Via: via}
		w.outbox.Put(r)
		l := w.link
		w.mu.Unlock()
		w.log.Warn("task for an unknown activity", "operation_id", key.OperationID, "activity", t.info.ActivityName)
		if l != nil {
			l.sendResult(r)
		}
		return nil, nil
	}
	a := &attempt{
		worker:   w,
		key:      key,
		info:     t.info,
		input:    t.input,
		revision: t.revision,
		via:      via,
		fn:       fn,
		interval: cadence.ActivityHeartbeat(t.vt),
		done:     make(chan struct{}),
	}
	a.ctx, a.cancel = context.WithCancelCause(context.WithValue(w.baseCtx, attemptContextKey, a))
	w.attempts[key] = a
	w.mu.Unlock()
	w.log.Debug("attempt started", "operation_id", key.OperationID, "activity", t.info.ActivityName, "attempt", t.info.Attempt)
	go w.execute(a)
	return a, nil
}

func (w *Worker) execute(a *attempt) {
	defer close(a.done)
	stop := make(chan struct{})
	go w.autoHeartbeat(a, stop)
	value, err := a.run()
	close(stop)
	w.finish(a, value, err)
}

func (a *attempt) run() (value json.RawMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("treadle: activity %s panicked: %v", a.info.ActivityName, p)
		}
	}()
	return a.fn(a.ctx, a.input)
}

// finish turns an attempt's outcome into its result, keeps it in the outbox and sends it.
func (w *Worker) finish(a *attempt, value json.RawMessage, err error) {
	r := outbox.Result{Key: a.key, WorkflowRevision: a.revision, Via: a.via}
	w.mu.Lock()
	delete(w.attempts, a.key)
	a.finished = true
	if a.abandoned {
		w.mu.Unlock()
		w.notify()
		return
	}
	var encode *encodeError
	switch {
	case err == nil:
		r.Status, r.Value = wire.ResultStatusCompleted, value // CANCEL-5: a value is a value
	case a.cancelled && !errors.As(err, &encode):
		reason, _ := CancelReason(a.ctx)
		r.Status, r.Error = wire.ResultStatusCancelled, reason // CANCEL-4
	default:
		r.Status, r.Error = wire.ResultStatusFailed, err.Error() // SDK-8
	}
	w.outbox.Put(r)
	l := w.link
	w.mu.Unlock()
	a.cancel(context.Canceled)
	w.notify()
	w.log.Debug("attempt finished", "operation_id", a.key.OperationID, "status", r.Status)
	if l != nil {
		l.sendResult(r)
	}
}

// cancelAttempt signals the attempt k with the server's reason (CANCEL-3); an unknown pair is
// ignored.
func (w *Worker) cancelAttempt(k outbox.Key, reason string) {
	if reason == "" {
		reason = defaultCancelReason
	}
	w.mu.Lock()
	a := w.attempts[k]
	if a == nil || a.cancelled {
		w.mu.Unlock()
		return
	}
	a.cancelled = true
	w.mu.Unlock()
	w.log.Info("attempt cancelled by the server", "operation_id", k.OperationID, "reason", reason)
	a.cancel(&CancelledError{Reason: reason})
}

// heartbeatDetails records and sends an activity's own heartbeat.
func (w *Worker) heartbeatDetails(a *attempt, details json.RawMessage) {
	w.mu.Lock()
	if a.finished {
		w.mu.Unlock()
		return
	}
	a.lastDetails = details
	l := w.link
	w.mu.Unlock()
	if l != nil {
		l.sendActivityHeartbeat(a, details)
	}
}

// autoHeartbeat renews the attempt's lease until it finishes (HB-2, HB-3: without details).
func (w *Worker) autoHeartbeat(a *attempt, stop <-chan struct{}) {
	ticker := time.NewTicker(a.interval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			w.mu.Lock()
			l, finished := w.link, a.finished
			w.mu.Unlock()
			if finished {
				return
			}
			if l != nil {
				l.sendActivityHeartbeat(a, nil)
			}
		}
	}
}
