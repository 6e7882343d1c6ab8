package treadle

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the package returns matches one of them with errors.Is.
var (
	// ErrInvalidConfig: a Config or ClientConfig field is invalid (see *ConfigError).
	ErrInvalidConfig = errors.New("treadle: invalid config")
	// ErrInvalidActivity: RegisterActivity was given a bad name, a duplicate or a nil function.
	ErrInvalidActivity = errors.New("treadle: invalid activity registration")
	// ErrNoActivities: Run was called on a worker with no activity registered.
	ErrNoActivities = errors.New("treadle: no activity registered")
	// ErrAlreadyStarted: Run was called a second time, or RegisterActivity after Run.
	ErrAlreadyStarted = errors.New("treadle: worker already started")
	// ErrRegistration: the server refused the worker's registration (see *RegistrationError).
	ErrRegistration = errors.New("treadle: registration refused")
	// ErrAuthentication: the server answered 401 (AUTH-2): the API key is missing or wrong.
	ErrAuthentication = errors.New("treadle: authentication required")
	// ErrProtocol: the server sent something the protocol does not allow (a malformed
	// registerAck, WPARSE-2).
	ErrProtocol = errors.New("treadle: protocol violation by the server")
	// ErrDrainIncomplete: Run's drain budget (Config.ShutdownTimeout) ran out with attempts
	// still running or results not yet acknowledged. The attempts were abandoned without a
	// result; the server requeues them.
	ErrDrainIncomplete = errors.New("treadle: drain incomplete")
	// ErrCancelled is the cause (context.Cause) of an activity's context when the server
	// cancelled the attempt; the cause is a *CancelledError carrying the server's reason.
	ErrCancelled = errors.New("treadle: task cancelled")
	// ErrAbandoned is the cause of an activity's context when the worker gave up on the
	// attempt at the end of its drain budget; no result is sent for it.
	ErrAbandoned = errors.New("treadle: attempt abandoned at the drain deadline")
	// ErrNotInActivity: Heartbeat was called with a context that is not an activity's.
	ErrNotInActivity = errors.New("treadle: not an activity context")

	// ErrTaskNotFound: the Task API has no task with that operationId (404).
	ErrTaskNotFound = errors.New("treadle: task not found")
	// ErrTaskConflict: that operationId was already submitted with a different body (409).
	ErrTaskConflict = errors.New("treadle: task conflict")
	// ErrAPI: the Task API refused a request (see *APIError).
	ErrAPI = errors.New("treadle: task API error")
	// ErrTaskFailed: the task ended without a value (see *TaskFailedError).
	ErrTaskFailed = errors.New("treadle: task failed")
	// ErrResultTimeout: the task was still running when the wait for its result ended.
	ErrResultTimeout = errors.New("treadle: task still running")
)

// ConfigError names the invalid field and the rule it breaks. It matches ErrInvalidConfig.
type ConfigError struct {
	Field   string
	Problem string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("treadle: invalid config: %s %s", e.Field, e.Problem)
}

// Unwrap returns ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// RegistrationError is a registerError (or a refused worker-session open) that retrying
// cannot fix (SDK-6). It matches ErrRegistration.
type RegistrationError struct {
	// Code is the registerError code, such as "invalid_registration", or for a refused
	// session open the manifest failure reason or session error code.
	Code string
	// Message is the server's text.
	Message string
}

func (e *RegistrationError) Error() string {
	return fmt.Sprintf("treadle: registration refused: %s: %s", e.Code, e.Message)
}

// Unwrap returns ErrRegistration.
func (e *RegistrationError) Unwrap() error { return ErrRegistration }

// CancelledError is the context cause of an attempt the server cancelled. It matches
// ErrCancelled.
type CancelledError struct {
	// Reason is the server's reason, "Task cancelled" when it gave none.
	Reason string
}

func (e *CancelledError) Error() string { return "treadle: task cancelled: " + e.Reason }

// Unwrap returns ErrCancelled.
func (e *CancelledError) Unwrap() error { return ErrCancelled }

// APIError is a Task API refusal: the HTTP status and the body's error and path (API-4).
// It matches ErrAPI, and also ErrTaskNotFound for 404 and ErrTaskConflict for 409.
type APIError struct {
	Status  int
	Message string
	Path    string
}

func (e *APIError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("treadle: task API error: HTTP %d: %s (at %q)", e.Status, e.Message, e.Path)
	}
	return fmt.Sprintf("treadle: task API error: HTTP %d: %s", e.Status, e.Message)
}

// Is matches ErrAPI, and ErrTaskNotFound or ErrTaskConflict by status.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrAPI:
		return true
	case ErrTaskNotFound:
		return e.Status == 404
	case ErrTaskConflict:
		return e.Status == 409
	}
	return false
}

// TaskFailedError is a task that ended without a value. It matches ErrTaskFailed, and
// ErrCancelled when the disposition is "cancelled".
type TaskFailedError struct {
	OperationID string
	// Disposition is "failed", "cancelled" or "retryExhausted".
	Disposition string
	// Message is the task's error text (the cancellation reason for a cancelled task).
	Message string
	Attempt int
}

func (e *TaskFailedError) Error() string {
	return fmt.Sprintf("treadle: task %q %s on attempt %d: %s", e.OperationID, e.Disposition, e.Attempt, e.Message)
}

// Is matches ErrTaskFailed, and ErrCancelled for a cancelled task.
func (e *TaskFailedError) Is(target error) bool {
	return target == ErrTaskFailed || (target == ErrCancelled && e.Disposition == "cancelled")
}
