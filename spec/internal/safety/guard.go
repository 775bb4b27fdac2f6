// Package safety holds the guard every destructive spec runs first: it refuses to crash a
// kernel unless the observations prove that kernel is not the node's own.
package safety

import (
	"fmt"
	"strings"
)

// Refusal starts every error the guard returns.
const Refusal = "refusing to panic a kernel that is the node's own"

// Kernel identifies a running kernel by what it says about itself.
type Kernel struct {
	BootID      string // /proc/sys/kernel/random/boot_id (for a node: Node.Status.NodeInfo.BootID)
	ProcVersion string // /proc/version
}

// CheckSeparateKernel returns nil only when the pod's kernel is provably not the node's: both
// identities are known, and both the boot ID and /proc/version differ. Anything else, including
// a value that could not be read, is a refusal: an unknown is never taken as "different".
func CheckSeparateKernel(pod, node Kernel) error {
	pb, nb := norm(pod.BootID), norm(node.BootID)
	pv, nv := norm(pod.ProcVersion), norm(node.ProcVersion)
	switch {
	case pb == "" || nb == "":
		return fmt.Errorf("%s: boot_id unknown (pod %q, node %q)", Refusal, pb, nb)
	case pv == "" || nv == "":
		return fmt.Errorf("%s: /proc/version unknown (pod %q, node %q)", Refusal, pv, nv)
	case strings.EqualFold(pb, nb):
		return fmt.Errorf("%s: the pod's boot_id %s is the node's", Refusal, pb)
	case pv == nv:
		return fmt.Errorf("%s: the pod's /proc/version is the node's: %s", Refusal, pv)
	}
	return nil
}

// norm trims the white space and newline that reading a /proc file leaves.
func norm(s string) string { return strings.TrimSpace(s) }
