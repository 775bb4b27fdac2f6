package nodesuite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Kubectl runs kubectl against one cluster.
type Kubectl struct {
	Binary, Kubeconfig string
}

func (k Kubectl) run(ctx context.Context, stdin string, args ...string) (string, error) {
	args = append([]string{"--kubeconfig", k.Kubeconfig}, args...)
	cmd := exec.CommandContext(ctx, k.Binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args[2:], " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// LookupClass reads the runtime class name from the cluster.
func (k Kubectl) LookupClass(ctx context.Context, name string) (Class, error) {
	out, err := k.run(ctx, "", "get", "runtimeclass", name, "-o", "json")
	if err != nil {
		return Class{}, fmt.Errorf("runtime class %q: %w", name, err)
	}
	return parseClass(name, []byte(out))
}

func parseClass(name string, b []byte) (Class, error) {
	var rc struct {
		Overhead struct {
			PodFixed map[string]string `json:"podFixed"`
		} `json:"overhead"`
	}
	if err := json.Unmarshal(b, &rc); err != nil {
		return Class{}, fmt.Errorf("runtime class %q: %w", name, err)
	}
	return Class{Name: name, Overhead: rc.Overhead.PodFixed}, nil
}

// Install applies the policy and binding for c.
func (k Kubectl) Install(ctx context.Context, c Class) error {
	if _, err := k.run(ctx, Manifest(c), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("install admission policy for %q: %w", c.Name, err)
	}
	return nil
}

// Remove deletes the policy and binding for class, if present.
func (k Kubectl) Remove(ctx context.Context, class string) error {
	name := PolicyName(class)
	if _, err := k.run(ctx, "", "delete", "--ignore-not-found", "--wait=false",
		"mutatingadmissionpolicybinding.admissionregistration.k8s.io/"+name,
		"mutatingadmissionpolicy.admissionregistration.k8s.io/"+name); err != nil {
		return fmt.Errorf("remove admission policy for %q: %w", class, err)
	}
	return nil
}

// probeNamespace names the namespace where Verify asks the API server
// what the policy does to a pod; it carries the label the binding selects.
// Each Verify makes its own (generateName): the namespace of the class
// before may still be terminating when the next class is verified.
const probeNamespace = "podvm-node-conformance-probe-"

// probePod is a pod in namespace ns as the e2e specs create them: no
// class, no host network.
func probePod(ns string) string {
	return `apiVersion: v1
kind: Pod
metadata:
  name: probe
  namespace: ` + ns + `
spec:
  containers:
  - name: c
    image: registry.k8s.io/pause:3.10.2
`
}

// Verify waits until the policy for c puts a pod on c (the API server
// loads a new policy within seconds): a server-side dry run of a pod in a
// namespace the binding selects must come back with c's runtimeClassName.
// Without this a policy the API server ignores would make every class
// look like the default one.
func (k Kubectl) Verify(ctx context.Context, c Class) error {
	manifest := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  generateName: %s\n  labels:\n    %s: probe\n", probeNamespace, E2ENamespaceLabel)
	out, err := k.run(ctx, manifest, "create", "-f", "-", "-o", "jsonpath={.metadata.name}")
	if err != nil {
		return fmt.Errorf("verify admission policy for %q: %w", c.Name, err)
	}
	ns := strings.TrimSpace(out)
	defer k.run(context.WithoutCancel(ctx), "", "delete", "namespace", ns, "--wait=false", "--ignore-not-found")
	var got string
	for range 30 {
		out, err := k.run(ctx, probePod(ns), "create", "--dry-run=server", "-f", "-", "-o", "jsonpath={.spec.runtimeClassName}")
		if err != nil {
			return fmt.Errorf("verify admission policy for %q: %w", c.Name, err)
		}
		if got = strings.TrimSpace(out); got == c.Name {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("admission policy for %q not in effect after 30 s: a pod in a selected namespace got runtimeClassName %q (is the MutatingAdmissionPolicy admission plugin enabled?)", c.Name, got)
}
