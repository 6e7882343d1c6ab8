// Package wiretest validates what the SDK sends against the protocol's JSON Schemas, for tests.
// It is imported by tests only, so its dependency (a JSON Schema validator) stays out of the
// library's import graph.
package wiretest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/treadle-dev/treadle/sdk-go/internal/wire"
)

// Schema locations.
const (
	Messages       = wire.MessagesSchemaID
	LongPoll       = "https://treadle.dev/schemas/v8/longpoll-queue.json"
	Sessions       = "https://treadle.dev/schemas/v8/worker-sessions.json"
	TaskAPI        = "https://treadle.dev/schemas/v8/task-api.json"
	WorkerManifest = "https://treadle.dev/schemas/v8/worker-manifest.json"
)

// Testdata is the directory of the schema and vector copies that `make gen` writes.
func Testdata() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "wire", "testdata")
}

var (
	once     sync.Once
	compiler *jsonschema.Compiler
	loadErr  error
	mu       sync.Mutex
	compiled = map[string]*jsonschema.Schema{}
)

func load() {
	compiler = jsonschema.NewCompiler()
	for _, name := range wire.SchemaFiles {
		data, err := os.ReadFile(filepath.Join(Testdata(), "schema", "v8", name))
		if err != nil {
			loadErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			loadErr = fmt.Errorf("%s: %w", name, err)
			return
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if err := compiler.AddResource(id, doc); err != nil {
			loadErr = err
			return
		}
	}
}

// Validate checks the JSON text data against the schema at location (a schema $id, optionally
// with a #/$defs/… fragment).
func Validate(location string, data []byte) error {
	once.Do(load)
	if loadErr != nil {
		return loadErr
	}
	mu.Lock()
	schema, ok := compiled[location]
	if !ok {
		var err error
		schema, err = compiler.Compile(location)
		if err != nil {
			mu.Unlock()
			return err
		}
		compiled[location] = schema
	}
	mu.Unlock()
	value, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if err := schema.Validate(value); err != nil {
		return fmt.Errorf("%s does not validate against %s: %w", data, location, err)
	}
	return nil
}
