package treadle

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/treadle-dev/treadle/sdk-go/internal/endpoint"
	"github.com/treadle-dev/treadle/sdk-go/internal/httpjson"
	"github.com/treadle-dev/treadle/sdk-go/internal/wire"
)

// maxResultWait is the longest wait the Task API allows for one result request (API-6).
const maxResultWait = 60 * time.Second

// ClientConfig says how a Client reaches the Task API (protocol §13).
type ClientConfig struct {
	// ServerURL is the server's base URL (http(s)://host:port, optionally with a path prefix).
	// Required.
	ServerURL string
	// APIKey, when set, is sent as "Authorization: Bearer <key>" (SDK-3).
	APIKey string
	// HTTPClient makes the requests. Its Timeout, if any, must exceed the result waits.
	// Defaults to a new http.Client.
	HTTPClient *http.Client
}

// Client submits tasks to a Treadle orchestrator and waits for their results over the Task
// API. It is safe for concurrent use.
type Client struct {
	base   string
	apiKey string
	http   *http.Client
}

// NewClient validates cfg and returns a client. A bad field gives a *ConfigError.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.ServerURL == "" {
		return nil, &ConfigError{Field: "ServerURL", Problem: "is required"}
	}
	ends, err := endpoint.Resolve(cfg.ServerURL, "")
	if err != nil {
		return nil, &ConfigError{Field: "ServerURL", Problem: err.Error()}
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	return &Client{base: ends.Base, apiKey: cfg.APIKey, http: client}, nil
}

// RetryPolicy says when a failed result, an expired lease or a lost worker earns another
// attempt (API-3). Zero fields are left to the server's defaults.
type RetryPolicy struct {
	MaxAttempts        int
	InitialInterval    time.Duration
	BackoffCoefficient float64
	MaxInterval        time.Duration
	// NonRetryableErrors are failure texts that are never retried (SDK-8).
	NonRetryableErrors []string
}

// Submission is one task to submit.
type Submission struct {
	// Activity is the qualified name, "workflow.activity". Required.
	Activity string
	// Input is the activity's input; nil sends no input (the worker sees null).
	Input any
	// OperationID makes the submission idempotent; the server assigns one when empty.
	OperationID string
	// VisibilityTimeout is the lease length; zero means the server's default (30 s).
	VisibilityTimeout time.Duration
	RetryPolicy       *RetryPolicy
	Priority          *int
	Headers           map[string]string
	WorkflowRevision  string
}

// Submitted is the server's answer to a submission.
type Submitted struct {
	OperationID string
	// State is the task's ledger state, such as "queued".
	State string
	// Created is false when the same OperationID and body had been submitted before.
	Created bool
}

// TaskDetail is a task's ledger record (API-5).
type TaskDetail struct {
	OperationID, State, Queue, ActivityName string
	Attempt                                 int
	// Disposition, Status and Value or Error are set once the task is terminal.
	Disposition, Status, Error string
	Value                      json.RawMessage
	Uncertain                  bool
}

// Submit submits a task to queue.
func (c *Client) Submit(ctx context.Context, queue string, s Submission) (Submitted, error) {
	body := wire.TaskAPISubmitRequest{ActivityName: s.Activity, Headers: s.Headers}
	if s.Input != nil {
		input, err := json.Marshal(s.Input)
		if err != nil {
			return Submitted{}, fmt.Errorf("treadle: the input cannot be encoded as JSON: %w", err)
		}
		body.Input = input
	}
	if s.OperationID != "" {
		body.OperationID = &s.OperationID
	}
	if s.VisibilityTimeout > 0 {
		body.VisibilityTimeout = ptr(float64(s.VisibilityTimeout.Milliseconds()))
	}
	if s.WorkflowRevision != "" {
		body.WorkflowRevision = &s.WorkflowRevision
	}
	if s.Priority != nil {
		body.Priority = ptr(int64(*s.Priority))
	}
	if p := s.RetryPolicy; p != nil {
		policy := &wire.TaskAPIRetryPolicy{NonRetryableErrors: p.NonRetryableErrors}
		if p.MaxAttempts > 0 {
			policy.MaxAttempts = ptr(int64(p.MaxAttempts))
		}
		if p.InitialInterval > 0 {
			policy.InitialIntervalMs = ptr(float64(p.InitialInterval.Milliseconds()))
		}
		if p.BackoffCoefficient > 0 {
			policy.BackoffCoefficient = &p.BackoffCoefficient
		}
		if p.MaxInterval > 0 {
			policy.MaxIntervalMs = ptr(float64(p.MaxInterval.Milliseconds()))
		}
		body.RetryPolicy = policy
	}
	status, data, err := c.do(ctx, http.MethodPost, "/api/v1/queues/"+url.PathEscape(queue)+"/tasks", body)
	if err != nil {
		return Submitted{}, err
	}
	if status != http.StatusOK && status != http.StatusCreated {
		return Submitted{}, apiError(status, data)
	}
	var answer wire.TaskAPISubmitResponse
	if err := json.Unmarshal(data, &answer); err != nil {
		return Submitted{}, fmt.Errorf("treadle: malformed submit response: %w", err)
	}
	return Submitted{OperationID: answer.OperationID, State: answer.State, Created: status == http.StatusCreated}, nil
}

// Detail reads a task's ledger record. An unknown task gives an error matching ErrTaskNotFound.
func (c *Client) Detail(ctx context.Context, operationID string) (TaskDetail, error) {
	status, data, err := c.do(ctx, http.MethodGet, "/api/v1/tasks/detail/"+url.PathEscape(operationID), nil)
	if err != nil {
		return TaskDetail{}, err
	}
	if status != http.StatusOK {
		return TaskDetail{}, apiError(status, data)
	}
	var d wire.TaskAPITaskDetail
	if err := json.Unmarshal(data, &d); err != nil {
		return TaskDetail{}, fmt.Errorf("treadle: malformed task detail: %w", err)
	}
	detail := TaskDetail{OperationID: d.OperationID, State: d.State, Queue: d.Queue, ActivityName: d.ActivityName,
		Attempt: int(d.Attempt), Value: d.Value}
	detail.Disposition, detail.Status, detail.Error = deref(d.Disposition), deref(d.Status), deref(d.Error)
	detail.Uncertain = d.Uncertain != nil && *d.Uncertain
	return detail, nil
}

// Result waits until the task is terminal, then decodes its value into v (which may be nil).
// It waits until ctx ends; with no deadline on ctx it waits as long as the task runs. A task
// that ended without a value gives a *TaskFailedError (matching ErrCancelled when it was
// cancelled); a task still running when ctx ends gives an error matching ErrResultTimeout.
func (c *Client) Result(ctx context.Context, operationID string, v any) error {
	for {
		wait := maxResultWait
		if deadline, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(deadline))
		}
		if wait <= 0 {
			return fmt.Errorf("%w: %s", ErrResultTimeout, operationID)
		}
		path := "/api/v1/tasks/detail/" + url.PathEscape(operationID) + "/result?timeout=" + strconv.FormatInt(wait.Milliseconds(), 10)
		status, data, err := c.do(ctx, http.MethodGet, path, nil)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%w: %s: %w", ErrResultTimeout, operationID, ctx.Err())
			}
			return err
		}
		switch status {
		case http.StatusNoContent:
			continue
		case http.StatusOK:
		default:
			return apiError(status, data)
		}
		var r wire.TaskAPITaskResult
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("treadle: malformed task result: %w", err)
		}
		if r.Status != wire.ResultStatusCompleted {
			return &TaskFailedError{OperationID: operationID, Disposition: r.Disposition, Message: deref(r.Error), Attempt: int(r.Attempt)}
		}
		if v == nil {
			return nil
		}
		value := r.Value
		if value == nil {
			value = json.RawMessage("null")
		}
		return json.Unmarshal(value, v)
	}
}

// Cancel asks the server to cancel the task, with reason when it is not empty; it reports
// whether cancellation intent was recorded (API-7).
func (c *Client) Cancel(ctx context.Context, operationID, reason string) (bool, error) {
	body := wire.TaskAPICancelRequest{}
	if reason != "" {
		body.Reason = &reason
	}
	status, data, err := c.do(ctx, http.MethodPost, "/api/v1/tasks/detail/"+url.PathEscape(operationID)+"/cancel", body)
	if err != nil {
		return false, err
	}
	if status != http.StatusAccepted {
		return false, apiError(status, data)
	}
	var answer wire.TaskAPICancelResponse
	if err := json.Unmarshal(data, &answer); err != nil {
		return false, fmt.Errorf("treadle: malformed cancel response: %w", err)
	}
	return answer.Recorded, nil
}

func (c *Client) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	return httpjson.Do(ctx, c.http, method, c.base+path, httpjson.Auth(c.apiKey), body)
}

func apiError(status int, data []byte) error {
	var body struct {
		Error string `json:"error"`
		Path  string `json:"path"`
	}
	if json.Unmarshal(data, &body) != nil || body.Error == "" {
		body.Error = string(bytes.TrimSpace(data))
	}
	if status == http.StatusUnauthorized {
		return fmt.Errorf("%w: %w", ErrAuthentication, &APIError{Status: status, Message: body.Error, Path: body.Path})
	}
	return &APIError{Status: status, Message: body.Error, Path: body.Path}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
