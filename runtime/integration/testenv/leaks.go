package testenv

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"

	"github.com/podvm/podvm/ci/testbed"
)

// DefaultStateDir is podvm's runtime.state_dir in the installed config.
const DefaultStateDir = "/run/podvm"

// Leaks lists what podvm left on this host of the sandbox or container
// match names (an id; a test never checks the whole host, which other
// users of the machine share): see LeaksIn. Empty match checks
// processes, mounts and sockets of every podvm sandbox.
func Leaks(match string) []string { return LeaksIn(DefaultStateDir, match) }

// LeaksIn lists everything podvm may leave on a host of one sandbox or
// container, under podvm state directory stateDir: processes, mounts, the
// state directory, sockets and host cgroups (see testbed.Leaks).
//
// Taps live in the pod's network namespace and go with it; CRILeaks checks
// the host namespace for podvm taps and the namespaces containerd mounted,
// and ShimSocketLeaks containerd's shim sockets.
func LeaksIn(stateDir, match string) []string { return testbed.Leaks(stateDir, match) }

// ShimSocketLeaks names the shim sockets of groups (a pod's sandbox id, a
// lone container's id) in containerd namespace ns that still exist: the
// socket containerd-shim-podvm-v2 listens on, which it removes when it
// ends and containerd's `shim delete` removes after it died.
func (c *Containerd) ShimSocketLeaks(ns string, groups ...string) []string {
	var out []string
	for _, g := range groups {
		sum := sha256.Sum256([]byte(filepath.Join(c.Address, ns, g)))
		for _, root := range []string{"/run/containerd/s", filepath.Join(c.Dir, "state", "s")} {
			p := filepath.Join(root, fmt.Sprintf("%x", sum))
			if _, err := os.Stat(p); err == nil {
				out = append(out, fmt.Sprintf("shim socket of %s: %s", g, p))
			}
		}
	}
	return out
}
