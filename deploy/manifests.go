package deploy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

// The RuntimeClass's overhead.podFixed: what a podvm pod costs its node
// beyond its containers' requests, charged by the scheduler and added to
// the pod cgroup's limits by the kubelet. Memory must hold the VM's base
// guest RAM (256 MiB, charged to the pod cgroup as the guest touches it)
// plus QEMU's and virtiofsd's own memory; derived from the density
// benchmark (docs/benchmarks.md, `podvm bench density`), the derivation is
// in docs/deploy.md ("Derivation").
const (
	OverheadMemory = "512Mi"
	OverheadCPU    = "250m"
)

// Names of what the manifests create.
const (
	DefaultNamespace = "podvm-system"
	InstallerName    = "podvm-installer"
	CleanupName      = "podvm-cleanup"
	// LabelKey=LabelValue marks a node where the installer finished: the
	// RuntimeClass's node selector, so podvm pods go only there.
	LabelKey   = "podvm.io/runtime"
	LabelValue = "ready"
	// PayloadDir is where the image holds podvm's files (bin/, share/podvm/).
	PayloadDir = "/podvm"
	// hostRootMount is where the installer sees the node's /.
	hostRootMount = "/host"
	// doneFile is written in the installer's container when its work is
	// done; the readiness probe looks for it.
	doneFile = "/run/podvm-deploy/done"
)

// Options shape the manifests.
type Options struct {
	// Image is the installer image (`podvm deploy image`). Required.
	Image           string
	ImagePullPolicy string
	Namespace       string
	// RuntimeClass is the RuntimeClass's name; Handler is its CRI handler,
	// the name of the runtime the installer adds to containerd.
	RuntimeClass string
	Handler      string
	// HostPrefix is where podvm is installed on each node.
	HostPrefix string
	// ContainerdConfig is containerd's main configuration on the nodes; it
	// must import DropInDir (the installer checks, and never edits it).
	ContainerdConfig string
	DropInDir        string
	ContainerdSocket string
	// RestartCommand restarts containerd on a node (run chrooted into the
	// node's /, split on whitespace, no shell). Empty: systemd's
	// `systemctl restart containerd`.
	RestartCommand string
	// APIServer is the API server URL the installer labels nodes through;
	// empty is the in-cluster service address.
	APIServer string
	// NodeSelector picks the nodes to install on.
	NodeSelector map[string]string
	// OverheadMemory and OverheadCPU are the RuntimeClass's overhead.podFixed.
	OverheadMemory string
	OverheadCPU    string
}

// DefaultOptions install on every Linux node with containerd's stock
// layout under systemd.
func DefaultOptions() Options {
	return Options{
		ImagePullPolicy:  "IfNotPresent",
		Namespace:        DefaultNamespace,
		RuntimeClass:     "podvm",
		Handler:          "podvm",
		HostPrefix:       "/opt/podvm",
		ContainerdConfig: "/etc/containerd/config.toml",
		DropInDir:        "/etc/containerd/conf.d",
		ContainerdSocket: "/run/containerd/containerd.sock",
		NodeSelector:     map[string]string{"kubernetes.io/os": "linux"},
		OverheadMemory:   OverheadMemory,
		OverheadCPU:      OverheadCPU,
	}
}

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	quantity    = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$`)
	pullPolicys = map[string]bool{"Always": true, "IfNotPresent": true, "Never": true}
)

// Validate names every option that would make an invalid manifest.
func (o Options) Validate() error {
	var errs []string
	if o.Image == "" {
		errs = append(errs, "no installer image: pass --image (build and push one with `podvm deploy image --push REF`)")
	}
	for what, v := range map[string]string{"namespace": o.Namespace, "runtime class": o.RuntimeClass, "handler": o.Handler} {
		if !dnsLabel.MatchString(v) {
			errs = append(errs, fmt.Sprintf("%s %q is not a DNS label (lower-case letters, digits, '-')", what, v))
		}
	}
	for what, v := range map[string]string{"host prefix": o.HostPrefix, "containerd config": o.ContainerdConfig,
		"containerd drop-in directory": o.DropInDir, "containerd socket": o.ContainerdSocket} {
		if !strings.HasPrefix(v, "/") {
			errs = append(errs, fmt.Sprintf("%s %q is not an absolute path on the node", what, v))
		}
	}
	for what, v := range map[string]string{"overhead memory": o.OverheadMemory, "overhead cpu": o.OverheadCPU} {
		if !quantity.MatchString(v) {
			errs = append(errs, fmt.Sprintf("%s %q is not a Kubernetes quantity (e.g. 512Mi, 250m)", what, v))
		}
	}
	if !pullPolicys[o.ImagePullPolicy] {
		errs = append(errs, fmt.Sprintf("image pull policy %q is not Always, IfNotPresent or Never", o.ImagePullPolicy))
	}
	if len(errs) > 0 {
		return fmt.Errorf("deploy options: %s", strings.Join(errs, "; "))
	}
	return nil
}

// nodeArgs are the flags the DaemonSets pass to `podvm deploy node`.
func (o Options) nodeArgs(verb string) []string {
	args := []string{"deploy", "node", verb,
		"--host-root=" + hostRootMount, "--payload=" + PayloadDir, "--prefix=" + o.HostPrefix,
		"--containerd-config=" + o.ContainerdConfig, "--containerd-dropin-dir=" + o.DropInDir,
		"--containerd-socket=" + o.ContainerdSocket, "--handler=" + o.Handler,
		"--label=" + LabelKey + "=" + LabelValue, "--done-file=" + doneFile}
	if o.RestartCommand != "" {
		args = append(args, "--restart-command="+o.RestartCommand)
	}
	if o.APIServer != "" {
		args = append(args, "--api-server="+o.APIServer)
	}
	return args
}

// q quotes a value as a JSON string, which YAML reads as the same string.
func q(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only strings and string slices are quoted
	}
	return string(b)
}

func sortedPairs(m map[string]string) [][2]string {
	var out [][2]string
	for k, v := range m {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

var manifests = template.Must(template.New("").Funcs(template.FuncMap{"q": q, "pairs": sortedPairs}).Parse(`
{{- define "common"}}
# Rendered by podvm deploy render. The installer DaemonSet puts podvm on every
# selected node and labels it {{.LabelKey}}={{.LabelValue}}; the RuntimeClass sends
# podvm pods only to labelled nodes. Remove with: podvm deploy uninstall.
apiVersion: v1
kind: Namespace
metadata:
  name: {{q .Namespace}}
  labels:
    app.kubernetes.io/part-of: podvm
    # The installer is a privileged pod.
    pod-security.kubernetes.io/enforce: privileged
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: podvm-installer
  namespace: {{q .Namespace}}
  labels:
    app.kubernetes.io/part-of: podvm
---
# The installer labels its own node and nothing else: reading and patching
# nodes is all it may do.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podvm-installer
  labels:
    app.kubernetes.io/part-of: podvm
rules:
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: podvm-installer
  labels:
    app.kubernetes.io/part-of: podvm
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: podvm-installer
subjects:
- kind: ServiceAccount
  name: podvm-installer
  namespace: {{q .Namespace}}
{{- end}}

{{- define "daemonset"}}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{q .Name}}
  namespace: {{q .Namespace}}
  labels:
    app.kubernetes.io/name: {{q .Name}}
    app.kubernetes.io/part-of: podvm
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: {{q .Name}}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{q .Name}}
        app.kubernetes.io/part-of: podvm
    spec:
      serviceAccountName: podvm-installer
      # The node's processes (to find running pod VMs) and network (the API
      # server before the pod network is up).
      hostPID: true
      hostNetwork: true
      terminationGracePeriodSeconds: 5
      nodeSelector:
{{- range pairs .NodeSelector}}
        {{q (index . 0)}}: {{q (index . 1)}}
{{- end}}
      containers:
      - name: {{q .Verb}}
        image: {{q .Image}}
        imagePullPolicy: {{q .ImagePullPolicy}}
        command: [{{q .Command}}]
        args:
{{- range .Args}}
        - {{q .}}
{{- end}}
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        securityContext:
          # Writes under the node's /, restarts containerd there.
          privileged: true
        # Ready once every step is done; the pod then waits, doing nothing.
        readinessProbe:
          exec:
            command: [{{q .Command}}, "deploy", "node", "ready", {{q (print "--done-file=" .DoneFile)}}]
          periodSeconds: 3
        resources:
          requests:
            cpu: 10m
            memory: 64Mi
        volumeMounts:
        # No mount propagation: it needs / to be a shared mount on the node,
        # and the installer needs no mount made after it started.
        - name: host-root
          mountPath: {{q .HostRootMount}}
      volumes:
      - name: host-root
        hostPath:
          path: /
          type: Directory
{{- end}}

{{- define "runtimeclass"}}
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: {{q .RuntimeClass}}
  labels:
    app.kubernetes.io/part-of: podvm
handler: {{q .Handler}}
# What a pod VM costs the node beyond its containers' requests (QEMU,
# virtiofsd, the shim): see docs/deploy.md, "Derivation".
overhead:
  podFixed:
    memory: {{q .OverheadMemory}}
    cpu: {{q .OverheadCPU}}
# Only nodes where the installer finished run podvm pods.
scheduling:
  nodeSelector:
    {{q .LabelKey}}: {{q .LabelValue}}
{{- end}}
`))

type daemonSetData struct {
	Options
	Name, Verb, Command, DoneFile, HostRootMount string
	Args                                         []string
}

func (o Options) daemonSet(name, verb string) daemonSetData {
	return daemonSetData{Options: o, Name: name, Verb: verb, Command: PayloadDir + "/bin/podvm", DoneFile: doneFile,
		HostRootMount: hostRootMount, Args: o.nodeArgs(verb)}
}

type templateData struct {
	Options
	LabelKey, LabelValue string
}

func (o Options) render(name string, data any) (string, error) {
	var b strings.Builder
	if err := manifests.ExecuteTemplate(&b, name, data); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return strings.TrimLeft(b.String(), "\n"), nil
}

// Render returns the manifests that install podvm: namespace, RBAC, the
// installer DaemonSet and the RuntimeClass, as one YAML stream.
func Render(o Options) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	common, err := renderCommon(o)
	if err != nil {
		return "", err
	}
	ds, err := o.render("daemonset", o.daemonSet(InstallerName, "install"))
	if err != nil {
		return "", err
	}
	rc, err := o.render("runtimeclass", templateData{o, LabelKey, LabelValue})
	if err != nil {
		return "", err
	}
	return common + "\n---\n" + ds + "\n---\n" + rc + "\n", nil
}

// renderCommon is the namespace, ServiceAccount and RBAC both
// DaemonSets need.
func renderCommon(o Options) (string, error) {
	return o.render("common", templateData{o, LabelKey, LabelValue})
}

// RenderCleanup returns the cleanup DaemonSet, which undoes the
// installation on each node (`podvm deploy node uninstall`). It needs the
// namespace and ServiceAccount of Render's manifests.
func RenderCleanup(o Options) (string, error) {
	if err := o.Validate(); err != nil {
		return "", err
	}
	ds, err := o.render("daemonset", o.daemonSet(CleanupName, "uninstall"))
	if err != nil {
		return "", err
	}
	return "# Rendered by podvm deploy render --cleanup: removes podvm from every selected node.\n" + ds + "\n", nil
}
