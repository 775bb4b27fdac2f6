package guestspec

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api/contract"
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
			reflect.DeepEqual(res.Shares[0], SharedMount{HostSource: "/var/lib/containerd/hosts", ShareRel: "c1/mounts/0", Destination: "/etc/hosts", ReadOnly: true}) &&
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

// TestRewriteUserNamespacePod: a user namespace pod's container joins the
// sandbox container's user namespace in the guest and keeps the mappings
// (runc checks them against the namespace's); a volume with mappings is
// shared through an idmapped mount on the host and mounted plainly in the
// guest, whose virtio-fs cannot be idmapped.
func TestRewriteUserNamespacePod(t *testing.T) {
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 100000}}
	in := baseSpec()
	in.Linux.UIDMappings, in.Linux.GIDMappings = maps, maps
	in.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.UserNamespace, Path: "/proc/4242/ns/user"},
		{Type: specs.MountNamespace},
	}
	in.Mounts = []specs.Mount{{Destination: "/data", Type: "bind", Source: "/var/lib/kubelet/pods/x/volumes/data",
		Options: []string{"rbind", "rw", "idmap"}, UIDMappings: maps, GIDMappings: maps},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}}}
	g, res, err := Rewrite(in, "c3", Options{Pod: true, SandboxGuestPid: 7})
	if err != nil {
		t.Fatal(err)
	}
	if want := (specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/7/ns/user"}); g.Linux.Namespaces[0] != want {
		t.Errorf("user namespace %+v, want %+v", g.Linux.Namespaces[0], want)
	}
	if !reflect.DeepEqual(g.Linux.UIDMappings, maps) || !reflect.DeepEqual(g.Linux.GIDMappings, maps) {
		t.Errorf("mappings %v / %v, want %v kept", g.Linux.UIDMappings, g.Linux.GIDMappings, maps)
	}
	if len(res.Shares) != 1 || !reflect.DeepEqual(res.Shares[0].UIDMappings, maps) || !reflect.DeepEqual(res.Shares[0].GIDMappings, maps) {
		t.Fatalf("shares %+v: want one carrying the mappings to the host side", res.Shares)
	}
	m := g.Mounts[0]
	sys := g.Mounts[1]
	if sys.Type != "bind" || sys.Source != "/sys" || sys.Destination != "/sys" || !slices.Contains(sys.Options, "ro") || !slices.Contains(sys.Options, "rbind") {
		t.Errorf("/sys = %+v: want the guest's /sys bound read-only (sysfs cannot be mounted from the pod's user namespace)", sys)
	}
	if m.UIDMappings != nil || m.GIDMappings != nil || slices.Contains(m.Options, "idmap") || !slices.Contains(m.Options, "rbind") {
		t.Errorf("guest mount %+v: want a plain bind, no mappings, no idmap option", m)
	}
}

// A recursive bind's host submounts become shares and guest mounts of
// their own, right after the volume, with the flags runc gives them on a
// host: "rro" for all, else each host mount's own.
func TestRewriteSubmounts(t *testing.T) {
	tmpfs := []Submount{{Rel: "tmpfs"}}
	cases := []struct {
		name    string
		options []string
		subs    []Submount
		subErr  error
		asked   bool // Submounts is called
		shares  []SharedMount
		guest   [][]string // options of the guest mounts after /etc/hosts
		dests   []string
		wantErr bool
	}{
		{name: "ro: the submount keeps its own flags", options: []string{"rbind", "rprivate", "ro"}, subs: tmpfs, asked: true,
			shares: []SharedMount{
				{HostSource: "/host/v", ShareRel: "c1/mounts/1", Destination: "/mnt", ReadOnly: true, Alone: true},
				{HostSource: "/host/v/tmpfs", ShareRel: "c1/mounts/2", Destination: "/mnt/tmpfs", Alone: true, Under: "/host/v"},
			},
			guest: [][]string{{"rbind", "rprivate", "ro"}, {"rbind", "rprivate", "rw"}}, dests: []string{"/mnt", "/mnt/tmpfs"}},
		{name: "rro: every submount read-only, on the host too", options: []string{"rbind", "rprivate", "rro"}, subs: tmpfs, asked: true,
			shares: []SharedMount{
				{HostSource: "/host/v", ShareRel: "c1/mounts/1", Destination: "/mnt", ReadOnly: true, Alone: true},
				{HostSource: "/host/v/tmpfs", ShareRel: "c1/mounts/2", Destination: "/mnt/tmpfs", ReadOnly: true, Alone: true, Under: "/host/v"},
			},
			guest: [][]string{{"rbind", "rprivate", "rro"}, {"rbind", "rprivate", "rro"}}, dests: []string{"/mnt", "/mnt/tmpfs"}},
		{name: "host flags and nesting", options: []string{"rbind", "rw", "rnoexec"},
			subs: []Submount{{Rel: "a", Options: []string{"ro", "nosuid"}}, {Rel: "a/b", Options: []string{"nodev"}}}, asked: true,
			shares: []SharedMount{
				{HostSource: "/host/v", ShareRel: "c1/mounts/1", Destination: "/mnt", Alone: true},
				{HostSource: "/host/v/a", ShareRel: "c1/mounts/2", Destination: "/mnt/a", ReadOnly: true, Alone: true, Under: "/host/v"},
				{HostSource: "/host/v/a/b", ShareRel: "c1/mounts/3", Destination: "/mnt/a/b", Alone: true, Under: "/host/v"},
			},
			guest: [][]string{{"rbind", "rw", "rnoexec"}, {"rbind", "rnoexec", "ro", "nosuid"}, {"rbind", "rnoexec", "rw", "nodev"}},
			dests: []string{"/mnt", "/mnt/a", "/mnt/a/b"}},
		{name: "rslave keeps one recursive bind", options: []string{"rbind", "rslave", "ro"}, subs: tmpfs,
			shares: []SharedMount{{HostSource: "/host/v", ShareRel: "c1/mounts/1", Destination: "/mnt", ReadOnly: true, ReceiveHostMounts: true}},
			guest:  [][]string{{"rbind", "rslave", "ro"}}, dests: []string{"/mnt"}},
		{name: "a non-recursive bind has no submounts", options: []string{"bind", "ro"}, subs: tmpfs,
			shares: []SharedMount{{HostSource: "/host/v", ShareRel: "c1/mounts/1", Destination: "/mnt", ReadOnly: true, Alone: true}},
			guest:  [][]string{{"bind", "ro"}}, dests: []string{"/mnt"}},
		{name: "listing fails", options: []string{"rbind", "ro"}, subErr: errors.New("no mountinfo"), asked: true, wantErr: true},
		{name: "submount outside the source", options: []string{"rbind", "ro"}, subs: []Submount{{Rel: "../etc"}}, asked: true, wantErr: true},
		{name: "absolute submount", options: []string{"rbind", "ro"}, subs: []Submount{{Rel: "/etc"}}, asked: true, wantErr: true},
		{name: "unclean submount", options: []string{"rbind", "ro"}, subs: []Submount{{Rel: "a/../b"}}, asked: true, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := baseSpec()
			in.Mounts = append(in.Mounts, specs.Mount{Destination: "/mnt", Type: "bind", Source: "/host/v", Options: c.options})
			asked := false
			opts := Options{Submounts: func(src string) ([]Submount, error) {
				if src != "/host/v" {
					return nil, nil // /etc/hosts, a file
				}
				asked = true
				return c.subs, c.subErr
			}}
			g, res, err := Rewrite(in, "c1", opts)
			if c.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if asked != c.asked {
				t.Errorf("Submounts asked for /host/v: %v, want %v", asked, c.asked)
			}
			if !reflect.DeepEqual(res.Shares[1:], c.shares) {
				t.Errorf("shares:\n got %+v\nwant %+v", res.Shares[1:], c.shares)
			}
			var opts2 [][]string
			var dests []string
			for _, m := range g.Mounts[4:] {
				opts2 = append(opts2, m.Options)
				dests = append(dests, m.Destination)
				if m.Type != "bind" || !strings.HasPrefix(m.Source, contract.GuestSharedDir+"/c1/mounts/") {
					t.Errorf("guest mount %+v: want a bind from the share", m)
				}
			}
			if !reflect.DeepEqual(opts2, c.guest) || !reflect.DeepEqual(dests, c.dests) {
				t.Errorf("guest mounts %v with options %v, want %v with %v", dests, opts2, c.dests, c.guest)
			}
			for i, sh := range res.Shares[1:] {
				if g.Mounts[4+i].Source != contract.GuestSharedDir+"/"+sh.ShareRel {
					t.Errorf("guest mount %d mounts %s, its share is %s", 4+i, g.Mounts[4+i].Source, sh.ShareRel)
				}
			}
		})
	}
}

func TestSubmountOptions(t *testing.T) {
	cases := []struct {
		parent, host, want []string
	}{
		{[]string{"rbind", "rprivate", "ro"}, nil, []string{"rbind", "rprivate", "rw"}},
		{[]string{"rbind", "rprivate", "rro"}, nil, []string{"rbind", "rprivate", "rro"}},
		{[]string{"rbind", "rprivate", "rro"}, []string{"ro", "noexec"}, []string{"rbind", "rprivate", "rro", "ro", "noexec"}},
		{[]string{"rbind", "rw", "nosuid", "relatime"}, []string{"nodev"}, []string{"rbind", "rw", "nodev"}},
		{[]string{"rbind", "rshared", "rnosuid", "rnodev"}, []string{"ro"}, []string{"rbind", "rshared", "rnosuid", "rnodev", "ro"}},
	}
	for _, c := range cases {
		if got := SubmountOptions(c.parent, c.host); !reflect.DeepEqual(got, c.want) {
			t.Errorf("SubmountOptions(%v, %v) = %v, want %v", c.parent, c.host, got, c.want)
		}
	}
}

// TestRewriteCgroupNamespace: the guest spec gives a CRI container a
// private cgroup namespace exactly when containerd would on a cgroup v2
// node (not to a sandbox container, a privileged container or a lone
// one), whatever the host containerd decided.
func TestRewriteCgroupNamespace(t *testing.T) {
	roCgroup := specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
		Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}}
	rwCgroup := roCgroup
	rwCgroup.Options = []string{"nosuid", "noexec", "nodev", "relatime"}
	allDevices := []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	defaultDevices := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(3)), Access: "rwm"}}
	cases := []struct {
		name       string
		ctrType    string
		cgroup     *specs.Mount
		devices    []specs.LinuxDeviceCgroup
		hostCgroup bool // containerd on a v2 host already added it
		want       bool
	}{
		{name: "container, v1 host", ctrType: "container", cgroup: &roCgroup, devices: defaultDevices, want: true},
		{name: "container, v2 host", ctrType: "container", cgroup: &roCgroup, devices: defaultDevices, hostCgroup: true, want: true},
		{name: "container with a volume over /sys/fs/cgroup", ctrType: "container", devices: defaultDevices, want: true},
		{name: "privileged container", ctrType: "container", cgroup: &rwCgroup, devices: allDevices},
		{name: "privileged container without host devices", ctrType: "container", cgroup: &rwCgroup, devices: defaultDevices},
		{name: "privileged container with a volume over /sys/fs/cgroup", ctrType: "container", devices: allDevices},
		{name: "sandbox container", ctrType: "sandbox", devices: defaultDevices},
		{name: "lone container (ctr run)", cgroup: &roCgroup, devices: defaultDevices},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := baseSpec()
			in.Mounts = []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}}
			if c.cgroup != nil {
				in.Mounts = append(in.Mounts, *c.cgroup)
			}
			if c.ctrType != "" {
				in.Annotations = map[string]string{annotationContainerType: c.ctrType}
			}
			in.Linux.Resources.Devices = c.devices
			in.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}
			if c.hostCgroup {
				in.Linux.Namespaces = append(in.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
			}
			g, _, err := Rewrite(in, "c1", Options{Pod: c.ctrType != "", SandboxGuestPid: 7})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, ns := range g.Linux.Namespaces {
				if ns.Type == specs.CgroupNamespace {
					n++
					if ns.Path != "" {
						t.Errorf("cgroup namespace %+v: want a new one, no path", ns)
					}
				}
			}
			if want := map[bool]int{true: 1}[c.want]; n != want {
				t.Errorf("%d cgroup namespaces in %+v, want %d", n, g.Linux.Namespaces, want)
			}
			if c.cgroup != nil && !reflect.DeepEqual(g.Mounts[len(g.Mounts)-1], *c.cgroup) {
				t.Errorf("cgroup mount %+v, want %+v kept (runc mounts it as cgroup2 in the namespace)", g.Mounts[len(g.Mounts)-1], *c.cgroup)
			}
		})
	}
}
