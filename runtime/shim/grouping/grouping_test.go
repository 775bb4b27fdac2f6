package grouping

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const shimPid = 4242

// criSpec is a CRI container's spec as containerd writes it (cgroupfs
// driver): kind, sandbox id, cgroupsPath and network namespace.
func criSpec(kind, sandboxID, cgroupsPath, netns string, extra map[string]string) *specs.Spec {
	s := &specs.Spec{Annotations: map[string]string{}, Linux: &specs.Linux{CgroupsPath: cgroupsPath}}
	if kind != "" {
		s.Annotations[AnnotationContainerType] = kind
		s.Annotations[AnnotationSandboxID] = sandboxID
	}
	for k, v := range extra {
		s.Annotations[k] = v
	}
	if netns != "-" {
		s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: netns}}
	}
	return s
}

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		name, id string
		ann      map[string]string
		want     string
		err      bool
	}{
		{"lone container", "c1", nil, "c1", false},
		{"podvm group", "c1", map[string]string{AnnotationGroup: "g"}, "g", false},
		{"CRI container", "c1", map[string]string{AnnotationContainerType: "container", AnnotationSandboxID: "sb1"}, "sb1", false},
		{"CRI container naming another group", "c1",
			map[string]string{AnnotationContainerType: "container", AnnotationSandboxID: "sb1", AnnotationGroup: "victim"}, "sb1", false},
		{"CRI container without sandbox id", "c1", map[string]string{AnnotationContainerType: "container"}, "", true},
	} {
		got, err := Of(tc.id, tc.ann)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%s: Of = %q, %v; want %q, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestNewVM(t *testing.T) {
	vm, err := NewVM("sb1", criSpec("sandbox", "sb1", "/kubepods/besteffort/pod1/sb1", "/var/run/netns/cni-1", nil), shimPid)
	want := VM{Group: "sb1", CRI: true, PodCgroup: "/kubepods/besteffort/pod1", NetNS: "/var/run/netns/cni-1", ShimPid: shimPid}
	if err != nil || vm != want {
		t.Errorf("CRI sandbox: NewVM = %+v, %v; want %+v", vm, err, want)
	}
	vm, err = NewVM("c1", criSpec("", "", "", "", map[string]string{AnnotationGroup: "g"}), shimPid)
	if want := (VM{Group: "g", ShimPid: shimPid}); err != nil || vm != want {
		t.Errorf("lone container: NewVM = %+v, %v; want %+v", vm, err, want)
	}
	for _, tc := range []struct {
		name, id string
		spec     *specs.Spec
		reason   string
	}{
		{"sandbox naming another sandbox", "sb2", criSpec("sandbox", "victim", "/kubepods/pod2/sb2", "-", nil), "a CRI sandbox's id is its own"},
		{"container booting a VM", "c1", criSpec("container", "sb1", "/kubepods/pod1/c1", "-", nil), "only its sandbox container can"},
	} {
		if _, err := NewVM(tc.id, tc.spec, shimPid); err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: NewVM error %v; want one saying %q", tc.name, err, tc.reason)
		}
	}
}

// TestCheckJoin: only the pod's own containers join its VM; a forged
// annotation is refused with an error naming why.
func TestCheckJoin(t *testing.T) {
	pod := VM{Group: "sb1", CRI: true, PodCgroup: "/kubepods/besteffort/pod1", NetNS: "/var/run/netns/cni-1", ShimPid: shimPid}
	hostNet := VM{Group: "sb1", CRI: true, PodCgroup: "/kubepods/besteffort/pod1", ShimPid: shimPid}
	systemd := VM{Group: "sb1", CRI: true, ShimPid: shimPid,
		PodCgroup: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"}
	lone := VM{Group: "g", ShimPid: shimPid}
	const cg, ns, shimNS = "/kubepods/besteffort/pod1/c1", "/var/run/netns/cni-1", "/proc/4242/ns/net"
	for _, tc := range []struct {
		name   string
		vm     VM
		spec   *specs.Spec
		reason string // "" to join
	}{
		{"pod container, CRI's netns path", pod, criSpec("container", "sb1", cg, shimNS, nil), ""},
		{"pod container, the CNI netns path", pod, criSpec("container", "sb1", cg, ns, nil), ""},
		{"host-network pod container", hostNet, criSpec("container", "sb1", cg, "-", nil), ""},
		{"systemd driver", systemd, criSpec("container", "sb1", "kubepods-besteffort-pod1.slice:cri-containerd:c1", shimNS, nil), ""},
		{"ctr group member", lone, criSpec("", "", "", "", map[string]string{AnnotationGroup: "g"}), ""},

		{"forged sandbox id", pod, criSpec("container", "victim", cg, shimNS, nil), "belongs to group victim"},
		{"podvm group naming the pod", pod, criSpec("", "", cg, shimNS, map[string]string{AnnotationGroup: "sb1"}), "not a CRI container"},
		{"another pod's cgroup", pod, criSpec("container", "sb1", "/kubepods/besteffort/pod2/c9", shimNS, nil), "pod cgroup"},
		{"another pod's network", pod, criSpec("container", "sb1", cg, "/var/run/netns/cni-2", nil), "network namespace"},
		{"no network namespace in a networked pod", pod, criSpec("container", "sb1", cg, "-", nil), "network namespace"},
		{"a second sandbox", pod, criSpec("sandbox", "sb1", cg, shimNS, nil), "a sandbox has a VM of its own"},
		{"CRI container into a ctr group", lone, criSpec("container", "g", cg, shimNS, nil), "non-CRI group"},
		{"bad cgroupsPath", pod, criSpec("container", "sb1", "relative/c1", shimNS, nil), "cgroupsPath"},
	} {
		err := tc.vm.CheckJoin("c1", tc.spec)
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.reason != "" && (err == nil || !strings.Contains(err.Error(), tc.reason)):
			t.Errorf("%s: CheckJoin = %v; want an error saying %q", tc.name, err, tc.reason)
		}
	}
}
