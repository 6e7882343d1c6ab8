// Package treadle is the Go worker SDK for Treadle, a polyglot remote-worker platform that
// speaks Weft's RemoteWorker protocol v8 (see protocol/README.md in the repository).
//
// A Worker registers activities under workflow names, connects to an orchestrator over a
// WebSocket (falling back to HTTP long-poll worker sessions when the upgrade is refused), runs
// the tasks it is given, each in its own goroutine, and reports their results:
//
//	w, err := treadle.NewWorker(treadle.Config{ServerURL: "http://127.0.0.1:7233"})
//	if err != nil { … }
//	err = treadle.RegisterActivity(w, "billing", "charge",
//		func(ctx context.Context, in ChargeInput) (Receipt, error) { … })
//	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
//	defer stop()
//	err = w.Run(ctx)
//
// The worker keeps every result in an outbox until the server acknowledges it, heartbeats
// each running attempt, reconnects by itself with jittered backoff and resumes its session,
// delivers cancellation through the activity's context (CancelReason gives the server's
// reason), and drains on the server's shutdown frame or when Run's context ends. Signal
// handling is left to the caller, as above.
//
// A Client submits tasks and waits for their results over the Task API.
//
// Errors match the sentinels of this package (ErrRegistration, ErrAuthentication, …) with
// errors.Is; their texts start with "treadle:".
package treadle
