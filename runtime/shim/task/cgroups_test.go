package task

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPodCgroups(t *testing.T) {
	spec := func(kind, path string) *specs.Spec {
		s := &specs.Spec{Annotations: map[string]string{}, Linux: &specs.Linux{CgroupsPath: path}}
		if kind != "" {
			s.Annotations[annotationContainerType] = kind
		}
		return s
	}
	for _, tc := range []struct {
		name        string
		spec        *specs.Spec
		host, guest string
		err         bool
	}{
		{"cgroupfs sandbox", spec("sandbox", "/kubepods/besteffort/pod1/sb1"), "/kubepods/besteffort/pod1/sb1", "/kubepods/besteffort/pod1", false},
		{"systemd sandbox", spec("sandbox", "kubepods-besteffort-pod1.slice:cri-containerd:sb1"),
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-sb1.scope", "/podvm", false},
		{"sandbox without cgroupsPath", spec("sandbox", ""), "", "", false},
		{"sandbox without linux section", &specs.Spec{Annotations: map[string]string{annotationContainerType: "sandbox"}}, "", "", false},
		{"lone container", spec("", "/default/c1"), "", "", false},
		{"relative path", spec("sandbox", "kubepods/pod1/sb1"), "", "", true},
	} {
		host, guest, err := podCgroups(tc.spec, "sb1")
		if (err != nil) != tc.err || host != tc.host || guest != tc.guest {
			t.Errorf("%s: podCgroups = %q, %q, %v; want %q, %q, error %v", tc.name, host, guest, err, tc.host, tc.guest, tc.err)
		}
	}
}
