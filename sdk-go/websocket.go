package treadle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/treadle-dev/treadle/sdk-go/internal/backoff"
	"github.com/treadle-dev/treadle/sdk-go/internal/httpjson"
	"github.com/treadle-dev/treadle/sdk-go/internal/outbox"
	"github.com/treadle-dev/treadle/sdk-go/internal/wire"
)

const (
	// maxFrameBytes is the frame cap of every server endpoint (FRAME-3).
	maxFrameBytes = 4 << 20
	writeTimeout  = 10 * time.Second
	dialTimeout   = 30 * time.Second

	// The two registerError refusals that pass and are retried (SDK-6).
	hijackRefusal   = "workerId is already registered to an active connection" // RESUME-5
	shutdownRefusal = "The server is shutting down"                            // SHUTDOWN-1
)

// upgradeRefusedError: the server answered the upgrade with an HTTP status other than 101.
type upgradeRefusedError struct{ status int }

func (e *upgradeRefusedError) Error() string {
	return fmt.Sprintf("treadle: WebSocket upgrade refused with HTTP %d", e.status)
}

func (w *Worker) authHeader() http.Header {
	return httpjson.Auth(w.cfg.APIKey) // SDK-3
}

// runStream serves the WebSocket stream, reconnecting with backoff after every drop, until
// ctx ends (nil) or a fatal error. In auto mode a refused upgrade returns *upgradeRefusedError.
func (w *Worker) runStream(ctx context.Context) error {
	retry := backoff.New(w.cfg.ReconnectBase, w.cfg.ReconnectCap)
	var generation float64 // the last registerAck's sessionGeneration (GEN-6)
	for ctx.Err() == nil {
		dialCtx, cancel := context.WithTimeout(ctx, dialTimeout)
		conn, resp, err := websocket.Dial(dialCtx, w.ends.Stream, &websocket.DialOptions{
			HTTPClient: w.cfg.HTTPClient,
			HTTPHeader: w.authHeader(),
		})
		cancel()
		if err != nil {
			if resp != nil && resp.Body != nil {
				_ = resp.Body.Close()
			}
			switch {
			case ctx.Err() != nil:
				return nil
			case resp != nil && resp.StatusCode == http.StatusUnauthorized:
				return fmt.Errorf("%w: the WebSocket upgrade was answered 401", ErrAuthentication)
			case resp != nil && resp.StatusCode != http.StatusSwitchingProtocols && w.cfg.Transport == TransportAuto:
				return &upgradeRefusedError{status: resp.StatusCode}
			}
			delay := retry.Next()
			w.log.Warn("cannot connect; retrying", "url", w.ends.Stream, "error", err, "retry_in", delay)
			if !sleep(ctx, delay) {
				return nil
			}
			continue
		}
		err = w.serveConn(ctx, conn, &generation, retry.Reset)
		var refused *RegistrationError
		if errors.As(err, &refused) || errors.Is(err, ErrProtocol) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		delay := retry.Next()
		w.log.Warn("disconnected; reconnecting", "error", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return nil
		}
	}
	return nil
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// streamLink sends frames over one registered socket.
type streamLink struct {
	w    *Worker
	conn *websocket.Conn
}

func (l *streamLink) send(message any) {
	data, err := json.Marshal(message)
	if err != nil {
		l.w.log.Error("cannot encode a frame", "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := l.conn.Write(ctx, websocket.MessageText, data); err != nil {
		l.w.log.Debug("frame not sent", "error", err)
	}
}

func (l *streamLink) sendResult(r outbox.Result) {
	l.send(resultFrame(r))
}

func (l *streamLink) sendActivityHeartbeat(a *attempt, details json.RawMessage) {
	l.send(wire.ActivityHeartbeatMessage{
		Type:         wire.MessageTypeActivityHeartbeat,
		WorkerID:     l.w.cfg.WorkerID,
		OperationID:  a.key.OperationID,
		AttemptToken: a.key.AttemptToken,
		Details:      details,
	})
}

// resultFrame is the taskResult frame of r.
func resultFrame(r outbox.Result) wire.TaskResultMessage {
	m := wire.TaskResultMessage{
		Type:             wire.MessageTypeTaskResult,
		OperationID:      r.OperationID,
		AttemptToken:     r.AttemptToken,
		Status:           r.Status,
		WorkflowRevision: r.WorkflowRevision,
	}
	switch r.Status {
	case wire.ResultStatusCompleted:
		m.Value = r.Value
		if m.Value == nil {
			m.Value = json.RawMessage("null")
		}
	case wire.ResultStatusCancelled:
		cancelled := true
		m.Error, m.Cancelled = &r.Error, &cancelled
	default:
		m.Error = &r.Error
	}
	return m
}

// serveConn registers on conn and handles its frames until it closes. It returns nil when
// ctx ended, a *RegistrationError or ErrProtocol for a fatal refusal, and any other error for
// a drop to recover from by reconnecting.
func (w *Worker) serveConn(ctx context.Context, conn *websocket.Conn, generation *float64, onAck func()) error {
	defer conn.CloseNow()
	conn.SetReadLimit(maxFrameBytes)
	l := &streamLink{w: w, conn: conn}
	defer w.unlink(l)

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = conn.Close(websocket.StatusNormalClosure, "worker stopped")
		case <-done:
		}
	}()

	register := wire.RegisterMessage{
		Type:            wire.MessageTypeRegister,
		ProtocolVersion: wire.ProtocolVersion,
		WorkerID:        w.cfg.WorkerID,
		Concurrency:     ptr(float64(w.cfg.Concurrency)),
		StartedAt:       ptr(w.startedAt),
	}
	if *generation > 0 {
		register.ResumeSessionGeneration = ptr(*generation) // GEN-6
	}
	manifestJSON, err := json.Marshal(w.manifest)
	if err != nil {
		return fmt.Errorf("treadle: cannot encode the manifest: %w", err)
	}
	register.Manifest = manifestJSON
	l.send(register)

	beats := &sessionBeats{}
	defer beats.stop()
	registered := false
	for {
		_, data, err := conn.Read(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		frame := wire.ParseServerFrame(data)
		switch frame.Outcome {
		case wire.Ignored:
			w.log.Debug("server frame ignored", "type", frame.Type)
			continue
		case wire.Malformed:
			if !registered && frame.Type == wire.MessageTypeRegisterAck {
				return fmt.Errorf("%w: malformed registerAck: %s", ErrProtocol, frame.Reason) // WPARSE-2
			}
			w.log.Warn("malformed server frame dropped", "type", frame.Type, "reason", frame.Reason)
			continue
		}
		switch m := frame.Message.(type) {
		case *wire.RegisterAckMessage:
			*generation = m.SessionGeneration
			if registered {
				continue
			}
			registered = true
			w.log.Info("registered", "session_generation", m.SessionGeneration, "concurrency", m.Concurrency)
			onAck()
			w.registered(l)
			if !w.isDraining() {
				beats.start(w.cfg.HeartbeatInterval, func() {
					l.send(wire.HeartbeatMessage{Type: wire.MessageTypeHeartbeat, WorkerID: w.cfg.WorkerID})
				})
			}
		case *wire.RegisterErrorMessage:
			if (m.Code == wire.RegisterErrorCodeInvalidRegistration && m.Message == hijackRefusal) ||
				(m.Code == wire.RegisterErrorCodeRegistrationRejected && m.Message == shutdownRefusal) {
				return fmt.Errorf("registration refused for now: %s: %s", m.Code, m.Message)
			}
			return &RegistrationError{Code: m.Code, Message: m.Message}
		case *wire.TaskMessage:
			if !registered {
				continue
			}
			if _, err := w.accept(taskFromFrame(m), ""); err != nil {
				// OUTBOX-4: fail the socket; the server's disconnect path redelivers the work.
				_ = conn.Close(websocket.StatusTryAgainLater, "outbox full")
				return err
			}
		case *wire.CancelMessage:
			reason := ""
			if m.Reason != nil {
				reason = *m.Reason
			}
			w.cancelAttempt(outbox.Key{OperationID: m.OperationID, AttemptToken: m.AttemptToken}, reason)
		case *wire.TaskResultAckMessage:
			w.settle(outbox.Key{OperationID: m.OperationID, AttemptToken: m.AttemptToken}, m.Disposition)
		case *wire.ProtocolErrorMessage:
			if m.OperationID != nil && m.AttemptToken != nil {
				w.settle(outbox.Key{OperationID: *m.OperationID, AttemptToken: *m.AttemptToken}, m.Message) // OUTBOX-2
			} else {
				w.log.Warn("protocol error from the server", "code", m.Code, "message", m.Message)
			}
		case *wire.ShutdownMessage:
			beats.stop() // SHUTDOWN-2
			w.beginDrain("the server sent shutdown")
		}
	}
}

// sessionBeats runs the session heartbeat of one connection (HB-1). Its methods are called
// from the connection's read loop only.
type sessionBeats struct {
	quit    chan struct{}
	stopped bool
}

func (b *sessionBeats) start(every time.Duration, beat func()) {
	if b.stopped || b.quit != nil {
		return
	}
	b.quit = make(chan struct{})
	quit := b.quit
	go func() {
		ticker := time.NewTicker(every)
		defer ticker.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ticker.C:
				beat()
			}
		}
	}()
}

func (b *sessionBeats) stop() {
	b.stopped = true
	if b.quit != nil {
		close(b.quit)
		b.quit = nil
	}
}

func ptr[T any](v T) *T { return &v }
