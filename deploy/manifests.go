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
	// PolicyName names the ValidatingAdmissionPolicy (and its binding)
	// that confines the installer's token to its own node's label.
	PolicyName = "podvm-installer-own-node-label"
	// LabelKey=LabelValue marks a node where the installer finished: the
	// RuntimeClass's node selector, so podvm pods go only there.
	LabelKey   = "podvm.io/runtime"
	LabelValue = "ready"
	// PartOfLabel is on every object the manifests create.
	PartOfLabel = "app.kubernetes.io/part-of=podvm"
	// OptionsAnnotation on the namespace records the Options of the
	// install (JSON), so that `podvm deploy uninstall` finds what to
	// remove from the kubeconfig alone (Installed).
	OptionsAnnotation = "podvm.io/install-options"
	// PayloadDir is where the image holds podvm's files (bin/, share/podvm/).
	PayloadDir = "/podvm"
	// hostRootMount is where the installer sees the node's /.
	hostRootMount = "/host"
	// tokenDir is where the installer's init container, and only it, gets
	// its ServiceAccount token and the cluster's CA.
	tokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// idleUID runs the unprivileged container that stays once a node is
	// done: no user of the node, no root.
	idleUID = 65532
)

// Options shape the manifests.
// Its JSON is the record of an install (OptionsAnnotation).
type Options struct {
	// Image is the installer image (`podvm deploy image`). Required.
	Image           string `json:"image"`
	ImagePullPolicy string `json:"imagePullPolicy"`
	Namespace       string `json:"namespace"`
	// RuntimeClass is the RuntimeClass's name; Handler is its CRI handler,
	// the name of the runtime the installer adds to containerd.
	RuntimeClass string `json:"runtimeClass"`
	Handler      string `json:"handler"`
	// HostPrefix is where podvm is installed on each node.
	HostPrefix string `json:"hostPrefix"`
	// ContainerdConfig is containerd's main configuration on the nodes; it
	// must import DropInDir (the installer checks, and never edits it).
	ContainerdConfig string `json:"containerdConfig"`
	DropInDir        string `json:"containerdDropInDir"`
	ContainerdSocket string `json:"containerdSocket"`
	// RestartCommand restarts containerd on a node (run chrooted into the
	// node's /, split on whitespace, no shell). Empty: systemd's
	// `systemctl restart containerd`.
	RestartCommand string `json:"restartCommand,omitempty"`
	// FactoryCommand starts and stops the VM cache's daemon on a node
	// without systemd (node.Options.FactoryCommand; split on whitespace).
	// Empty: a systemd unit, when the node's configuration has
	// factory.mode = "cache".
	FactoryCommand string `json:"factoryCommand,omitempty"`
	// APIServer is the API server URL the installer labels nodes through;
	// empty is the in-cluster service address.
	APIServer string `json:"apiServer,omitempty"`
	// NodeSelector picks the nodes to install on.
	NodeSelector map[string]string `json:"nodeSelector"`
	// OverheadMemory and OverheadCPU are the RuntimeClass's overhead.podFixed.
	OverheadMemory string `json:"overheadMemory"`
	OverheadCPU    string `json:"overheadCPU"`
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
		"--label=" + LabelKey + "=" + LabelValue, "--exit"}
	if o.RestartCommand != "" {
		args = append(args, "--restart-command="+o.RestartCommand)
	}
	if o.FactoryCommand != "" {
		args = append(args, "--factory-command="+o.FactoryCommand)
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
{{- define "clusterMeta"}}
metadata:
  name: {{q .}}
  labels:
    app.kubernetes.io/part-of: podvm
{{- end}}
{{- define "common"}}
# Rendered by podvm deploy render. The installer DaemonSet puts podvm on every
# selected node and labels it {{.LabelKey}}={{.LabelValue}}; the RuntimeClass sends
# podvm pods only to labelled nodes. Remove with: podvm deploy uninstall.
apiVersion: v1
kind: Namespace
metadata:
  name: {{q .Namespace}}
  annotations:
    # What was installed, for podvm deploy uninstall.
    {{.OptionsAnnotation}}: {{q .Record}}
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
kind: ClusterRole{{template "clusterMeta" "podvm-installer"}}
rules:
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding{{template "clusterMeta" "podvm-installer"}}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: podvm-installer
subjects:
- kind: ServiceAccount
  name: podvm-installer
  namespace: {{q .Namespace}}
---
# RBAC cannot say which node, nor which field: this policy lets the
# installer's token change only the node its pod runs on (the node-name
# claim of a token bound to a pod) and only the label {{.LabelKey}}, as the
# NodeRestriction admission plugin does for kubelets. A token without the
# claim (not bound to a pod) is denied.
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy{{template "clusterMeta" .PolicyName}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["*"]
      operations: ["CREATE", "UPDATE", "DELETE"]
      resources: ["nodes", "nodes/*"]
  matchConditions:
  - name: installer
    expression: request.userInfo.username == 'system:serviceaccount:{{.Namespace}}:podvm-installer'
  variables:
  - name: key
    expression: "'{{.LabelKey}}'"
  - name: nodeClaim
    expression: "'authentication.kubernetes.io/node-name'"
  # reason Forbidden: a refusal is a 403, as RBAC's, not 422 Invalid.
  validations:
  - expression: request.operation == 'UPDATE' && (!has(request.subResource) || request.subResource == '')
    message: the podvm installer may only update a node's labels
    reason: Forbidden
  - expression: >-
      has(request.userInfo.extra) && variables.nodeClaim in request.userInfo.extra &&
      request.userInfo.extra[variables.nodeClaim] == [object.metadata.name]
    message: the podvm installer may only change the node its pod runs on (token bound to a pod on that node)
    reason: Forbidden
  - expression: >-
      (!has(object.metadata.labels) || object.metadata.labels.all(k, k == variables.key ||
      (has(oldObject.metadata.labels) && k in oldObject.metadata.labels && oldObject.metadata.labels[k] == object.metadata.labels[k])))
      && (!has(oldObject.metadata.labels) || oldObject.metadata.labels.all(k, k == variables.key ||
      (has(object.metadata.labels) && k in object.metadata.labels)))
    message: the podvm installer may only change the label {{.LabelKey}}
    reason: Forbidden
  - expression: >-
      !has(object.metadata.labels) || !(variables.key in object.metadata.labels) ||
      object.metadata.labels[variables.key] == '{{.LabelValue}}'
    message: the podvm installer may only set {{.LabelKey}}={{.LabelValue}} or remove it
    reason: Forbidden
  - expression: >-
      true
{{- range .FixedFields}}
      && has(object.{{.}}) == has(oldObject.{{.}}) && (!has(object.{{.}}) || object.{{.}} == oldObject.{{.}})
{{- end}}
    message: the podvm installer may not change a node's spec (taints, unschedulable), annotations, finalizers or owners
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding{{template "clusterMeta" .PolicyName}}
spec:
  policyName: {{q .PolicyName}}
  validationActions: [Deny]
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
      annotations:
        # kubectl logs shows the node installer's log.
        kubectl.kubernetes.io/default-container: {{q .Verb}}
    spec:
      serviceAccountName: podvm-installer
      # The token goes only to the init container, as a projected volume.
      automountServiceAccountToken: false
      # The API server before the pod network is up.
      hostNetwork: true
{{- if .HostPID}}
      # The restart command signals and starts containerd itself: only
      # the node's PID namespace lets the new containerd outlive the pod.
      hostPID: true
{{- end}}
      terminationGracePeriodSeconds: 5
      nodeSelector:
{{- range pairs .NodeSelector}}
        {{q (index . 0)}}: {{q (index . 1)}}
{{- end}}
      # The privileged work runs once, to completion, in the init
      # container; what stays is an unprivileged container that holds the
      # pod Ready, with no token and nothing of the node.
      initContainers:
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
        resources:
          requests:
            cpu: 10m
            memory: 64Mi
        volumeMounts:
        # No mount propagation: it needs / to be a shared mount on the node,
        # and the installer needs no mount made after it started.
        - name: host-root
          mountPath: {{q .HostRootMount}}
        - name: installer-token
          mountPath: {{q .TokenDir}}
          readOnly: true
      containers:
      - name: done
        image: {{q .Image}}
        imagePullPolicy: {{q .ImagePullPolicy}}
        command: [{{q .Command}}, "deploy", "node", "wait"]
        securityContext:
          privileged: false
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: {{.IdleUID}}
          runAsGroup: {{.IdleUID}}
          capabilities:
            drop: ["ALL"]
          seccompProfile:
            type: RuntimeDefault
        resources:
          requests:
            cpu: 1m
            memory: 16Mi
      volumes:
      - name: host-root
        hostPath:
          path: /
          type: Directory
      # A token bound to this pod (so it names the pod's node, which the
      # ValidatingAdmissionPolicy checks) and the cluster's CA.
      - name: installer-token
        projected:
          sources:
          - serviceAccountToken:
              path: token
              expirationSeconds: 3600
          - configMap:
              name: kube-root-ca.crt
              items:
              - key: ca.crt
                path: ca.crt
{{- end}}

{{- define "runtimeclass"}}
apiVersion: node.k8s.io/v1
kind: RuntimeClass{{template "clusterMeta" .RuntimeClass}}
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
	Name, Verb, Command, HostRootMount, TokenDir string
	Args                                         []string
	IdleUID                                      int
	HostPID                                      bool
}

// daemonSet is the installer (verb install) or cleanup (uninstall)
// DaemonSet. Its pod joins the node's PID namespace only with a restart
// (or factory) command: systemd restarts containerd itself, while a
// command such as the local cluster's signals and starts it, which needs
// the node's pids and a new process that does not die with the pod's
// namespace.
func (o Options) daemonSet(name, verb string) daemonSetData {
	return daemonSetData{Options: o, Name: name, Verb: verb, Command: PayloadDir + "/bin/podvm",
		HostRootMount: hostRootMount, TokenDir: tokenDir, Args: o.nodeArgs(verb), IdleUID: idleUID,
		HostPID: o.RestartCommand != "" || o.FactoryCommand != ""}
}

type templateData struct {
	Options
	LabelKey, LabelValue, PolicyName string
	// OptionsAnnotation holds Record, the Options as JSON.
	OptionsAnnotation, Record string
	// FixedFields are the parts of a node the installer may not change.
	FixedFields []string
}

func (o Options) templateData() templateData {
	record, err := json.Marshal(o)
	if err != nil {
		panic(err) // strings and a map of strings
	}
	return templateData{Options: o, LabelKey: LabelKey, LabelValue: LabelValue, PolicyName: PolicyName,
		OptionsAnnotation: OptionsAnnotation, Record: string(record),
		FixedFields: []string{"spec", "metadata.annotations", "metadata.finalizers", "metadata.ownerReferences"}}
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
	rc, err := o.render("runtimeclass", o.templateData())
	if err != nil {
		return "", err
	}
	return common + "\n---\n" + ds + "\n---\n" + rc + "\n", nil
}

// renderCommon is the namespace, ServiceAccount and RBAC both
// DaemonSets need.
func renderCommon(o Options) (string, error) {
	return o.render("common", o.templateData())
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
