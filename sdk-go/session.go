package treadle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/treadle-dev/treadle/sdk-go/internal/backoff"
	"github.com/treadle-dev/treadle/sdk-go/internal/httpjson"
	"github.com/treadle-dev/treadle/sdk-go/internal/outbox"
	"github.com/treadle-dev/treadle/sdk-go/internal/wire"
)

// Long-poll worker sessions (protocol §12.2, SDK-12).

const (
	sessionTokenHeader = "Weft-Worker-Session-Token" // SESS-3
	pollErrorBackoff   = time.Second                 // SESS-6
	resultRetryBase    = time.Second
	resultRetryCap     = 30 * time.Second
	requestTimeout     = 30 * time.Second
)

// errSessionGone: the session was replaced, closed or expired; open a new one.
var errSessionGone = errors.New("treadle: worker session gone")

// runSessions serves the queue over worker sessions until ctx ends (nil) or a fatal error,
// opening a new session whenever the current one is gone.
func (w *Worker) runSessions(ctx context.Context) error {
	retry := backoff.New(w.cfg.ReconnectBase, w.cfg.ReconnectCap)
	slots := make(chan struct{}, w.cfg.Concurrency)
	for ctx.Err() == nil {
		s, err := w.openSession(ctx)
		if err == nil {
			retry.Reset()
			err = w.serveSession(ctx, s, slots)
		}
		var refused *RegistrationError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &refused), errors.Is(err, ErrAuthentication):
			return err
		case errors.Is(err, errSessionGone):
			w.log.Warn("worker session gone; opening a new one", "session_id", s.id)
			continue
		}
		delay := retry.Next()
		w.log.Warn("cannot open a worker session; retrying", "error", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return nil
		}
	}
	return nil
}

// sessionLink is one open worker session.
type sessionLink struct {
	w        *Worker
	id       string
	workerID string
	token    string
	nudge    chan struct{}
	gone     context.CancelCauseFunc
}

// call makes one request; body is JSON-encoded when not nil. It returns the status and body.
func (w *Worker) call(ctx context.Context, method, path string, token string, body any) (int, []byte, error) {
	header := w.authHeader()
	if token != "" {
		header.Set(sessionTokenHeader, token)
	}
	return httpjson.Do(ctx, w.cfg.HTTPClient, method, w.ends.Base+path, header, body)
}

// openSession opens a worker session (SESS-1, SESS-2).
func (w *Worker) openSession(ctx context.Context) (*sessionLink, error) {
	concurrency := int64(w.cfg.Concurrency)
	body := wire.SessionOpenRequest{
		Manifest:    w.manifest,
		Queue:       &w.ends.Queue,
		Concurrency: &concurrency,
		StartedAt:   &w.startedAt,
	}
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	status, data, err := w.call(callCtx, http.MethodPost, "/api/v1/worker-sessions", "", body)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusOK:
		var opened wire.SessionOpenResponse
		if err := json.Unmarshal(data, &opened); err != nil || opened.SessionID == "" || opened.SessionToken == "" {
			return nil, fmt.Errorf("%w: malformed session open response", ErrProtocol)
		}
		w.log.Info("worker session opened", "session_id", opened.SessionID, "session_generation", opened.SessionGeneration)
		return &sessionLink{
			w:        w,
			id:       opened.SessionID,
			workerID: opened.WorkerID,
			token:    opened.SessionToken,
			nudge:    make(chan struct{}, 1),
		}, nil
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%w: the worker-session open was answered 401", ErrAuthentication)
	case http.StatusBadRequest, http.StatusConflict:
		var refused struct {
			Error  string `json:"error"`
			Reason string `json:"reason"`
			Code   string `json:"code"`
		}
		_ = json.Unmarshal(data, &refused)
		code := refused.Reason + refused.Code
		if code == "" {
			code = wire.RegisterErrorCodeInvalidRegistration
		}
		return nil, &RegistrationError{Code: code, Message: refused.Error}
	}
	return nil, fmt.Errorf("worker-session open answered HTTP %d: %s", status, bytes.TrimSpace(data))
}

// serveSession polls, heartbeats and delivers results over s until ctx ends (nil) or the
// session is gone (errSessionGone) or a fatal error.
func (w *Worker) serveSession(ctx context.Context, s *sessionLink, slots chan struct{}) error {
	sctx, gone := context.WithCancelCause(ctx)
	defer gone(nil)
	s.gone = gone
	w.registered(s)
	defer w.unlink(s)

	pollCtx, stopPolls := context.WithCancel(sctx)
	defer stopPolls()
	go func() {
		select {
		case <-w.drainCh: // SDK-11: stop polling at once
			stopPolls()
		case <-pollCtx.Done():
		}
	}()
	go s.deliver(sctx)
	go s.heartbeat(sctx)
	for range w.cfg.Concurrency {
		go s.poll(pollCtx, slots)
	}
	<-sctx.Done()
	if ctx.Err() != nil {
		// The worker stopped: close the session (its attempts are requeued at once).
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if status, _, err := w.call(closeCtx, http.MethodDelete, "/api/v1/worker-sessions/"+s.id, s.token, nil); err != nil {
			w.log.Debug("worker session not closed", "error", err)
		} else {
			w.log.Info("worker session closed", "session_id", s.id, "status", status)
		}
		return nil
	}
	return context.Cause(sctx)
}

// checkGone ends the session on the answers that say it is gone (SDK-12) or unauthorized.
func (s *sessionLink) checkGone(status int, data []byte) bool {
	var answer wire.SessionSessionError
	_ = json.Unmarshal(data, &answer)
	code := ""
	if answer.Code != nil {
		code = *answer.Code
	}
	switch {
	case status == http.StatusUnauthorized:
		s.gone(fmt.Errorf("%w: a worker-session call was answered 401", ErrAuthentication))
	case status == http.StatusNotFound, status == http.StatusGone,
		status == http.StatusConflict && code == wire.SessionErrorCodeStaleSession,
		status == http.StatusForbidden && code == wire.SessionErrorCodeWorkerSessionMismatch:
		s.gone(errSessionGone)
	default:
		return false
	}
	return true
}

// poll keeps one poll parked while a slot is free, and runs what it claims in that slot.
func (s *sessionLink) poll(ctx context.Context, slots chan struct{}) {
	w := s.w
	paused := backoff.New(pollErrorBackoff, resultRetryCap)
	paused.Jitter = false
	path := "/api/v1/worker-sessions/" + s.id + "/tasks?timeout=" + strconv.FormatInt(w.cfg.PollTimeout.Milliseconds(), 10)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		release := func() { <-slots }
		if w.outboxFull() { // SDK-7: no polling until acks make room
			release()
			if !sleep(ctx, pollErrorBackoff) {
				return
			}
			continue
		}
		status, data, err := w.call(ctx, http.MethodGet, path, s.token, nil)
		if err != nil || status != http.StatusOK {
			release()
			if ctx.Err() != nil {
				return
			}
			if err == nil && s.checkGone(status, data) {
				return
			}
			delay := time.Duration(0)
			switch {
			case err != nil:
				w.log.Warn("poll failed", "error", err)
				delay = pollErrorBackoff
			case status == http.StatusConflict: // session_draining: pause polling
				delay = paused.Next()
			case status != http.StatusNoContent:
				w.log.Warn("poll answered", "status", status, "body", string(bytes.TrimSpace(data)))
				delay = pollErrorBackoff
			default:
				paused.Reset()
			}
			if delay > 0 && !sleep(ctx, delay) {
				return
			}
			continue
		}
		paused.Reset()
		var claim wire.LongPollTaskClaim
		if err := json.Unmarshal(data, &claim); err != nil || claim.OperationID == "" || claim.AttemptToken == "" {
			release()
			w.log.Warn("malformed task claim dropped", "error", err)
			continue
		}
		a, err := w.accept(taskFromClaim(&claim), s.id)
		if a == nil || err != nil {
			release()
			continue
		}
		go func() {
			<-a.done
			release()
		}()
	}
}

// heartbeat keeps the session alive (SESS-6).
func (s *sessionLink) heartbeat(ctx context.Context) {
	ticker := time.NewTicker(s.w.cfg.HeartbeatInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
		status, data, err := s.w.call(callCtx, http.MethodPost, "/api/v1/worker-sessions/"+s.id+"/heartbeat", s.token, nil)
		cancel()
		if err == nil && status != http.StatusOK && s.checkGone(status, data) {
			return
		}
	}
}

func (s *sessionLink) sendResult(outbox.Result) {
	select {
	case s.nudge <- struct{}{}:
	default:
	}
}

// sendActivityHeartbeat renews the lease of an attempt of this session; the answer may say
// the attempt is cancelled (LP-9).
func (s *sessionLink) sendActivityHeartbeat(a *attempt, details json.RawMessage) {
	if a.via != s.id {
		return // held by an earlier session, which the server has requeued
	}
	w := s.w
	body := wire.LongPollHeartbeatRequest{
		OperationID:  a.key.OperationID,
		WorkerID:     &s.workerID,
		AttemptToken: a.key.AttemptToken,
		Details:      details,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), requestTimeout)
	defer cancel()
	status, data, err := w.call(ctx, http.MethodPost, "/api/v1/worker-sessions/"+s.id+"/heartbeat", s.token, body)
	switch {
	case err != nil:
		w.log.Debug("activity heartbeat failed", "error", err)
	case status == http.StatusOK:
		var answer wire.LongPollHeartbeatResponse
		if json.Unmarshal(data, &answer) == nil && answer.Cancelled {
			reason := ""
			if answer.Reason != nil {
				reason = *answer.Reason
			}
			w.cancelAttempt(a.key, reason) // SDK-9
		}
	case s.checkGone(status, data):
	default:
		w.log.Warn("activity heartbeat refused", "operation_id", a.key.OperationID, "status", status, "body", string(bytes.TrimSpace(data)))
	}
}

// deliver posts the outbox's results, oldest first, with retries (SDK-12).
func (s *sessionLink) deliver(ctx context.Context) {
	w := s.w
	retry := backoff.New(resultRetryBase, resultRetryCap)
	retry.Jitter = false
	for {
		w.mu.Lock()
		pending := w.outbox.Pending()
		w.mu.Unlock()
		failed := false
		for _, r := range pending {
			settled, err := s.post(ctx, r)
			if ctx.Err() != nil {
				return
			}
			if !settled {
				w.log.Warn("result not delivered; will retry", "operation_id", r.OperationID, "error", err)
				failed = true
				break
			}
		}
		if failed {
			if !sleep(ctx, retry.Next()) {
				return
			}
			continue
		}
		retry.Reset()
		select {
		case <-s.nudge:
		case <-ctx.Done():
			return
		}
	}
}

// post sends one result and settles it when the answer is final.
func (s *sessionLink) post(ctx context.Context, r outbox.Result) (bool, error) {
	w := s.w
	body := wire.LongPollResultRequest{
		OperationID:      r.OperationID,
		AttemptToken:     r.AttemptToken,
		Status:           r.Status,
		WorkflowRevision: r.WorkflowRevision, // SESS-7
	}
	frame := resultFrame(r)
	body.Value, body.Error, body.Cancelled = frame.Value, frame.Error, frame.Cancelled
	path := "/api/v1/worker-sessions/" + s.id + "/results"
	workerID := s.workerID
	if r.Via != s.id {
		// An earlier session's (or the stream's) result goes through the queue endpoint (§12.1).
		path = "/api/v1/tasks/" + url.PathEscape(w.ends.Queue) + "/result"
		workerID = r.Via
		if workerID == "" {
			workerID = w.cfg.WorkerID
		}
	}
	body.WorkerID = &workerID
	callCtx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	status, data, err := w.call(callCtx, http.MethodPost, path, s.token, body)
	if err != nil {
		return false, err
	}
	switch status {
	case http.StatusOK:
		var answer wire.LongPollResultResponse
		_ = json.Unmarshal(data, &answer)
		w.settle(r.Key, answer.Disposition)
		return true, nil
	case http.StatusForbidden, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		if r.Via == s.id && s.checkGone(status, data) {
			return false, errSessionGone
		}
		w.settle(r.Key, fmt.Sprintf("HTTP %d: %s", status, bytes.TrimSpace(data)))
		return true, nil
	}
	if r.Via == s.id && s.checkGone(status, data) {
		return false, errSessionGone
	}
	return false, fmt.Errorf("HTTP %d: %s", status, bytes.TrimSpace(data))
}
