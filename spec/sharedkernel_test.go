package spec

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	corev1 "k8s.io/api/core/v1"
)

// The shared-kernel facts. Each isolation spec declares, as labels, the facts it expects a
// shared-kernel baseline (runc, the fake VM) to show, and prefixes the failure message of each
// check that sees one with the fact. The conformance report (conformance/report, which spells
// the "shared-kernel:" prefix too) counts a baseline failure as proof only when its message
// carries a fact the spec declares; any other failure there is a harness error.
const (
	// factNodeKernel: uname -r, /proc/version or boot_id in the pod is the node's.
	factNodeKernel = "shared-kernel:node-kernel"
	// factSameBootID: two pods of the class report one boot_id.
	factSameBootID = "shared-kernel:same-boot-id"
	// factNodeTasks: the pod sees the node's processes, or the node's kernel-wide task count.
	factNodeTasks = "shared-kernel:node-tasks"
	// factNodeRunsPod: the node's own /proc lists the pod's processes, so the node's kernel
	// runs them. No file a runtime mounts into the pod can hide that.
	factNodeRunsPod = "shared-kernel:node-runs-pod"
	// factNodeMemory: /proc/meminfo or sysinfo(2) in the pod gives the node's memory.
	factNodeMemory = "shared-kernel:node-memory"
	// factHostMemory: the pod got more host memory than it can see plus a VMM's overhead.
	factHostMemory = "shared-kernel:host-memory"
	// factNodeCPUs: nproc in the pod is the node's CPU count.
	factNodeCPUs = "shared-kernel:node-cpus"
	// factGuard: the safety guard refused to crash a kernel that is the node's.
	factGuard = "shared-kernel:guard-refusal"
)

// shows is a failure description that names the shared-kernel fact the failure shows. It is a
// function so Gomega does not take a % in the text for a verb.
func shows(fact, format string, args ...any) func() string {
	return func() string { return fact + ": " + fmt.Sprintf(format, args...) }
}

// markerFor is the argument a spec container carries so its processes can be found by their
// command line, in the pod and on the node: unique to the run (the namespace) and the pod.
func markerFor(pod string) string { return "podvm-spec-mark-" + ns + "-" + pod }

// marked gives a shell container the marker as its $0, which shows in its command line.
func marked(c corev1.Container, marker string) corev1.Container {
	c.Command = append(append([]string{}, c.Command...), marker)
	return c
}

// pidsWithMarkerScript lists the /proc entries whose command line holds marker. The pattern is
// written so the grep's own command line (and its shell's) does not match it.
func pidsWithMarkerScript(marker string) string {
	pattern := "[" + marker[:1] + "]" + regexp.QuoteMeta(marker[1:])
	return "grep -l -s -e '" + pattern + "' /proc/[0-9]*/cmdline; true"
}

var procCmdline = regexp.MustCompile(`^/proc/(\d+)/cmdline$`)

func parsePIDs(out string) []string {
	var pids []string
	for _, line := range strings.Split(out, "\n") {
		if m := procCmdline.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			pids = append(pids, m[1])
		}
	}
	return pids
}

// markedPIDs finds the processes of a marked container: in the pod's own /proc (they must be
// there, or the search finds nothing anywhere) and in the node's (where a kernel of the pod's
// own keeps them out of sight).
func markedPIDs(ctx context.Context, pod *corev1.Pod, container, marker string) (inPod, onNode []string) {
	GinkgoHelper()
	inPod = parsePIDs(sh(ctx, pod, container, pidsWithMarkerScript(marker)))
	onNode = parsePIDs(probeSh(ctx, pod.Spec.NodeName, pidsWithMarkerScript(marker)))
	return inPod, onNode
}

// The marker search, run on this machine's /proc: it finds the marked process and not itself.
func TestPIDsWithMarkerScript(t *testing.T) {
	marker := fmt.Sprintf("podvm-spec-mark-unit-%d", os.Getpid())
	marked := exec.Command("sh", "-c", "sleep 30; true", marker)
	if err := marked.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = marked.Process.Kill(); _ = marked.Wait() }()
	out, err := exec.Command("sh", "-c", pidsWithMarkerScript(marker)).Output()
	if err != nil {
		t.Fatalf("marker search: %v", err)
	}
	got := parsePIDs(string(out))
	if want := []string{strconv.Itoa(marked.Process.Pid)}; !slices.Equal(got, want) {
		t.Fatalf("marker search found %v (output %q), want %v", got, out, want)
	}
	out, _ = exec.Command("sh", "-c", pidsWithMarkerScript(marker+"-absent")).Output()
	if got := parsePIDs(string(out)); len(got) != 0 {
		t.Fatalf("search for an absent marker found %v", got)
	}
}
