// Package existing is the provider for a cluster someone else runs: any
// kubeconfig and the runtime classes to test on it, so a vendor can
// validate their own cluster and runtime (podvm, Kata, ...). It never
// changes the cluster: Up only checks that it is reachable and offers the
// classes, and Down does nothing.
package existing

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/podvm/podvm/conformance/cluster"
)

// Provider checks and describes an existing cluster.
type Provider struct {
	Kubeconfig string
	Kubectl    string
	// Classes are the RuntimeClass names to test ("" is the cluster's
	// default runtime and needs no RuntimeClass object).
	Classes []string
}

// Name implements cluster.Provider.
func (p *Provider) Name() string { return "existing" }

func (p *Provider) kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.Kubectl, append([]string{"--kubeconfig", p.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// Up implements cluster.Provider: it checks, and changes nothing.
func (p *Provider) Up(ctx context.Context, out io.Writer) (*cluster.Cluster, error) {
	if _, err := os.Stat(p.Kubeconfig); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w (give --kubeconfig)", err)
	}
	if _, err := exec.LookPath(p.Kubectl); err != nil {
		return nil, fmt.Errorf("kubectl %q not found: put kubectl on PATH or give --kubectl", p.Kubectl)
	}
	if _, err := p.kubectl(ctx, "get", "--raw", "/readyz"); err != nil {
		return nil, fmt.Errorf("the cluster in %s is not reachable or not ready: %w", p.Kubeconfig, err)
	}
	c := &cluster.Cluster{Kubeconfig: p.Kubeconfig, RuntimeClasses: map[string]string{}}
	for _, class := range p.Classes {
		if class == "" {
			continue
		}
		handler, err := p.kubectl(ctx, "get", "runtimeclass", class, "-o", "jsonpath={.handler}")
		if err != nil {
			return nil, fmt.Errorf("runtime class %q: %w", class, err)
		}
		c.RuntimeClasses[class] = handler
		fmt.Fprintf(out, "==> runtime class %s: handler %s\n", class, handler)
	}
	return c, nil
}

// Down implements cluster.Provider: the cluster is not ours to remove.
func (p *Provider) Down(ctx context.Context, out io.Writer) error {
	fmt.Fprintln(out, "==> existing cluster: nothing to take down")
	return nil
}

// Status implements cluster.Provider: the API server and each node.
func (p *Provider) Status(ctx context.Context) (*cluster.Status, error) {
	st := &cluster.Status{Provider: "existing"}
	_, err := p.kubectl(ctx, "get", "--raw", "/readyz")
	api := cluster.Component{Name: "kube-apiserver", Up: err == nil, Detail: "ready"}
	if err != nil {
		api.Detail = err.Error()
	}
	st.Components = append(st.Components, api)
	if err != nil {
		return st, nil
	}
	nodes, err := p.kubectl(ctx, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			st.Components = append(st.Components, cluster.Component{Name: "node " + f[0], Up: f[1] == "True", Detail: "Ready=" + f[1]})
		}
	}
	return st, nil
}

var _ cluster.Provider = (*Provider)(nil)
