package treadle

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"
	"unicode/utf8"

	"github.com/treadle-dev/treadle/sdk-go/internal/cadence"
	"github.com/treadle-dev/treadle/sdk-go/internal/endpoint"
	"github.com/treadle-dev/treadle/sdk-go/internal/outbox"
)

// Transport chooses how a worker reaches the server (SDK-4).
type Transport string

const (
	// TransportAuto tries the WebSocket stream and, when the upgrade is answered with an HTTP
	// status other than 101 and 401, uses worker sessions (long-poll) for the rest of the run.
	TransportAuto Transport = "auto"
	// TransportWebSocket uses only the WebSocket stream.
	TransportWebSocket Transport = "websocket"
	// TransportLongPoll uses only HTTP long-poll worker sessions (protocol §12.2).
	TransportLongPoll Transport = "longpoll"
)

const (
	maxConcurrency     = 1000
	maxIdentifierBytes = 512
	maxPollTimeout     = 60 * time.Second
)

// Config says how a worker reaches the server and what it offers. Zero fields take the
// documented defaults; NewWorker validates the rest.
type Config struct {
	// ServerURL is the server's base URL (http(s)://host:port, optionally with a path prefix;
	// ws(s):// works too) or a full stream URL (…/v1/tasks/<queue>/stream). Required.
	ServerURL string
	// Queue is the task queue to serve. Defaults to the stream URL's queue, else "default".
	Queue string
	// Concurrency is how many attempts may run at once, 1 to 1000. Defaults to 10.
	Concurrency int
	// WorkerID identifies the worker to the server. Defaults to "<host>-<pid>-<random>".
	WorkerID string
	// DeploymentName goes in the manifest's deployment. Defaults to "default".
	DeploymentName string
	// BuildID goes in the manifest's deployment. Defaults to "dev".
	BuildID string
	// ArtifactDigest identifies the build's artifact. Defaults to "build:<BuildID>".
	ArtifactDigest string
	// APIKey, when set, is sent as "Authorization: Bearer <key>" on every request (SDK-3).
	APIKey string
	// Transport is TransportAuto (the default), TransportWebSocket or TransportLongPoll.
	Transport Transport
	// HeartbeatInterval is the session heartbeat interval. Defaults to 10 s (HB-1).
	HeartbeatInterval time.Duration
	// ShutdownTimeout is the drain budget: how long a stopping worker waits for running
	// attempts and for the acknowledgement of their results (SDK-11). Defaults to 30 s.
	ShutdownTimeout time.Duration
	// PollTimeout is how long a long-poll waits for a task, at most 60 s. Defaults to 30 s.
	PollTimeout time.Duration
	// ReconnectBase and ReconnectCap bound the reconnect backoff (SDK-5): the n-th retry waits
	// a random delay up to min(ReconnectCap, ReconnectBase·2ⁿ). Default 500 ms and 30 s.
	ReconnectBase, ReconnectCap time.Duration
	// OutboxLimit bounds the unacknowledged results; a full outbox takes no task (OUTBOX-4).
	// Defaults to 1000.
	OutboxLimit int
	// Logger receives the worker's structured logs. Defaults to slog.Default().
	Logger *slog.Logger
	// HTTPClient makes the WebSocket upgrade and the long-poll requests. It must not set a
	// Timeout shorter than PollTimeout. Defaults to a new http.Client.
	HTTPClient *http.Client
}

// withDefaults returns a copy of c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Concurrency == 0 {
		c.Concurrency = 10
	}
	if c.WorkerID == "" {
		c.WorkerID = defaultWorkerID()
	}
	if c.DeploymentName == "" {
		c.DeploymentName = "default"
	}
	if c.BuildID == "" {
		c.BuildID = "dev"
	}
	if c.ArtifactDigest == "" {
		c.ArtifactDigest = "build:" + c.BuildID
	}
	if c.Transport == "" {
		c.Transport = TransportAuto
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = cadence.SessionHeartbeat
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = 30 * time.Second
	}
	if c.ReconnectBase == 0 {
		c.ReconnectBase = 500 * time.Millisecond
	}
	if c.ReconnectCap == 0 {
		c.ReconnectCap = 30 * time.Second
	}
	if c.OutboxLimit == 0 {
		c.OutboxLimit = outbox.DefaultLimit
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	return c
}

// validate checks a defaulted config and resolves its endpoints.
func (c Config) validate() (endpoint.Endpoints, error) {
	bad := func(field, problem string) (endpoint.Endpoints, error) {
		return endpoint.Endpoints{}, &ConfigError{Field: field, Problem: problem}
	}
	if c.ServerURL == "" {
		return bad("ServerURL", "is required")
	}
	if c.Queue != "" && !endpoint.QueuePattern.MatchString(c.Queue) {
		return bad("Queue", "must match [A-Za-z0-9_-]+")
	}
	ends, err := endpoint.Resolve(c.ServerURL, c.Queue)
	if err != nil {
		return bad("ServerURL", err.Error())
	}
	if ends.Queue == "diagnostics" || ends.Queue == "detail" {
		return bad("Queue", fmt.Sprintf("%q is reserved by the HTTP routes (LP-10)", ends.Queue))
	}
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		return bad("Concurrency", fmt.Sprintf("must be from 1 to %d", maxConcurrency))
	}
	for _, f := range []struct{ name, value string }{
		{"WorkerID", c.WorkerID},
		{"DeploymentName", c.DeploymentName},
		{"BuildID", c.BuildID},
		{"ArtifactDigest", c.ArtifactDigest},
	} {
		if !utf8.ValidString(f.value) || len(f.value) > maxIdentifierBytes {
			return bad(f.name, fmt.Sprintf("must be valid UTF-8 of at most %d bytes", maxIdentifierBytes))
		}
	}
	switch c.Transport {
	case TransportAuto, TransportWebSocket, TransportLongPoll:
	default:
		return bad("Transport", `must be "auto", "websocket" or "longpoll"`)
	}
	for _, f := range []struct {
		name  string
		value time.Duration
	}{
		{"HeartbeatInterval", c.HeartbeatInterval},
		{"ShutdownTimeout", c.ShutdownTimeout},
		{"PollTimeout", c.PollTimeout},
		{"ReconnectBase", c.ReconnectBase},
		{"ReconnectCap", c.ReconnectCap},
	} {
		if f.value < 0 {
			return bad(f.name, "must not be negative")
		}
	}
	if c.PollTimeout > maxPollTimeout {
		return bad("PollTimeout", "must be at most 60s (LP-1)")
	}
	if c.ReconnectCap < c.ReconnectBase {
		return bad("ReconnectCap", "must be at least ReconnectBase")
	}
	if c.OutboxLimit < 1 {
		return bad("OutboxLimit", "must be at least 1")
	}
	return ends, nil
}

func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	var random [4]byte
	_, _ = rand.Read(random[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(random[:]))
}
