// Package manifest builds the worker manifest from the registered activities (SDK-1).
//
// The shape is the protocol's (protocol/README.md §5.2). Where the application gives no hashes
// of its own, each workflow and activity gets a "declared-shape:" placeholder derived only from
// the registered names, as Weft's SDK does, so the Python and Go SDKs send the same manifest
// for the same names and deployment, apart from sdkVersion and runtime.
package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"runtime"
	"sort"
	"strings"

	"github.com/treadle-dev/treadle/sdk-go/internal/wire"
)

// WorkflowVersion is the workflowVersion of every workflow the SDK declares.
const WorkflowVersion = "1"

// NamePattern is the grammar of workflow and activity names (MANIFEST-4).
var NamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// Deployment is the manifest's deployment block.
type Deployment struct {
	Name, BuildID, ArtifactDigest string
}

// DeclaredShape is "declared-shape:" followed by the first 16 hex digits of SHA-256(text).
func DeclaredShape(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "declared-shape:" + hex.EncodeToString(sum[:])[:16]
}

// Build is the manifest for workflows (workflow name → activity names) under deployment.
func Build(workflows map[string][]string, deployment Deployment, sdkVersion string) wire.Manifest {
	declared := make(map[string]wire.ManifestWorkflow, len(workflows))
	for workflow, names := range workflows {
		sorted := append([]string(nil), names...)
		sort.Strings(sorted)
		var text strings.Builder
		text.WriteString("workflow:" + workflow)
		activities := make(map[string]wire.ManifestActivity, len(sorted))
		for _, name := range sorted {
			text.WriteString("\n" + name)
			shape := DeclaredShape("activity:" + workflow + "." + name)
			activities[name] = wire.ManifestActivity{ContractHash: shape, ImplementationRevision: shape}
		}
		shape := DeclaredShape(text.String())
		declared[workflow] = wire.ManifestWorkflow{
			WorkflowVersion:  WorkflowVersion,
			WorkflowRevision: shape,
			ContractHash:     shape,
			Activities:       activities,
		}
	}
	return wire.Manifest{
		ManifestVersion: 1,
		ProtocolVersion: wire.ProtocolVersion,
		SDKVersion:      sdkVersion,
		Runtime:         wire.ManifestRuntime{Name: "go", Version: strings.TrimPrefix(runtime.Version(), "go")},
		Deployment: wire.ManifestDeployment{
			Name:           deployment.Name,
			BuildID:        deployment.BuildID,
			ArtifactDigest: deployment.ArtifactDigest,
		},
		Workflows:    declared,
		Capabilities: map[string]json.RawMessage{},
	}
}
