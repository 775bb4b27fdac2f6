package guestspec

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Root:    &specs.Root{Path: "/run/containerd/io.containerd.runtime.v2.task/default/c1/rootfs", Readonly: true},
		Process: &specs.Process{Args: []string{"sh"}, ApparmorProfile: "cri-default", SelinuxLabel: "x"},
		Hooks:   &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/usr/bin/nvidia-hook"}}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/var/lib/containerd/hosts", Options: []string{"rbind", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup"},
		},
		Linux: &specs.Linux{
			CgroupsPath: "/default/c1",
			MountLabel:  "label",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/cni-1234"},
			},
			Devices: []specs.LinuxDevice{{Path: "/dev/kvm", Type: "c", Major: 10, Minor: 232}},
			Resources: &specs.LinuxResources{
				Memory:         &specs.LinuxMemory{Limit: ptr(int64(64 << 20))},
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func TestRewrite(t *testing.T) {
	in := baseSpec()
	orig := baseSpec()
	g, res, err := Rewrite(in, "c1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, orig) {
		t.Fatal("Rewrite modified its input")
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"root moved under the guest share", g.Root.Path == "/run/podvm/shared/c1/rootfs" && g.Root.Readonly},
		{"LSM labels dropped", g.Process.ApparmorProfile == "" && g.Process.SelinuxLabel == "" && g.Linux.MountLabel == ""},
		{"hooks dropped", g.Hooks == nil && res.Dropped.Hooks},
		{"host bind mount shared read-only", len(g.Mounts) == 4 && len(res.Shares) == 1 &&
			res.Shares[0] == SharedMount{HostSource: "/var/lib/containerd/hosts", ShareRel: "c1/mounts/0", Destination: "/etc/hosts", ReadOnly: true} &&
			g.Mounts[2].Source == "/run/podvm/shared/c1/mounts/0" && g.Mounts[2].Destination == "/etc/hosts"},
		{"namespace paths cleared, types kept", len(g.Linux.Namespaces) == 2 && g.Linux.Namespaces[1].Path == "" && g.Linux.Namespaces[1].Type == specs.NetworkNamespace},
		{"host devices dropped", g.Linux.Devices == nil && reflect.DeepEqual(res.Dropped.Devices, []string{"/dev/kvm"})},
		{"memory limit kept for the guest cgroup", *g.Linux.Resources.Memory.Limit == 64<<20},
		{"hugepages dropped", g.Linux.Resources.HugepageLimits == nil},
		{"cgroupfs path kept", g.Linux.CgroupsPath == "/default/c1"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: got %+v", c.name, g)
		}
	}
}

func TestGuestCgroupsPath(t *testing.T) {
	cases := map[string]string{
		"":                             "/podvm/c1",
		"/kubepods/besteffort/pod1/c1": "/kubepods/besteffort/pod1/c1",
		"kubepods-besteffort.slice:cri-containerd:c1": "/podvm/c1",
	}
	for in, want := range cases {
		if got := guestCgroupsPath(in, "c1"); got != want {
			t.Errorf("guestCgroupsPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPodCgroup(t *testing.T) {
	cases := map[string]string{
		"":                                       "/podvm",
		"/kubepods/besteffort/pod1/sb1":          "/kubepods/besteffort/pod1",
		"/kubepods/besteffort/pod1/sb1/":         "/kubepods/besteffort/pod1",
		"kubepods-pod1.slice:cri-containerd:sb1": "/podvm",
	}
	for in, want := range cases {
		if got := PodCgroup(in, "sb1"); got != want {
			t.Errorf("PodCgroup(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every container of a pod lands below the pod's guest cgroup, where the
// pod-wide pids limit is set, whatever path its own spec names.
func TestRewriteKeepsContainersBelowPodCgroup(t *testing.T) {
	cases := map[string]string{
		"/kubepods/besteffort/pod1/c1":  "/kubepods/besteffort/pod1/c1",
		"/kubepods/besteffort/pod10/c1": "/kubepods/besteffort/pod1/c1",
		"/elsewhere/c1":                 "/kubepods/besteffort/pod1/c1",
		"":                              "/kubepods/besteffort/pod1/c1",
	}
	for in, want := range cases {
		s := baseSpec()
		s.Linux.CgroupsPath = in
		g, _, err := Rewrite(s, "c1", Options{Pod: true, PodCgroup: "/kubepods/besteffort/pod1"})
		if err != nil {
			t.Fatal(err)
		}
		if g.Linux.CgroupsPath != want {
			t.Errorf("cgroupsPath %q became %q, want %q", in, g.Linux.CgroupsPath, want)
		}
	}
}

func TestRewriteRejects(t *testing.T) {
	cases := []struct {
		name string
		spec *specs.Spec
		id   string
	}{
		{"no root", &specs.Spec{Process: &specs.Process{}}, "c1"},
		{"no process", &specs.Spec{Root: &specs.Root{}}, "c1"},
		{"id escapes the share", baseSpec(), "../etc"},
		{"dot id", baseSpec(), ".."},
	}
	for _, c := range cases {
		if _, _, err := Rewrite(c.spec, c.id, Options{}); err == nil {
			t.Errorf("%s: want error", c.name)
		}
	}
}

func TestRewritePodContainer(t *testing.T) {
	in := baseSpec()
	in.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: "/proc/4242/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/4242/ns/uts"},
		{Type: specs.NetworkNamespace, Path: "/proc/4242/ns/net"},
		{Type: specs.MountNamespace},
	}
	in.Mounts = append(in.Mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/run/containerd/sandboxes/x/shm", Options: []string{"rbind", "rw"}})
	g, res, err := Rewrite(in, "c2", Options{Pod: true, SandboxGuestPid: 7})
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace, Path: "/proc/7/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/7/ns/uts"},
		{Type: specs.MountNamespace},
	}
	if !reflect.DeepEqual(g.Linux.Namespaces, want) {
		t.Errorf("namespaces = %+v, want %+v", g.Linux.Namespaces, want)
	}
	shm := g.Mounts[len(g.Mounts)-1]
	if shm.Type != "tmpfs" || shm.Destination != "/dev/shm" {
		t.Errorf("/dev/shm = %+v, want a guest tmpfs", shm)
	}
	for _, sh := range res.Shares {
		if sh.Destination == "/dev/shm" {
			t.Error("the host /dev/shm must not be shared into the guest")
		}
	}

	// The sandbox container itself: no paths to join, network dropped.
	g, _, err = Rewrite(in, "sb", Options{Pod: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range g.Linux.Namespaces {
		if ns.Path != "" || ns.Type == specs.NetworkNamespace {
			t.Errorf("sandbox namespace %+v: want no path and no network namespace", ns)
		}
	}
}
