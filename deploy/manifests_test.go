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
	ServiceAccountName string            `yaml:"serviceAccountName"`
	HostPID            bool              `yaml:"hostPID"`
	HostNetwork        bool              `yaml:"hostNetwork"`
	NodeSelector       map[string]string `yaml:"nodeSelector"`
	Containers         []struct {
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
		SecurityContext struct{ Privileged bool } `yaml:"securityContext"`
		ReadinessProbe  struct {
			Exec struct{ Command []string }
		} `yaml:"readinessProbe"`
		VolumeMounts []struct {
			Name             string
			MountPath        string `yaml:"mountPath"`
			MountPropagation string `yaml:"mountPropagation"`
		} `yaml:"volumeMounts"`
	}
	Volumes []struct {
		Name     string
		HostPath struct{ Path, Type string } `yaml:"hostPath"`
	}
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
				if strings.HasPrefix(a, "--restart-command") || strings.HasPrefix(a, "--api-server") {
					t.Errorf("default args carry %s", a)
				}
			}
			if ns := ds.Spec.Template.Spec.NodeSelector; ns["kubernetes.io/os"] != "linux" || len(ns) != 1 {
				t.Errorf("node selector %v", ns)
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
			if want := []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet", "RuntimeClass"}; !slices.Equal(kinds, want) {
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
			if !pod.HostPID || !pod.HostNetwork || pod.ServiceAccountName != "podvm-installer" || len(pod.Containers) != 1 {
				t.Fatalf("pod spec %+v", pod)
			}
			c := pod.Containers[0]
			if c.Image != o.Image || !c.SecurityContext.Privileged || !slices.Equal(c.Command, []string{"/podvm/bin/podvm"}) {
				t.Errorf("container %+v", c)
			}
			if !slices.Equal(c.Args[:3], []string{"deploy", "node", "install"}) {
				t.Errorf("args %q", c.Args)
			}
			if len(c.Env) != 1 || c.Env[0].Name != "NODE_NAME" || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("env %+v", c.Env)
			}
			if !slices.Equal(c.ReadinessProbe.Exec.Command, []string{"/podvm/bin/podvm", "deploy", "node", "ready", "--done-file=" + doneFile}) {
				t.Errorf("readiness probe %q", c.ReadinessProbe.Exec.Command)
			}
			if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/host" || c.VolumeMounts[0].MountPropagation != "" ||
				len(pod.Volumes) != 1 || pod.Volumes[0].HostPath.Path != "/" {
				t.Errorf("mounts %+v volumes %+v", c.VolumeMounts, pod.Volumes)
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
	args := objs[0].Spec.Template.Spec.Containers[0].Args
	if !slices.Equal(args[:3], []string{"deploy", "node", "uninstall"}) || !slices.Contains(args, "--restart-command=restart it") {
		t.Errorf("cleanup args %q", args)
	}
	if objs[0].Spec.Template.Spec.ServiceAccountName != "podvm-installer" {
		t.Errorf("cleanup runs as %q", objs[0].Spec.Template.Spec.ServiceAccountName)
	}
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
