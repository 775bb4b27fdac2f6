package hostcgroup

import (
	"fmt"
	"path"
	"strings"
)

// ParsePath turns an OCI linux.cgroupsPath into the path of the cgroup
// below each hierarchy's root, the form every cgroupfs file system uses:
//
//   - "" stays "": the spec names no cgroup, and nothing is placed.
//   - "/kubepods/besteffort/pod<uid>/<id>" (containerd's CRI with the
//     cgroupfs driver: cgroup_parent + "/" + sandbox id) is kept, cleaned.
//   - "<slice>:<prefix>:<name>" (the systemd driver) becomes the path
//     systemd gives that unit: "kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>"
//     is "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope",
//     as runc's systemd driver computes it.
//
// A relative cgroupfs path is refused: runc reads it relative to its own
// cgroup, which for the shim would be containerd's, not the pod's.
func ParsePath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if strings.HasPrefix(p, "/") {
		clean := path.Clean(p)
		if clean == "/" {
			return "", fmt.Errorf("cgroupsPath %q names the root cgroup, which cannot hold a pod", p)
		}
		return clean, nil
	}
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("cgroupsPath %q is neither an absolute cgroupfs path nor systemd's slice:prefix:name", p)
	}
	return systemdPath(parts[0], parts[1], parts[2])
}

// systemdPath is where systemd puts unit prefix-name (a scope, or the slice
// name itself when name is one) below slice.
func systemdPath(slice, prefix, name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("systemd cgroupsPath %q:%q:%q has no unit name", slice, prefix, name)
	}
	if slice == "" {
		slice = "system.slice" // systemd's default, as runc assumes
	}
	dir, err := expandSlice(slice)
	if err != nil {
		return "", err
	}
	unit := name
	if !strings.HasSuffix(name, ".slice") {
		if prefix != "" {
			unit = prefix + "-" + name
		}
		unit += ".scope"
	}
	if strings.Contains(unit, "/") {
		return "", fmt.Errorf("systemd unit name %q contains a slash", unit)
	}
	return path.Join(dir, unit), nil
}

// expandSlice turns a slice name into its cgroup path: systemd nests a
// slice in the slice named by each dash-separated prefix, so "a-b-c.slice"
// lives at "/a.slice/a-b.slice/a-b-c.slice". "-.slice" is the root.
func expandSlice(slice string) (string, error) {
	const suffix = ".slice"
	name, ok := strings.CutSuffix(slice, suffix)
	if !ok || name == "" || strings.Contains(slice, "/") {
		return "", fmt.Errorf("systemd slice %q: want a name like kubepods-besteffort.slice", slice)
	}
	if name == "-" {
		return "/", nil
	}
	var b strings.Builder
	prefix := ""
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", fmt.Errorf("systemd slice %q: empty component between dashes", slice)
		}
		b.WriteString("/" + prefix + part + suffix)
		prefix += part + "-"
	}
	return b.String(), nil
}

// Parent is the pod-level cgroup of a sandbox cgroup path: kubelet's
// /kubepods/<qos>/pod<uid>, where it writes the pod's limits.
func Parent(p string) string { return path.Dir(p) }
