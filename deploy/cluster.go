package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// Install and Uninstall drive the cluster with its own kubectl, not
// client-go: the root module does not depend on Kubernetes' libraries
// (spec/ is a module of its own for that reason), and kubectl is what an
// operator already has and trusts with their kubeconfig.

// Kubectl runs the cluster's kubectl with one kubeconfig.
type Kubectl struct {
	Path       string // the kubectl binary
	Kubeconfig string
	Context    string // the kubeconfig's context; "" is its current one
	// run replaces executing kubectl (tests).
	run func(ctx context.Context, stdin []byte, args ...string) ([]byte, error)
}

// Run runs kubectl with args, stdin if not nil, and returns its stdout.
func (k Kubectl) Run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	if k.run != nil {
		return k.run(ctx, stdin, args...)
	}
	var full []string
	if k.Kubeconfig != "" {
		full = append(full, "--kubeconfig", k.Kubeconfig)
	}
	if k.Context != "" {
		full = append(full, "--context", k.Context)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, k.Path, full...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Progress is where Install and Uninstall report, a line per event.
type Progress struct {
	w     io.Writer
	start time.Time
}

func newProgress(w io.Writer) *Progress { return &Progress{w: w, start: time.Now()} }

func (p *Progress) step(format string, a ...any) { fmt.Fprintf(p.w, "==> "+format+"\n", a...) }
func (p *Progress) info(format string, a ...any) {
	fmt.Fprintf(p.w, "    [%4.0fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, a...))
}

// Install applies the manifests and waits until the installer is ready on
// every selected node, then returns the nodes that carry the ready label.
func Install(ctx context.Context, k Kubectl, o Options, timeout time.Duration, out io.Writer) ([]string, error) {
	p := newProgress(out)
	text, err := Render(o)
	if err != nil {
		return nil, err
	}
	p.step("applying podvm's manifests (namespace %s, installer DaemonSet, RuntimeClass %s)", o.Namespace, o.RuntimeClass)
	if _, err := k.Run(ctx, []byte(text), "apply", "-f", "-"); err != nil {
		return nil, err
	}
	p.step("waiting for the installer on every node (timeout %s)", timeout)
	if err := waitDaemonSet(ctx, k, o.Namespace, InstallerName, "install", timeout, p); err != nil {
		return nil, fmt.Errorf("%w\nthe installer stays in place: fix the cause on the node and it retries; `podvm deploy uninstall` removes it", err)
	}
	nodes, err := labelledNodes(ctx, k)
	if err != nil {
		return nil, err
	}
	p.step("podvm is ready on %d node(s): %s", len(nodes), strings.Join(nodes, ", "))
	return nodes, nil
}

// Uninstall removes podvm: the RuntimeClass (no new pods), the installer,
// then the cleanup DaemonSet undoes each node's installation, and finally
// everything the manifests created goes. It refuses while podvm pods exist.
func Uninstall(ctx context.Context, k Kubectl, o Options, timeout time.Duration, out io.Writer) error {
	p := newProgress(out)
	if err := o.Validate(); err != nil {
		return err
	}
	pods, err := podsOfClass(ctx, k, o.RuntimeClass)
	if err != nil {
		return err
	}
	if len(pods) > 0 {
		return fmt.Errorf("%d pod(s) still run with runtimeClassName %s: %s: delete them first (their VMs need the files the uninstall removes)",
			len(pods), o.RuntimeClass, strings.Join(pods, ", "))
	}
	p.step("deleting RuntimeClass %s (no new podvm pods)", o.RuntimeClass)
	if _, err := k.Run(ctx, nil, "delete", "runtimeclass", o.RuntimeClass, "--ignore-not-found"); err != nil {
		return err
	}
	p.step("deleting the installer DaemonSet")
	if _, err := k.Run(ctx, nil, "delete", "daemonset", InstallerName, "-n", o.Namespace, "--ignore-not-found",
		"--cascade=foreground", "--wait", "--timeout", timeout.String()); err != nil {
		return err
	}
	full, err := Render(o)
	if err != nil {
		return err
	}
	cleanup, err := RenderCleanup(o)
	if err != nil {
		return err
	}
	// The namespace, ServiceAccount and RBAC again (a partial install may
	// lack them), and the cleanup DaemonSet, which needs them.
	common, err := renderCommon(o)
	if err != nil {
		return err
	}
	p.step("running the cleanup DaemonSet on every node (timeout %s)", timeout)
	if _, err := k.Run(ctx, []byte(common+"\n---\n"+cleanup), "apply", "-f", "-"); err != nil {
		return err
	}
	if err := waitDaemonSet(ctx, k, o.Namespace, CleanupName, "uninstall", timeout, p); err != nil {
		return fmt.Errorf("%w\nthe cleanup DaemonSet stays in place: fix the cause and it retries; run `podvm deploy uninstall` again afterwards", err)
	}
	p.step("deleting the cleanup DaemonSet, RBAC and namespace %s", o.Namespace)
	if _, err := k.Run(ctx, nil, "delete", "daemonset", CleanupName, "-n", o.Namespace, "--ignore-not-found",
		"--cascade=foreground", "--wait", "--timeout", timeout.String()); err != nil {
		return err
	}
	if _, err := k.Run(ctx, []byte(full), "delete", "-f", "-", "--ignore-not-found", "--wait", "--timeout", timeout.String()); err != nil {
		return err
	}
	left, err := labelledNodes(ctx, k)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("nodes still labelled %s=%s: %s: the cleanup did not run there (outside the node selector?); "+
			"run the cleanup on them or remove podvm by hand (docs/deploy.md)", LabelKey, LabelValue, strings.Join(left, ", "))
	}
	p.step("podvm is removed from the cluster")
	return nil
}

func labelledNodes(ctx context.Context, k Kubectl) ([]string, error) {
	b, err := k.Run(ctx, nil, "get", "nodes", "-l", LabelKey+"="+LabelValue, "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		return nil, err
	}
	nodes := strings.Fields(string(b))
	sort.Strings(nodes)
	return nodes, nil
}

// podsOfClass lists namespace/name of the pods of a runtime class that
// have not ended.
func podsOfClass(ctx context.Context, k Kubectl, class string) ([]string, error) {
	b, err := k.Run(ctx, nil, "get", "pods", "--all-namespaces", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name, Namespace string }
			Spec     struct {
				RuntimeClassName string `json:"runtimeClassName"`
			}
			Status struct{ Phase string }
		}
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("kubectl get pods: %w", err)
	}
	var out []string
	for _, p := range list.Items {
		if p.Spec.RuntimeClassName == class && p.Status.Phase != "Succeeded" && p.Status.Phase != "Failed" {
			out = append(out, p.Metadata.Namespace+"/"+p.Metadata.Name)
		}
	}
	return out, nil
}

// daemonSetState is what waitDaemonSet reads of a DaemonSet and its pods.
type daemonSetState struct {
	Generation, ObservedGeneration int64
	Desired, Updated, Ready        int
	// Nodes maps each node with a pod to a one-line description.
	Nodes map[string]string
	// NotReady are the pods not ready, by node.
	NotReady map[string]string
	// Why is the kubelet's message for a pod's waiting container, by node.
	Why map[string]string
}

func (s daemonSetState) done() bool {
	return s.Desired > 0 && s.ObservedGeneration >= s.Generation && s.Updated == s.Desired &&
		s.Ready == s.Desired && len(s.NotReady) == 0 && len(s.Nodes) == s.Desired
}

// readDaemonSet reads the state of DaemonSet ns/name and of its pods
// (selected by app.kubernetes.io/name=name) through kubectl. Pods not yet
// scheduled or being deleted are left out.
func readDaemonSet(ctx context.Context, k Kubectl, ns, name string) (daemonSetState, error) {
	var st daemonSetState
	b, err := k.Run(ctx, nil, "get", "daemonset", name, "-n", ns, "-o", "json")
	if err != nil {
		return st, err
	}
	var ds struct {
		Metadata struct{ Generation int64 }
		Status   struct {
			ObservedGeneration     int64 `json:"observedGeneration"`
			DesiredNumberScheduled int   `json:"desiredNumberScheduled"`
			UpdatedNumberScheduled int   `json:"updatedNumberScheduled"`
			NumberReady            int   `json:"numberReady"`
		}
	}
	if err := json.Unmarshal(b, &ds); err != nil {
		return st, fmt.Errorf("DaemonSet %s: %w", name, err)
	}
	st = daemonSetState{Generation: ds.Metadata.Generation, ObservedGeneration: ds.Status.ObservedGeneration,
		Desired: ds.Status.DesiredNumberScheduled, Updated: ds.Status.UpdatedNumberScheduled, Ready: ds.Status.NumberReady,
		Nodes: map[string]string{}, NotReady: map[string]string{}, Why: map[string]string{}}
	b, err = k.Run(ctx, nil, "get", "pods", "-n", ns, "-l", "app.kubernetes.io/name="+name, "-o", "json")
	if err != nil {
		return st, err
	}
	var pods struct{ Items []installerPod }
	if err := json.Unmarshal(b, &pods); err != nil {
		return st, fmt.Errorf("pods of %s: %w", name, err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" || p.Metadata.DeletionTimestamp != "" {
			continue
		}
		desc, ready, why := p.describe()
		st.Nodes[p.Spec.NodeName] = desc
		if why != "" {
			st.Why[p.Spec.NodeName] = why
		}
		if !ready {
			st.NotReady[p.Spec.NodeName] = p.Metadata.Name
		}
	}
	return st, nil
}

// installerPod is what readDaemonSet reads of one of the DaemonSet's pods.
type installerPod struct {
	Metadata struct {
		Name              string
		DeletionTimestamp string `json:"deletionTimestamp"`
	}
	Spec   struct{ NodeName string }
	Status struct {
		Phase                 string
		InitContainerStatuses []containerStatus `json:"initContainerStatuses"`
		ContainerStatuses     []containerStatus `json:"containerStatuses"`
	}
}

type containerStatus struct {
	Ready        bool
	RestartCount int `json:"restartCount"`
	State        struct {
		Waiting    *struct{ Reason, Message string }
		Terminated *struct {
			ExitCode int `json:"exitCode"`
		}
	}
	LastState struct {
		Terminated *struct {
			ExitCode int `json:"exitCode"`
			Reason   string
		}
	} `json:"lastState"`
}

// describe is the pod's one-line state, whether it is ready, and the
// kubelet's message when a container is waiting for a reason. The node's
// work is the init container's: until it has succeeded, its state is
// the pod's.
func (p installerPod) describe() (desc string, ready bool, why string) {
	desc = "pod " + p.Metadata.Name + " " + p.Status.Phase
	cs := p.Status.ContainerStatuses
	if ics := p.Status.InitContainerStatuses; len(ics) > 0 {
		if t := ics[0].State.Terminated; t == nil || t.ExitCode != 0 {
			cs = ics
		}
	}
	if len(cs) == 0 {
		return desc, false, ""
	}
	c := cs[0]
	switch {
	case c.Ready:
		desc = "done (pod " + p.Metadata.Name + ")"
	case c.State.Waiting != nil && c.State.Waiting.Reason != "":
		desc = fmt.Sprintf("pod %s %s", p.Metadata.Name, c.State.Waiting.Reason)
		why = c.State.Waiting.Message
	default:
		desc = fmt.Sprintf("pod %s running, not done yet", p.Metadata.Name)
	}
	if c.RestartCount > 0 {
		desc += fmt.Sprintf(", %d restart(s)", c.RestartCount)
		if t := c.LastState.Terminated; t != nil {
			desc += fmt.Sprintf(", last exit %d", t.ExitCode)
		}
	}
	return desc, c.Ready, why
}

// waitDaemonSet waits until the DaemonSet's pod is ready on every node it
// selects, printing each node's state when it changes. On timeout it says
// which nodes are not done and shows the end of their logs (those of the
// init container that does the node's work).
func waitDaemonSet(ctx context.Context, k Kubectl, ns, name, container string, timeout time.Duration, p *Progress) error {
	deadline := time.Now().Add(timeout)
	noNodesSince := time.Time{}
	seen := map[string]string{}
	var st daemonSetState
	var err error
	for {
		st, err = readDaemonSet(ctx, k, ns, name)
		if err == nil {
			nodes := make([]string, 0, len(st.Nodes))
			for n := range st.Nodes {
				nodes = append(nodes, n)
			}
			sort.Strings(nodes)
			for _, n := range nodes {
				if seen[n] != st.Nodes[n] {
					p.info("node %s: %s", n, st.Nodes[n])
					seen[n] = st.Nodes[n]
				}
			}
			if st.done() {
				return nil
			}
			if st.Desired == 0 && st.ObservedGeneration >= st.Generation && st.Generation > 0 {
				if noNodesSince.IsZero() {
					noNodesSince = time.Now()
				} else if time.Since(noNodesSince) > 20*time.Second {
					return fmt.Errorf("DaemonSet %s/%s selects no node: no node matches its node selector (podvm deploy --node-selector)", ns, name)
				}
			}
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	if err != nil {
		return fmt.Errorf("DaemonSet %s/%s: %w", ns, name, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s not ready on every node after %s (%d of %d ready)", name, timeout, st.Ready, st.Desired)
	nodes := make([]string, 0, len(st.NotReady))
	for n := range st.NotReady {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		pod := st.NotReady[n]
		fmt.Fprintf(&b, "\nnode %s: %s", n, st.Nodes[n])
		if why := st.Why[n]; why != "" {
			fmt.Fprintf(&b, ": %s", why)
		}
		fmt.Fprintf(&b, "; its log ends (kubectl -n %s logs %s -c %s):\n", ns, pod, container)
		logs, lerr := k.Run(ctx, nil, "logs", "-n", ns, pod, "-c", container, "--tail", "15")
		if lerr == nil && len(bytes.TrimSpace(logs)) == 0 {
			logs, lerr = k.Run(ctx, nil, "logs", "-n", ns, pod, "-c", container, "--tail", "15", "--previous")
		}
		if lerr != nil {
			logs = []byte(lerr.Error())
		}
		b.WriteString("    " + strings.ReplaceAll(strings.TrimSpace(string(logs)), "\n", "\n    "))
	}
	return fmt.Errorf("%s", b.String())
}
