package cluster

import (
	"fmt"
	"strings"
)

// RuntimeClass is a node.k8s.io/v1 RuntimeClass a provider declares.
type RuntimeClass struct {
	Name, Handler string
	// OverheadMemory and OverheadCPU are its overhead.podFixed; with both
	// empty it has no overhead.
	OverheadMemory, OverheadCPU string
}

// RuntimeClassesManifest is classes as one YAML stream, in their order,
// after header written as comment lines ("" for none).
func RuntimeClassesManifest(header string, classes ...RuntimeClass) string {
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(header, "\n"), "\n") {
		if line != "" {
			b.WriteString("# " + line + "\n")
		}
	}
	for i, c := range classes {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: %s\nhandler: %s\n", c.Name, c.Handler)
		if c.OverheadMemory == "" && c.OverheadCPU == "" {
			continue
		}
		b.WriteString("overhead:\n  podFixed:\n")
		if c.OverheadMemory != "" {
			fmt.Fprintf(&b, "    memory: %s\n", c.OverheadMemory)
		}
		if c.OverheadCPU != "" {
			fmt.Fprintf(&b, "    cpu: %s\n", c.OverheadCPU)
		}
	}
	return b.String()
}

// Handlers maps each of classes to its CRI handler, as
// Cluster.RuntimeClasses does.
func Handlers(classes []RuntimeClass) map[string]string {
	out := make(map[string]string, len(classes))
	for _, c := range classes {
		out[c.Name] = c.Handler
	}
	return out
}
