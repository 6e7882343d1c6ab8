package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Outcome says what a worker does with a server frame (WPARSE-1…7).
type Outcome int

const (
	// Accepted frames are acted on; Message holds the parsed message.
	Accepted Outcome = iota
	// Ignored frames have a type this protocol version does not define for the server (WPARSE-6).
	Ignored
	// Malformed frames are dropped without a reply; Reason says why.
	Malformed
)

func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Ignored:
		return "ignored"
	default:
		return "malformed"
	}
}

// ServerFrame is one parsed server→worker frame.
type ServerFrame struct {
	Outcome Outcome
	// Type is the frame's type when it had a string one.
	Type string
	// Reason explains a malformed frame, in the texts of protocol/README.md §4.4.
	Reason string
	// Message is one of *TaskMessage, *CancelMessage, *ShutdownMessage, *RegisterAckMessage,
	// *RegisterErrorMessage, *ProtocolErrorMessage or *TaskResultAckMessage when Accepted.
	// Unknown fields are dropped.
	Message any
}

type fieldCheck struct {
	name     string
	required bool
	valid    func(json.RawMessage) bool
	reason   string
}

func oneOf(values []string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var s string
		if !isString(raw) || json.Unmarshal(raw, &s) != nil {
			return false
		}
		for _, v := range values {
			if v == s {
				return true
			}
		}
		return false
	}
}

func isProtocolVersion(raw json.RawMessage) bool {
	f, ok := finite(raw)
	return ok && f == ProtocolVersion
}

// serverChecks lists, per server message type, its fields' checks in the order they run.
var serverChecks = map[string][]fieldCheck{
	MessageTypeRegisterAck: {
		{"protocolVersion", true, isProtocolVersion, "registerAck.protocolVersion must be " + strconv.Itoa(ProtocolVersion)},
		{"workerId", true, IsNonEmptyString, "registerAck.workerId must be a non-empty string"},
		{"queue", true, IsNonEmptyString, "registerAck.queue must be a non-empty string"},
		{"concurrency", true, IsFiniteNumber, "registerAck.concurrency must be a finite number"},
		{"acceptedManifestDigest", true, IsNonEmptyString, "registerAck.acceptedManifestDigest must be a non-empty string"},
		{"serverCapabilities", true, arrayOf(IsNonEmptyString), "registerAck.serverCapabilities must be an array of non-empty strings"},
		{"sessionGeneration", true, IsFiniteNumber, "registerAck.sessionGeneration must be a finite number"},
	},
	MessageTypeRegisterError: {
		{"code", true, oneOf(RegisterErrorCodes[:]), "registerError.code is not recognized"},
		{"message", true, isString, "registerError.message must be a string"},
		{"supportedProtocolVersions", true, arrayOf(IsFiniteNumber), "registerError.supportedProtocolVersions is invalid"},
		{"requestedProtocolVersion", false, IsFiniteNumber, "registerError.requestedProtocolVersion must be a finite number"},
	},
	MessageTypeProtocolError: {
		{"code", true, oneOf(ErrorCodes[:]), "protocolError.code is not recognized"},
		{"message", true, isString, "protocolError.message must be a string"},
		{"operationId", false, IsNonEmptyString, "protocolError.operationId must be a non-empty string when present"},
		{"attemptToken", false, IsNonEmptyString, "protocolError.attemptToken must be a non-empty string when present"},
	},
	MessageTypeTask: {
		{"operationId", true, IsNonEmptyString, "task.operationId must be a non-empty string"},
		{"activityName", true, IsNonEmptyString, "task.activityName must be a non-empty string"},
		{"input", true, IsJSONValue, "task.input must be valid JSON"},
		{"attempt", false, IsFiniteNumber, "task.attempt must be a finite number"},
		{"headers", false, isStringMap, "task.headers must be a string map"},
		{"workflowExecutionToken", false, IsNonEmptyString, "task.workflowExecutionToken must be a non-empty string"},
		{"workflowRevision", false, IsNonEmptyString, "task.workflowRevision must be a non-empty string"},
		{"attemptToken", true, IsNonEmptyString, "task.attemptToken must be a non-empty string"},
		{"visibilityTimeout", false, IsFiniteNumber, "task.visibilityTimeout must be a finite number"},
		{"lastHeartbeatDetails", false, IsJSONValue, "task.lastHeartbeatDetails must be valid JSON when present"},
	},
	MessageTypeCancel: {
		{"operationId", true, IsNonEmptyString, "cancel.operationId must be a non-empty string"},
		{"attemptToken", true, IsNonEmptyString, "cancel.attemptToken must be a non-empty string"},
		{"reason", false, IsNonEmptyString, "cancel.reason must be a non-empty string when present"},
	},
	MessageTypeShutdown: {},
	MessageTypeTaskResultAck: {
		{"operationId", true, IsNonEmptyString, "taskResultAck.operationId must be a non-empty string"},
		{"attemptToken", true, IsNonEmptyString, "taskResultAck.attemptToken must be a non-empty string"},
		{"disposition", true, oneOf(Dispositions[:]), `taskResultAck.disposition must be "applied", "duplicate", or "dead-lettered"`},
	},
}

func newServerMessage(kind string) any {
	switch kind {
	case MessageTypeTask:
		return new(TaskMessage)
	case MessageTypeCancel:
		return new(CancelMessage)
	case MessageTypeShutdown:
		return new(ShutdownMessage)
	case MessageTypeRegisterAck:
		return new(RegisterAckMessage)
	case MessageTypeRegisterError:
		return new(RegisterErrorMessage)
	case MessageTypeProtocolError:
		return new(ProtocolErrorMessage)
	default:
		return new(TaskResultAckMessage)
	}
}

// ParseServerFrame reads one server→worker frame as a worker must (protocol/README.md §4.4):
// unknown types and worker→server types are ignored, a known type with a bad field is
// malformed, and unknown fields are dropped.
func ParseServerFrame(data []byte) ServerFrame {
	var fields map[string]json.RawMessage
	if !json.Valid(data) {
		return ServerFrame{Outcome: Malformed, Reason: "Server protocol message must be valid JSON"}
	}
	if json.Unmarshal(data, &fields) != nil || fields == nil {
		return ServerFrame{Outcome: Malformed, Reason: "Server protocol message must be a JSON object"}
	}
	var kind string
	if raw, ok := fields["type"]; !ok || !isString(raw) || json.Unmarshal(raw, &kind) != nil {
		return ServerFrame{Outcome: Malformed, Reason: "Server protocol message.type must be a string"}
	}
	checks, known := serverChecks[kind]
	if !known {
		return ServerFrame{Outcome: Ignored, Type: kind}
	}
	// Only the exact, known keys reach the struct: encoding/json would otherwise also match
	// keys case-insensitively.
	kept := map[string]json.RawMessage{"type": fields["type"]}
	for _, check := range checks {
		raw, present := fields[check.name]
		if !present {
			if check.required {
				return ServerFrame{Outcome: Malformed, Type: kind, Reason: check.reason}
			}
			continue
		}
		if !check.valid(raw) {
			return ServerFrame{Outcome: Malformed, Type: kind, Reason: check.reason}
		}
		kept[check.name] = raw
	}
	message := newServerMessage(kind)
	data, err := json.Marshal(kept)
	if err == nil {
		err = json.Unmarshal(data, message)
	}
	if err != nil {
		return ServerFrame{Outcome: Malformed, Type: kind, Reason: "Server protocol message must be valid JSON"}
	}
	return ServerFrame{Outcome: Accepted, Type: kind, Message: message}
}

// IsNonEmptyString reports whether raw is a JSON string other than "".
func IsNonEmptyString(raw json.RawMessage) bool {
	var s string
	return isString(raw) && json.Unmarshal(raw, &s) == nil && s != ""
}

func isString(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) >= 2 && raw[0] == '"'
}

// IsFiniteNumber reports whether raw is a JSON number whose double is finite (PARSE-12).
func IsFiniteNumber(raw json.RawMessage) bool {
	_, ok := finite(raw)
	return ok
}

func finite(raw json.RawMessage) (float64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}

func arrayOf(item func(json.RawMessage) bool) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var items []json.RawMessage
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			return false
		}
		for _, v := range items {
			if !item(v) {
				return false
			}
		}
		return true
	}
}

func isStringMap(raw json.RawMessage) bool {
	var members map[string]json.RawMessage
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &members) != nil {
		return false
	}
	for _, v := range members {
		if !isString(v) {
			return false
		}
	}
	return true
}

// IsJSONValue reports whether raw is a JSON value with only finite numbers (PARSE-16).
func IsJSONValue(raw json.RawMessage) bool {
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.UseNumber()
	var value any
	if decoder.Decode(&value) != nil || decoder.More() {
		return false
	}
	return allFinite(value)
}

func allFinite(value any) bool {
	switch v := value.(type) {
	case json.Number:
		_, err := strconv.ParseFloat(string(v), 64)
		return err == nil
	case []any:
		for _, item := range v {
			if !allFinite(item) {
				return false
			}
		}
	case map[string]any:
		for _, item := range v {
			if !allFinite(item) {
				return false
			}
		}
	}
	return true
}
