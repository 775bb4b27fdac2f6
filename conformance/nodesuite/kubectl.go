package nodesuite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
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
