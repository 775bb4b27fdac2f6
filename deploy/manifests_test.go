package deploy

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// object is the part of a manifest the tests look at.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string
	Metadata   struct {
		Name      string
		Namespace string
		Labels    map[string]string
	}
	Handler  string
	Overhead struct {
		PodFixed map[string]string `yaml:"podFixed"`
	}
	Scheduling struct {
		NodeSelector map[string]string `yaml:"nodeSelector"`
	}
	Rules []struct {
		APIGroups []string `yaml:"apiGroups"`
		Resources []string
		Verbs     []string
	}
	Subjects []struct{ Kind, Name, Namespace string }
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		}
		Template struct {
			Metadata struct{ Labels map[string]string }
			Spec     podSpec
		}
	}
}

type podSpec struct {
	ServiceAccountName           string            `yaml:"serviceAccountName"`
	AutomountServiceAccountToken *bool             `yaml:"automountServiceAccountToken"`
	HostPID                      bool              `yaml:"hostPID"`
	HostNetwork                  bool              `yaml:"hostNetwork"`
	HostIPC                      bool              `yaml:"hostIPC"`
	NodeSelector                 map[string]string `yaml:"nodeSelector"`
	InitContainers               []container       `yaml:"initContainers"`
	Containers                   []container
	Volumes                      []struct {
		Name      string
		HostPath  *struct{ Path, Type string } `yaml:"hostPath"`
		Projected *struct {
			Sources []struct {
				ServiceAccountToken *struct {
					Path              string
					ExpirationSeconds int `yaml:"expirationSeconds"`
				} `yaml:"serviceAccountToken"`
				ConfigMap *struct{ Name string } `yaml:"configMap"`
			}
		}
	}
}

type container struct {
	Name    string
	Image   string
	Command []string
	Args    []string
	Env     []struct {
		Name      string
		ValueFrom struct {
			FieldRef struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	}
	SecurityContext struct {
		Privileged               bool
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             bool  `yaml:"runAsNonRoot"`
		RunAsUser                int   `yaml:"runAsUser"`
		Capabilities             struct {
			Add, Drop []string
		}
		SeccompProfile struct{ Type string } `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	ReadinessProbe *struct{} `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name             string
		MountPath        string `yaml:"mountPath"`
		MountPropagation string `yaml:"mountPropagation"`
		ReadOnly         bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

func parse(t *testing.T, text string) []object {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(text))
	var out []object
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("manifests do not parse: %v\n%s", err, text)
		}
		out = append(out, o)
	}
}

func byKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func testOptions() Options {
	o := DefaultOptions()
	o.Image = "127.0.0.1:5000/podvm/installer:test"
	return o
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*Options)
		checks func(t *testing.T, ds object, args []string)
	}{
		{name: "defaults", mod: func(*Options) {}, checks: func(t *testing.T, ds object, args []string) {
			for _, want := range []string{"--prefix=/opt/podvm", "--containerd-config=/etc/containerd/config.toml",
				"--containerd-dropin-dir=/etc/containerd/conf.d", "--label=podvm.io/runtime=ready", "--handler=podvm"} {
				if !slices.Contains(args, want) {
					t.Errorf("args %q lack %s", args, want)
				}
			}
			for _, a := range args {
				if strings.HasPrefix(a, "--restart-command") || strings.HasPrefix(a, "--factory-command") || strings.HasPrefix(a, "--api-server") {
					t.Errorf("default args carry %s", a)
				}
			}
			if ns := ds.Spec.Template.Spec.NodeSelector; ns["kubernetes.io/os"] != "linux" || len(ns) != 1 {
				t.Errorf("node selector %v", ns)
			}
			if ds.Spec.Template.Spec.HostPID {
				t.Errorf("without a restart command (systemd restarts containerd) the pod joins the node's PID namespace")
			}
		}},
		{name: "local cluster", mod: func(o *Options) {
			o.HostPrefix = "/tmp/x/opt podvm"
			o.ContainerdConfig, o.DropInDir = "/tmp/c/config.toml", "/tmp/c/conf.d"
			o.RestartCommand = "/tmp/bin/podvm cluster restart-containerd --dir /tmp/c # not a comment: \"quoted\""
			o.APIServer = "https://10.200.0.1:7443"
			o.NodeSelector = map[string]string{"kubernetes.io/hostname": "n1", "a": "true"}
		}, checks: func(t *testing.T, ds object, args []string) {
			for _, want := range []string{"--prefix=/tmp/x/opt podvm", "--containerd-dropin-dir=/tmp/c/conf.d",
				"--restart-command=/tmp/bin/podvm cluster restart-containerd --dir /tmp/c # not a comment: \"quoted\"",
				"--api-server=https://10.200.0.1:7443"} {
				if !slices.Contains(args, want) {
					t.Errorf("args %q lack %q", args, want)
				}
			}
			if ns := ds.Spec.Template.Spec.NodeSelector; ns["kubernetes.io/hostname"] != "n1" || ns["a"] != "true" {
				t.Errorf("node selector %v", ns)
			}
			if !ds.Spec.Template.Spec.HostPID {
				t.Errorf("a restart command runs without the node's PID namespace: the containerd it starts would die with the pod")
			}
		}},
		{name: "factory command only", mod: func(o *Options) {
			o.FactoryCommand = "/tmp/bin/podvm cluster factory-service --cluster-dir /tmp/c"
		}, checks: func(t *testing.T, ds object, args []string) {
			if !slices.Contains(args, "--factory-command=/tmp/bin/podvm cluster factory-service --cluster-dir /tmp/c") {
				t.Errorf("args %q lack the factory command", args)
			}
			if !ds.Spec.Template.Spec.HostPID {
				t.Errorf("a factory command runs without the node's PID namespace: the daemon it starts would die with the pod")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			tc.mod(&o)
			text, err := Render(o)
			if err != nil {
				t.Fatal(err)
			}
			objs := parse(t, text)
			var kinds []string
			for _, obj := range objs {
				kinds = append(kinds, obj.Kind)
			}
			if want := []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
				"ValidatingAdmissionPolicyBinding", "DaemonSet", "RuntimeClass"}; !slices.Equal(kinds, want) {
				t.Fatalf("kinds %q, want %q", kinds, want)
			}

			rc := byKind(objs, "RuntimeClass")[0]
			if rc.APIVersion != "node.k8s.io/v1" || rc.Metadata.Name != "podvm" || rc.Handler != "podvm" {
				t.Errorf("RuntimeClass %+v", rc)
			}
			if rc.Scheduling.NodeSelector[LabelKey] != LabelValue || len(rc.Scheduling.NodeSelector) != 1 {
				t.Errorf("RuntimeClass scheduling.nodeSelector = %v, want only %s=%s", rc.Scheduling.NodeSelector, LabelKey, LabelValue)
			}
			if rc.Overhead.PodFixed["memory"] != "512Mi" || rc.Overhead.PodFixed["cpu"] != "250m" {
				t.Errorf("RuntimeClass overhead.podFixed = %v", rc.Overhead.PodFixed)
			}

			role := byKind(objs, "ClusterRole")[0]
			if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"nodes"}) || !slices.Equal(role.Rules[0].Verbs, []string{"get", "patch"}) {
				t.Errorf("ClusterRole may do more than read and patch nodes: %+v", role.Rules)
			}
			if b := byKind(objs, "ClusterRoleBinding")[0]; len(b.Subjects) != 1 || b.Subjects[0].Namespace != DefaultNamespace || b.Subjects[0].Name != "podvm-installer" {
				t.Errorf("binding subjects %+v", b.Subjects)
			}

			ds := byKind(objs, "DaemonSet")[0]
			if ds.Metadata.Name != InstallerName || ds.Metadata.Namespace != DefaultNamespace {
				t.Errorf("DaemonSet %s/%s", ds.Metadata.Namespace, ds.Metadata.Name)
			}
			if sel, lab := ds.Spec.Selector.MatchLabels, ds.Spec.Template.Metadata.Labels; sel["app.kubernetes.io/name"] != InstallerName || lab["app.kubernetes.io/name"] != InstallerName {
				t.Errorf("selector %v does not match the template's labels %v", sel, lab)
			}
			pod := ds.Spec.Template.Spec
			if !pod.HostNetwork || pod.ServiceAccountName != "podvm-installer" {
				t.Fatalf("pod spec %+v", pod)
			}
			c := checkPrivilegeSplit(t, pod, "install")
			if c.Image != o.Image || !slices.Equal(c.Command, []string{"/podvm/bin/podvm"}) {
				t.Errorf("container %+v", c)
			}
			if len(c.Env) != 1 || c.Env[0].Name != "NODE_NAME" || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("env %+v", c.Env)
			}
			tc.checks(t, ds, c.Args)
		})
	}
}

func TestRenderCleanup(t *testing.T) {
	o := testOptions()
	o.RestartCommand = "restart it"
	text, err := RenderCleanup(o)
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, text)
	if len(objs) != 1 || objs[0].Kind != "DaemonSet" || objs[0].Metadata.Name != CleanupName {
		t.Fatalf("cleanup manifests %+v", objs)
	}
	args := checkPrivilegeSplit(t, objs[0].Spec.Template.Spec, "uninstall").Args
	if !slices.Contains(args, "--restart-command=restart it") {
		t.Errorf("cleanup args %q", args)
	}
	if objs[0].Spec.Template.Spec.ServiceAccountName != "podvm-installer" {
		t.Errorf("cleanup runs as %q", objs[0].Spec.Template.Spec.ServiceAccountName)
	}
}

// checkPrivilegeSplit checks that the pod does the node's work (verb) in
// a privileged init container that alone has the node's / and a token
// bound to the pod, and that what stays running has nothing: not
// privileged, no capabilities, no root, no host mount, no token. It
// returns the init container.
func checkPrivilegeSplit(t *testing.T, pod podSpec, verb string) container {
	t.Helper()
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken is not false: every container would get the token")
	}
	if pod.HostIPC {
		t.Errorf("hostIPC")
	}
	if len(pod.InitContainers) != 1 || len(pod.Containers) != 1 {
		t.Fatalf("want one init container and one container, have %d and %d", len(pod.InitContainers), len(pod.Containers))
	}
	in, idle := pod.InitContainers[0], pod.Containers[0]
	if in.Name != verb || !in.SecurityContext.Privileged || len(in.Args) < 3 ||
		!slices.Equal(in.Args[:3], []string{"deploy", "node", verb}) || !slices.Contains(in.Args, "--exit") {
		t.Errorf("init container %s: privileged %v, args %q: want privileged `deploy node %s ... --exit`",
			in.Name, in.SecurityContext.Privileged, in.Args, verb)
	}
	mounts := map[string]string{}
	for _, m := range in.VolumeMounts {
		mounts[m.Name] = m.MountPath
		if m.MountPropagation != "" || (m.Name == "installer-token" && !m.ReadOnly) {
			t.Errorf("init container mount %+v", m)
		}
	}
	if len(mounts) != 2 || mounts["host-root"] != hostRootMount || mounts["installer-token"] != tokenDir {
		t.Errorf("init container mounts %v, want the node's / at %s and the token at %s", mounts, hostRootMount, tokenDir)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		switch {
		case v.Name == "host-root" && v.HostPath != nil && v.HostPath.Path == "/":
			volumes[v.Name] = true
		case v.Name == "installer-token" && v.Projected != nil && len(v.Projected.Sources) == 2 &&
			v.Projected.Sources[0].ServiceAccountToken != nil && v.Projected.Sources[0].ServiceAccountToken.Path == "token" &&
			v.Projected.Sources[1].ConfigMap != nil && v.Projected.Sources[1].ConfigMap.Name == "kube-root-ca.crt":
			volumes[v.Name] = true
		default:
			t.Errorf("volume %+v", v)
		}
	}
	if len(volumes) != 2 {
		t.Errorf("volumes %v, want host-root and installer-token", volumes)
	}

	sc := idle.SecurityContext
	if sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || !sc.ReadOnlyRootFilesystem ||
		!sc.RunAsNonRoot || sc.RunAsUser == 0 || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) ||
		len(sc.Capabilities.Add) != 0 || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("the container that stays has privilege: %+v", sc)
	}
	if len(idle.VolumeMounts) != 0 || len(idle.Env) != 0 || idle.ReadinessProbe != nil {
		t.Errorf("the container that stays has mounts %+v, env %+v, probe %v", idle.VolumeMounts, idle.Env, idle.ReadinessProbe)
	}
	if !slices.Equal(idle.Command, []string{"/podvm/bin/podvm", "deploy", "node", "wait"}) || len(idle.Args) != 0 {
		t.Errorf("the container that stays runs %q %q", idle.Command, idle.Args)
	}
	return in
}

func TestRenderRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Options)
		wantErr string
	}{
		{"no image", func(o *Options) { o.Image = "" }, "no installer image: pass --image"},
		{"relative prefix", func(o *Options) { o.HostPrefix = "opt/podvm" }, `host prefix "opt/podvm" is not an absolute path`},
		{"bad handler", func(o *Options) { o.Handler = "Pod_VM" }, `handler "Pod_VM" is not a DNS label`},
		{"bad overhead", func(o *Options) { o.OverheadMemory = "160 MB" }, `overhead memory "160 MB" is not a Kubernetes quantity`},
		{"bad pull policy", func(o *Options) { o.ImagePullPolicy = "Sometimes" }, "image pull policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			tc.mod(&o)
			if _, err := Render(o); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestRenderPolicy checks the admission policy that confines the
// installer's token, as far as it can be checked without an API server
// (TestDeployIntegration evaluates it): what it matches, that every rule
// is there, and that its binding denies.
func TestRenderPolicy(t *testing.T) {
	o := testOptions()
	o.Namespace = "other-ns"
	text, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		Spec struct {
			FailurePolicy    string `yaml:"failurePolicy"`
			MatchConstraints struct {
				ResourceRules []struct {
					Operations, Resources []string
				} `yaml:"resourceRules"`
			} `yaml:"matchConstraints"`
			MatchConditions []struct{ Expression string } `yaml:"matchConditions"`
			Validations     []struct{ Expression, Message, Reason string }
		}
	}
	var binding struct {
		Spec struct {
			PolicyName        string   `yaml:"policyName"`
			ValidationActions []string `yaml:"validationActions"`
		}
	}
	for _, doc := range strings.Split(text, "\n---\n") {
		switch {
		case strings.Contains(doc, "\nkind: ValidatingAdmissionPolicy\n"):
			if err := yaml.Unmarshal([]byte(doc), &policy); err != nil {
				t.Fatal(err)
			}
		case strings.Contains(doc, "\nkind: ValidatingAdmissionPolicyBinding\n"):
			if err := yaml.Unmarshal([]byte(doc), &binding); err != nil {
				t.Fatal(err)
			}
		}
	}
	p := policy.Spec
	if p.FailurePolicy != "Fail" || len(p.MatchConstraints.ResourceRules) != 1 ||
		!slices.Equal(p.MatchConstraints.ResourceRules[0].Resources, []string{"nodes", "nodes/*"}) ||
		!slices.Equal(p.MatchConstraints.ResourceRules[0].Operations, []string{"CREATE", "UPDATE", "DELETE"}) {
		t.Errorf("policy matches %+v, failure policy %q", p.MatchConstraints, p.FailurePolicy)
	}
	if len(p.MatchConditions) != 1 || p.MatchConditions[0].Expression != "request.userInfo.username == 'system:serviceaccount:other-ns:podvm-installer'" {
		t.Errorf("policy applies to %+v, want the installer's ServiceAccount in its namespace", p.MatchConditions)
	}
	all := ""
	for _, v := range p.Validations {
		if v.Message == "" || v.Reason != "Forbidden" {
			t.Errorf("validation with message %q, reason %q (want a message, and Forbidden: a 403 as RBAC's): %s", v.Message, v.Reason, v.Expression)
		}
		all += v.Expression + "\n"
	}
	for _, want := range []string{"request.operation == 'UPDATE'", "request.userInfo.extra[variables.nodeClaim] == [object.metadata.name]",
		"k == variables.key", "object.metadata.labels[variables.key] == 'ready'", "object.spec == oldObject.spec",
		"object.metadata.annotations == oldObject.metadata.annotations"} {
		if !strings.Contains(all, want) {
			t.Errorf("no validation checks %s:\n%s", want, all)
		}
	}
	if binding.Spec.PolicyName != PolicyName || !slices.Equal(binding.Spec.ValidationActions, []string{"Deny"}) {
		t.Errorf("binding %+v", binding.Spec)
	}
}
