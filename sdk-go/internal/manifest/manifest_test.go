package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/treadle-dev/treadle/sdk-go/internal/wiretest"
)

func shape(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "declared-shape:" + hex.EncodeToString(sum[:])[:16]
}

func TestBuildDeclaresShapePlaceholders(t *testing.T) {
	m := Build(map[string][]string{"billing": {"refund", "charge"}},
		Deployment{Name: "d", BuildID: "b1", ArtifactDigest: "build:b1"}, "0.1.0")
	wf := m.Workflows["billing"]
	if wf.WorkflowVersion != "1" || wf.WorkflowRevision != shape("workflow:billing\ncharge\nrefund") || wf.ContractHash != wf.WorkflowRevision {
		t.Fatalf("workflow %+v", wf)
	}
	act := wf.Activities["charge"]
	if act.ContractHash != shape("activity:billing.charge") || act.ImplementationRevision != act.ContractHash {
		t.Fatalf("activity %+v", act)
	}
	if m.Runtime.Name != "go" || m.ProtocolVersion != 8 || m.ManifestVersion != 1 || m.Deployment.ArtifactDigest != "build:b1" {
		t.Fatalf("manifest %+v", m)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := wiretest.Validate(wiretest.WorkerManifest, data); err != nil {
		t.Fatal(err)
	}
}

// The same names give the Python SDK's placeholders (sdk-python/src/treadle_sdk/manifest.py).
func TestDeclaredShapeMatchesThePythonSDK(t *testing.T) {
	// hashlib.sha256(b"activity:wf.echo").hexdigest()[:16]
	if got, want := DeclaredShape("activity:wf.echo"), shape("activity:wf.echo"); got != want || len(got) != len("declared-shape:")+16 {
		t.Fatalf("%s vs %s", got, want)
	}
}

func TestNamePattern(t *testing.T) {
	for name, ok := range map[string]bool{"a": true, "_x-1": true, "1a": false, "a.b": false, "": false, "é": false} {
		if NamePattern.MatchString(name) != ok {
			t.Errorf("%q: want %v", name, ok)
		}
	}
}
