// Package cluster defines where the conformance harness runs its specs: a
// Provider brings a Kubernetes cluster up and down, and tells how it is
// doing. The providers are local (host processes on this machine), kind
// (Docker containers on a machine with hardware KVM) and existing (any
// kubeconfig, for vendors validating their own cluster and runtime class).
package cluster

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Cluster is what the harness needs to know about a running cluster.
type Cluster struct {
	// Kubeconfig is the admin kubeconfig file.
	Kubeconfig string
	// RuntimeClasses maps the name of each RuntimeClass the cluster offers
	// for testing to its CRI handler ("podvm" -> "podvm").
	RuntimeClasses map[string]string
	// CRIEndpoint is the node's CRI socket when the harness can reach it
	// (local provider only), for crictl-based checks; empty otherwise.
	CRIEndpoint string
	// LogDir holds the logs of the cluster's own processes, if any.
	LogDir string
	// CacheClasses are the runtime classes whose pod VMs must come from
	// the VM cache (factory.mode = "cache"), and ShimLog the file where
	// the node's podvm shims log (containerd's log): after each spec run
	// on such a class the harness checks there that its pods took cached
	// VMs. Empty when the harness cannot read the node's logs.
	CacheClasses []string
	ShimLog      string
	// TemplateClasses are the runtime classes whose pod VMs must be clones
	// of a VM template (factory.mode = "template"), checked the same way.
	TemplateClasses []string
	// FactoryReady, when set, waits until the VM factory of a class can
	// serve a spec run (for a cache class: its pool full) and returns nil
	// at once for a class without one. The harness calls it before a
	// factory class's spec run and before re-running specs whose pods
	// found no VM ready.
	FactoryReady func(ctx context.Context, class string) error
}

// Provider creates, inspects and removes one kind of cluster.
type Provider interface {
	// Name is the provider's name as the CLI takes it.
	Name() string
	// Up brings the cluster up (or confirms an existing one is usable) and
	// returns it. Progress goes to out.
	Up(ctx context.Context, out io.Writer) (*Cluster, error)
	// Down removes what Up created, leaving nothing running or mounted.
	Down(ctx context.Context, out io.Writer) error
	// Status reports each component; Healthy is false when one is down.
	Status(ctx context.Context) (*Status, error)
}

// Status is a provider's report on its cluster.
type Status struct {
	Provider   string
	Components []Component
}

// Component is one process or service of a cluster.
type Component struct {
	Name   string
	PID    int // 0 when not a process we run
	Up     bool
	Detail string // why it is down, or where it listens
	Log    string // its log file, if any
}

// Healthy tells whether every component is up.
func (s *Status) Healthy() bool {
	for _, c := range s.Components {
		if !c.Up {
			return false
		}
	}
	return len(s.Components) > 0
}

// String is a table of the components, one per line.
func (s *Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "provider %s\n", s.Provider)
	for _, c := range s.Components {
		state := "up"
		if !c.Up {
			state = "DOWN"
		}
		fmt.Fprintf(&b, "  %-24s %-5s", c.Name, state)
		if c.PID != 0 {
			fmt.Fprintf(&b, " pid %-7d", c.PID)
		}
		if c.Detail != "" {
			fmt.Fprintf(&b, " %s", c.Detail)
		}
		if !c.Up && c.Log != "" {
			fmt.Fprintf(&b, " (log: %s)", c.Log)
		}
		b.WriteString("\n")
	}
	return b.String()
}
