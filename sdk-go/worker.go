package treadle

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/treadle-dev/treadle/sdk-go/internal/endpoint"
	"github.com/treadle-dev/treadle/sdk-go/internal/manifest"
	"github.com/treadle-dev/treadle/sdk-go/internal/outbox"
	"github.com/treadle-dev/treadle/sdk-go/internal/wire"
)

// Version is the SDK's version, sent as the manifest's sdkVersion.
const Version = "0.1.0"

// unknownActivityPrefix starts the failure text of a task for an activity the worker does
// not run (DISPATCH-8).
const unknownActivityPrefix = "Unknown activity: "

// link is the transport a worker is registered over: it sends what the core produces.
// Sends are best effort; the outbox keeps every result until it is settled.
type link interface {
	sendResult(r outbox.Result)
	sendActivityHeartbeat(a *attempt, details json.RawMessage)
}

// Worker runs registered activities for one queue of a Treadle (or Weft) server.
// Make one with NewWorker, register activities with RegisterActivity, then call Run.
type Worker struct {
	cfg       Config
	ends      endpoint.Endpoints
	log       *slog.Logger
	startedAt float64

	mu         sync.Mutex
	started    bool
	activities map[string]activityFunc
	workflows  map[string][]string
	manifest   wire.Manifest

	// Run state, guarded by mu.
	attempts map[outbox.Key]*attempt
	outbox   *outbox.Outbox
	link     link
	draining bool
	drainCh  chan struct{} // closed when the drain begins
	changed  chan struct{} // a buffered nudge: attempts or outbox changed
	baseCtx  context.Context
}

// NewWorker validates cfg (see Config for the defaults) and returns a worker with no
// activities. A bad field gives a *ConfigError naming it.
func NewWorker(cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	ends, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cfg.Queue = ends.Queue
	return &Worker{
		cfg:        cfg,
		ends:       ends,
		log:        cfg.Logger.With("worker_id", cfg.WorkerID, "queue", ends.Queue),
		startedAt:  float64(time.Now().UnixMilli()),
		activities: make(map[string]activityFunc),
		workflows:  make(map[string][]string),
		attempts:   make(map[outbox.Key]*attempt),
		outbox:     outbox.New(cfg.OutboxLimit),
		drainCh:    make(chan struct{}),
		changed:    make(chan struct{}, 1),
	}, nil
}

// WorkerID is the identity the worker registers with (long-poll sessions get their own ids
// from the server).
func (w *Worker) WorkerID() string { return w.cfg.WorkerID }

func (w *Worker) register(workflow, activity string, fn activityFunc) error {
	if err := validName("workflow", workflow); err != nil {
		return err
	}
	if err := validName("activity", activity); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return ErrAlreadyStarted
	}
	name := workflow + "." + activity
	if _, ok := w.activities[name]; ok {
		return fmt.Errorf("%w: %s is already registered", ErrInvalidActivity, name)
	}
	w.activities[name] = fn
	w.workflows[workflow] = append(w.workflows[workflow], activity)
	return nil
}

// Run registers the worker and runs tasks until it is stopped, reconnecting by itself after
// a drop (SDK-5). It stops in three ways:
//
//   - The server sends shutdown, or ctx ends (use signal.NotifyContext for SIGTERM and
//     SIGINT): the worker drains (SDK-11). It takes no new task, waits up to
//     Config.ShutdownTimeout for running attempts and for the acknowledgement of their
//     results, then closes the connection. Run returns nil, or an error matching
//     ErrDrainIncomplete if the budget ran out; attempts still running then are abandoned
//     without a result (their context is cancelled with cause ErrAbandoned) and Run does not
//     wait for them to return.
//   - The server refuses the registration for good: Run returns a *RegistrationError.
//   - The server answers 401: Run returns an error matching ErrAuthentication.
//
// Activities run on contexts that keep ctx's values but not its cancellation: ending ctx
// drains the worker rather than cancelling its attempts. Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	w.mu.Lock()
	if w.started {
		w.mu.Unlock()
		return ErrAlreadyStarted
	}
	if len(w.activities) == 0 {
		w.mu.Unlock()
		return ErrNoActivities
	}
	w.started = true
	w.manifest = manifest.Build(w.workflows, manifest.Deployment{
		Name:           w.cfg.DeploymentName,
		BuildID:        w.cfg.BuildID,
		ArtifactDigest: w.cfg.ArtifactDigest,
	}, Version)
	w.baseCtx = context.WithoutCancel(ctx)
	w.mu.Unlock()

	runCtx, stop := context.WithCancel(w.baseCtx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- w.serve(runCtx) }()

	select {
	case err := <-served:
		w.abandonAll()
		return err
	case <-ctx.Done():
		w.beginDrain("the worker's context ended")
	case <-w.drainCh:
	}

	deadline := time.NewTimer(w.cfg.ShutdownTimeout)
	defer deadline.Stop()
	var servedErr error
	servedDone := false
	for waiting := true; waiting && !w.drained(); {
		select {
		case <-w.changed:
		case <-deadline.C:
			waiting = false
		case servedErr = <-served:
			servedDone, waiting = true, false
		}
	}
	running, owed := w.abandonAll()
	stop()
	if !servedDone {
		servedErr = <-served
	}
	if servedErr != nil {
		return servedErr
	}
	if running > 0 || owed > 0 {
		w.log.Warn("drain budget ran out", "abandoned_attempts", running, "unacknowledged_results", owed)
		return fmt.Errorf("%w: %d attempts abandoned, %d results unacknowledged", ErrDrainIncomplete, running, owed)
	}
	w.log.Info("worker drained and stopped")
	return nil
}

// serve runs the configured transport until ctx ends (nil) or a fatal error.
func (w *Worker) serve(ctx context.Context) error {
	if w.cfg.Transport != TransportLongPoll {
		err := w.runStream(ctx)
		refused, ok := err.(*upgradeRefusedError)
		if !ok || w.cfg.Transport != TransportAuto {
			return err
		}
		w.log.Warn("WebSocket upgrade refused; using long-poll worker sessions", "status", refused.status)
	}
	return w.runSessions(ctx)
}

// beginDrain stops the intake of tasks (SDK-11).
func (w *Worker) beginDrain(why string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.draining {
		return
	}
	w.draining = true
	close(w.drainCh)
	w.log.Info("draining", "why", why, "running", len(w.attempts), "unacknowledged", w.outbox.Len())
}

func (w *Worker) isDraining() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.draining
}

func (w *Worker) drained() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.attempts) == 0 && w.outbox.Len() == 0
}

// abandonAll gives up on every running attempt, without a result; it returns how many
// attempts were running and how many results are still unacknowledged.
func (w *Worker) abandonAll() (running, owed int) {
	w.mu.Lock()
	abandoned := make([]*attempt, 0, len(w.attempts))
	for _, a := range w.attempts {
		a.abandoned = true
		abandoned = append(abandoned, a)
	}
	owed = w.outbox.Len()
	w.mu.Unlock()
	for _, a := range abandoned {
		a.cancel(ErrAbandoned)
	}
	return len(abandoned), owed
}

func (w *Worker) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// registered makes l the link and resends what is owed: every outbox entry in insertion order
// (OUTBOX-3) and the latest heartbeat details of every running attempt (SDK-10).
func (w *Worker) registered(l link) {
	w.mu.Lock()
	w.link = l
	pending := w.outbox.Pending()
	var beats []*attempt
	var details []json.RawMessage
	for _, a := range w.attempts {
		if a.lastDetails != nil {
			beats = append(beats, a)
			details = append(details, a.lastDetails)
		}
	}
	w.mu.Unlock()
	for _, r := range pending {
		l.sendResult(r)
	}
	for i, a := range beats {
		l.sendActivityHeartbeat(a, details[i])
	}
}

// unlink forgets l if it is the current link.
func (w *Worker) unlink(l link) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.link == l {
		w.link = nil
	}
}

// settle removes an answered result from the outbox.
func (w *Worker) settle(k outbox.Key, disposition string) {
	w.mu.Lock()
	_, held := w.outbox.Settle(k)
	w.mu.Unlock()
	if !held {
		return
	}
	w.notify()
	switch disposition {
	case wire.DispositionDeadLettered:
		w.log.Warn("result dead-lettered by the server", "operation_id", k.OperationID) // OUTBOX-5
	case wire.DispositionApplied, wire.DispositionDuplicate:
		w.log.Debug("result acknowledged", "operation_id", k.OperationID, "disposition", disposition)
	default:
		w.log.Warn("result refused by the server", "operation_id", k.OperationID, "reason", disposition)
	}
}

// outboxFull reports whether the worker must take no task (OUTBOX-4).
func (w *Worker) outboxFull() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.outbox.Full()
}
