package treadle_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	treadle "github.com/treadle-dev/treadle/sdk-go"
)

type greeting struct {
	Name string `json:"name"`
}

// A worker offering one activity, stopped by SIGTERM or SIGINT with a drain.
func ExampleNewWorker() {
	w, err := treadle.NewWorker(treadle.Config{
		ServerURL:   "http://127.0.0.1:7233",
		Queue:       "default",
		Concurrency: 10,
	})
	if err != nil {
		log.Fatal(err)
	}
	err = treadle.RegisterActivity(w, "greetings", "hello", func(ctx context.Context, in greeting) (string, error) {
		return "hello, " + in.Name, nil
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	_ = w.Run // err = w.Run(ctx): runs until a signal or the server's shutdown, then drains
	_ = ctx
	fmt.Println("registered greetings.hello on", w.WorkerID() != "")
	// Output: registered greetings.hello on true
}

// An activity that reports progress, resumes from the last attempt's progress, and stops
// when the server cancels it.
func ExampleHeartbeat() {
	process := func(ctx context.Context, items []string) (int, error) {
		start := 0
		if info, ok := treadle.ActivityInfoFromContext(ctx); ok && info.LastHeartbeatDetails != nil {
			_, _ = fmt.Sscan(string(info.LastHeartbeatDetails), &start) // resume after a redispatch
		}
		for i := start; i < len(items); i++ {
			if reason, cancelled := treadle.CancelReason(ctx); cancelled {
				return i, errors.New("stopped: " + reason) // reported as cancelled, with the reason
			}
			if err := treadle.Heartbeat(ctx, i); err != nil {
				return i, err
			}
		}
		return len(items), nil
	}
	n, err := process(context.Background(), []string{"a", "b"})
	fmt.Println(n, errors.Is(err, treadle.ErrNotInActivity)) // outside a worker there is nothing to heartbeat
	// Output: 0 true
}

// Submitting a task and waiting for its result over the Task API.
func ExampleClient() {
	client, err := treadle.NewClient(treadle.ClientConfig{ServerURL: "http://127.0.0.1:7233"})
	if err != nil {
		log.Fatal(err)
	}
	run := func(ctx context.Context) (string, error) {
		task, err := client.Submit(ctx, "default", treadle.Submission{
			Activity: "greetings.hello",
			Input:    greeting{Name: "Ada"},
		})
		if err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var answer string
		err = client.Result(ctx, task.OperationID, &answer)
		return answer, err
	}
	_ = run // answer, err := run(ctx)
	fmt.Println(strings.HasPrefix(fmt.Sprint(client != nil), "true"))
	// Output: true
}

// Configuration errors name the field.
func ExampleConfigError() {
	_, err := treadle.NewWorker(treadle.Config{ServerURL: "http://127.0.0.1:7233", Concurrency: 5000})
	var bad *treadle.ConfigError
	if errors.As(err, &bad) {
		fmt.Println(bad.Field)
	}
	// Output: Concurrency
}
