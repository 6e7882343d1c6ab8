// Command bench-worker is the Go SDK's worker for Treadle's benchmarks (bench/ at the repository
// root). It offers one activity, bench.noop, which returns its input unchanged, and reports on
// stdout, one JSON object a line, what the benchmark harness needs to know without asking the
// orchestrator:
//
//	{"event":"first","ns":N}                     the first bench.noop call (Unix time, ns)
//	{"event":"reached","count":C,"ns":N}         the call that made the count reach -expect
//	{"event":"latencies","us":[...]}             see below
//
// An input object carrying "t" (the Unix time in ns at which the harness scheduled the task's
// submission) and "n" adds a sample "now − t" (µs) at the start of the call; once n samples are
// collected they are printed as one latencies line and the collection starts over. That is the
// open-loop end-to-end latency: scheduled submission → the activity starts on the worker.
//
// Flags (each also read from the environment):
//
//	-url          TREADLE_URL          the orchestrator's base URL (default http://127.0.0.1:7233)
//	-concurrency  TREADLE_CONCURRENCY  attempts at once (default 64)
//	-expect       BENCH_EXPECT         print "reached" when this many calls have run (0: never)
//	-worker-id    TREADLE_WORKER_ID    the worker id (default: the SDK's)
//	-transport    TREADLE_TRANSPORT    auto, websocket (default) or longpoll
//
// SIGTERM and SIGINT drain the worker; it exits 0 after a clean drain.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	treadle "github.com/treadle-dev/treadle/sdk-go"
)

// reporter counts bench.noop calls and writes the harness's event lines.
type reporter struct {
	mu      sync.Mutex
	out     *bufio.Writer
	expect  int64
	count   int64
	samples []int64
}

func (r *reporter) emit(event map[string]any) {
	line, err := json.Marshal(event)
	if err != nil {
		panic(err) // maps of numbers and strings always encode
	}
	_, _ = r.out.Write(append(line, '\n'))
	_ = r.out.Flush()
}

// probe is the part of an input that carries a latency sample; absent fields stay zero.
type probe struct {
	T int64 `json:"t"`
	N int   `json:"n"`
}

func (r *reporter) noop(_ context.Context, in json.RawMessage) (json.RawMessage, error) {
	now := time.Now().UnixNano()
	var p probe
	if len(in) > 0 && in[0] == '{' {
		_ = json.Unmarshal(in, &p) // a non-probe object is simply not sampled
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if r.count == 1 {
		r.emit(map[string]any{"event": "first", "ns": now})
	}
	if r.expect > 0 && r.count == r.expect {
		r.emit(map[string]any{"event": "reached", "count": r.count, "ns": time.Now().UnixNano()})
	}
	if p.T > 0 && p.N > 0 {
		r.samples = append(r.samples, (now-p.T)/1000)
		if len(r.samples) >= p.N {
			r.emit(map[string]any{"event": "latencies", "us": r.samples})
			r.samples = nil
		}
	}
	if in == nil {
		return json.RawMessage("null"), nil
	}
	return in, nil
}

func envInt(name string, fallback int) int {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return fallback
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", cmp.Or(os.Getenv("TREADLE_URL"), "http://127.0.0.1:7233"), "orchestrator base URL")
	concurrency := flag.Int("concurrency", envInt("TREADLE_CONCURRENCY", 64), "attempts at once")
	expect := flag.Int64("expect", int64(envInt("BENCH_EXPECT", 0)), "print a reached line after this many calls")
	workerID := flag.String("worker-id", os.Getenv("TREADLE_WORKER_ID"), "worker id")
	transport := flag.String("transport", cmp.Or(os.Getenv("TREADLE_TRANSPORT"), "websocket"), "auto, websocket or longpoll")
	flag.Parse()

	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := treadle.NewWorker(treadle.Config{
		ServerURL:      *url,
		Concurrency:    *concurrency,
		WorkerID:       *workerID,
		Transport:      treadle.Transport(*transport),
		DeploymentName: "bench",
		BuildID:        "go-bench-worker",
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	r := &reporter{out: bufio.NewWriter(os.Stdout), expect: *expect}
	if err := treadle.RegisterActivity(w, "bench", "noop", r.noop); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return w.Run(ctx)
}
