package wire_test

import (
	"encoding/base64"
	"encoding/json"
	"go/format"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/treadle-dev/treadle/sdk-go/internal/wire"
	"github.com/treadle-dev/treadle/sdk-go/internal/wiretest"
)

type serverVector struct {
	ID     string          `json:"id"`
	Frame  json.RawMessage `json:"frame"`
	Text   *string         `json:"text"`
	Base64 *string         `json:"base64"`
	Expect struct {
		Outcome string          `json:"outcome"`
		Message json.RawMessage `json:"message"`
		Reason  string          `json:"reason"`
	} `json:"expect"`
}

func (v serverVector) input(t *testing.T) []byte {
	switch {
	case v.Text != nil:
		return []byte(*v.Text)
	case v.Base64 != nil:
		data, err := base64.StdEncoding.DecodeString(*v.Base64)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	return v.Frame
}

func normalize(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	return v
}

// Every server→worker vector is accepted, ignored or malformed exactly as it says (VEC-4).
func TestServerFrameVectors(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(wiretest.Testdata(), "vectors", "v8", "server-frames.json"))
	if err != nil {
		t.Fatal(err)
	}
	var suite struct {
		Kind    string         `json:"kind"`
		Vectors []serverVector `json:"vectors"`
	}
	if err := json.Unmarshal(data, &suite); err != nil {
		t.Fatal(err)
	}
	if suite.Kind != "server-frame" || len(suite.Vectors) == 0 {
		t.Fatalf("unexpected suite %q with %d vectors", suite.Kind, len(suite.Vectors))
	}
	for _, v := range suite.Vectors {
		t.Run(v.ID, func(t *testing.T) {
			got := wire.ParseServerFrame(v.input(t))
			if got.Outcome.String() != v.Expect.Outcome {
				t.Fatalf("outcome %s (%s), want %s", got.Outcome, got.Reason, v.Expect.Outcome)
			}
			switch got.Outcome {
			case wire.Malformed:
				if got.Reason != v.Expect.Reason {
					t.Fatalf("reason %q, want %q", got.Reason, v.Expect.Reason)
				}
			case wire.Accepted:
				encoded, err := json.Marshal(got.Message)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(normalize(t, encoded), normalize(t, v.Expect.Message)) {
					t.Fatalf("message %s, want %s", encoded, v.Expect.Message)
				}
				// What a worker keeps of an accepted frame is itself a valid message.
				if err := wiretest.Validate(wiretest.Messages, encoded); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestParseServerFrameEdgeCases(t *testing.T) {
	cases := map[string]struct {
		frame   string
		outcome wire.Outcome
		reason  string
	}{
		"null":                 {`null`, wire.Malformed, "Server protocol message must be a JSON object"},
		"trailing text":        {`{"type":"shutdown"} x`, wire.Malformed, "Server protocol message must be valid JSON"},
		"infinite attempt":     {`{"type":"task","operationId":"o","activityName":"a","input":1,"attempt":1e400,"attemptToken":"t"}`, wire.Malformed, "task.attempt must be a finite number"},
		"infinite input":       {`{"type":"task","operationId":"o","activityName":"a","input":[1e400],"attemptToken":"t"}`, wire.Malformed, "task.input must be valid JSON"},
		"null revision":        {`{"type":"task","operationId":"o","activityName":"a","input":1,"attemptToken":"t","workflowRevision":null}`, wire.Malformed, "task.workflowRevision must be a non-empty string"},
		"case-insensitive key": {`{"type":"cancel","operationId":"o","attemptToken":"t","REASON":"x"}`, wire.Accepted, ""},
		"ack version 8.0":      {`{"type":"registerAck","protocolVersion":8.0,"workerId":"w","queue":"q","concurrency":1,"acceptedManifestDigest":"d","serverCapabilities":[],"sessionGeneration":1}`, wire.Accepted, ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := wire.ParseServerFrame([]byte(c.frame))
			if got.Outcome != c.outcome || got.Reason != c.reason {
				t.Fatalf("got %s %q, want %s %q", got.Outcome, got.Reason, c.outcome, c.reason)
			}
		})
	}
	got := wire.ParseServerFrame([]byte(`{"type":"cancel","operationId":"o","attemptToken":"t","REASON":"x"}`))
	if reason := got.Message.(*wire.CancelMessage).Reason; reason != nil {
		t.Fatalf("a key matched case-insensitively: reason %q", *reason)
	}
}

// The generator writes gofmt-formatted code (it needs no Go toolchain to do so).
func TestGeneratedCodeIsFormatted(t *testing.T) {
	data, err := os.ReadFile("wire_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	formatted, err := format.Source(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(formatted) != string(data) {
		t.Fatal("wire_gen.go is not gofmt-formatted: fix protocol/tools/gen.py")
	}
}

// Every frame shape the SDK builds from the generated types validates against the schema.
func TestGeneratedTypesEncodeValidFrames(t *testing.T) {
	revision := "rev-1"
	reason := "Task cancelled"
	yes := true
	concurrency := 10.0
	frames := []any{
		wire.HeartbeatMessage{Type: wire.MessageTypeHeartbeat, WorkerID: "w1"},
		wire.ActivityHeartbeatMessage{Type: wire.MessageTypeActivityHeartbeat, WorkerID: "w1", OperationID: "o", AttemptToken: "t"},
		wire.ActivityHeartbeatMessage{Type: wire.MessageTypeActivityHeartbeat, WorkerID: "w1", OperationID: "o", AttemptToken: "t", Details: json.RawMessage(`null`)},
		wire.TaskResultMessage{Type: wire.MessageTypeTaskResult, OperationID: "o", AttemptToken: "t", Status: wire.ResultStatusCompleted, Value: json.RawMessage(`null`)},
		wire.TaskResultMessage{Type: wire.MessageTypeTaskResult, OperationID: "o", AttemptToken: "t", Status: wire.ResultStatusFailed, Error: &reason, WorkflowRevision: &revision},
		wire.TaskResultMessage{Type: wire.MessageTypeTaskResult, OperationID: "o", AttemptToken: "t", Status: wire.ResultStatusCancelled, Error: &reason, Cancelled: &yes},
		wire.RegisterMessage{Type: wire.MessageTypeRegister, ProtocolVersion: wire.ProtocolVersion, WorkerID: "w1", Manifest: json.RawMessage(`{}`), Concurrency: &concurrency},
	}
	for _, frame := range frames {
		data, err := json.Marshal(frame)
		if err != nil {
			t.Fatal(err)
		}
		if err := wiretest.Validate(wiretest.Messages, data); err != nil {
			t.Error(err)
		}
	}
}
