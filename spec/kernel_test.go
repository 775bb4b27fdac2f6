package spec

import (
	"fmt"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"github.com/podvm/podvm/spec/internal/facts"
)

// maxVisibleTaskShare bounds the kernel-wide task count a pod sees (/proc/loadavg, which no PID
// namespace filters) as a share of the node's. A pod on the node's kernel sees the node's own
// count (a share of about 1, give or take tasks started in between); a kernel of its own counts
// only its kernel threads and the pod's processes, a few dozen next to the hundreds of a node
// running a kubelet, a container runtime and pods. Half leaves a VM room for a busy guest and
// still fails a shared kernel by a wide margin.
const maxVisibleTaskShare = 0.5

// nodeDaemons are host processes that exist on every Kubernetes node (some of them, at least);
// a pod with its own kernel must not see any of them.
var nodeDaemons = []string{"kubelet", "containerd", "crio", "dockerd", "kube-proxy", "containerd-shim", "conmon"}

var _ = Describe("A pod of the runtime class under test", Label("kernel", "isolation"), Ordered, ContinueOnFailure, func() {
	var a, b *corev1.Pod
	var node kernelFacts

	BeforeAll(func(ctx SpecContext) {
		pods := startPods(ctx, newPod("kernel-a", marked(idle("c"), markerFor("kernel-a"))), newPod("kernel-b", idle("c")))
		a, b = pods[0], pods[1]
		node = nodeKernel(ctx, a.Spec.NodeName)
	}, NodeTimeout(2*podStartTimeout))

	It("runs on a kernel that is not the node's", func(ctx SpecContext) {
		pod := podKernel(ctx, a, "c")
		AddReportEntry("pod kernel", pod)
		AddReportEntry("node kernel", node)
		Expect(pod.Release).NotTo(BeEmpty())
		Expect(pod.BootID).NotTo(BeEmpty())
		Expect(pod.ProcVersion).NotTo(BeEmpty())
		Expect(pod.Release).NotTo(Equal(node.Release), shows(factNodeKernel, "uname -r in the pod is the node's kernel release (NodeInfo.KernelVersion)"))
		Expect(pod.ProcVersion).NotTo(Equal(node.ProcVersion), shows(factNodeKernel, "/proc/version in the pod is the node's"))
		Expect(pod.BootID).NotTo(Equal(node.BootID), shows(factNodeKernel, "the pod's boot_id is the node's (NodeInfo.BootID): same kernel, same boot"))
	}, Label(factNodeKernel), SpecTimeout(2*time.Minute))

	It("has a kernel of its own, not shared with another pod of the class", func(ctx SpecContext) {
		ka, kb := podKernel(ctx, a, "c"), podKernel(ctx, b, "c")
		Expect(ka.BootID).NotTo(BeEmpty())
		Expect(kb.BootID).NotTo(BeEmpty())
		Expect(ka.BootID).NotTo(Equal(kb.BootID), shows(factSameBootID, "two pods of the class on node %s report the same boot_id: they share one kernel", a.Spec.NodeName))
	}, Label(factSameBootID), SpecTimeout(2*time.Minute))

	It("does not see the node's processes", func(ctx SpecContext) {
		nodeProcs := nodeProcesses(ctx, a.Spec.NodeName)
		nodeComms := facts.Comms(nodeProcs)
		Expect(nodeComms).To(HaveKey("kubelet"), "the node probe must see the kubelet, or it does not see the node's processes and this spec measures nothing")
		var onNode []string
		for _, d := range nodeDaemons {
			if nodeComms[d] {
				onNode = append(onNode, d)
			}
		}

		podProcs := facts.Processes(sh(ctx, a, "c", facts.ProcessListingScript))
		Expect(podProcs).NotTo(BeEmpty(), "the pod listed no processes in its own /proc")
		var seen []string
		for _, d := range onNode {
			if facts.Comms(podProcs)[d] {
				seen = append(seen, d)
			}
		}
		Expect(seen).To(BeEmpty(), shows(factNodeTasks, "the pod sees node processes %v", seen))

		nodeTasks, err := facts.LoadavgTasks(probeSh(ctx, a.Spec.NodeName, "cat /proc/loadavg"))
		Expect(err).NotTo(HaveOccurred())
		podTasks, err := facts.LoadavgTasks(sh(ctx, a, "c", "cat /proc/loadavg"))
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("processes", fmt.Sprintf("pod /proc: %d, node /proc: %d; kernel tasks seen by the pod: %d, node: %d",
			len(podProcs), len(nodeProcs), podTasks, nodeTasks))
		Expect(float64(len(podProcs))).To(BeNumerically("<=", maxVisibleTaskShare*float64(len(nodeProcs))),
			shows(factNodeTasks, "the pod's /proc lists %d processes, the node has %d: %s", len(podProcs), len(nodeProcs), commList(podProcs)))
		Expect(float64(podTasks)).To(BeNumerically("<=", maxVisibleTaskShare*float64(nodeTasks)),
			shows(factNodeTasks, "the kernel under the pod runs %d tasks, the node's %d: a pod with a kernel of its own counts only its own", podTasks, nodeTasks))

		// A runtime can mount a made-up /proc/loadavg into the pod and give it a PID namespace
		// (the fake VM baseline does); it cannot take the pod's processes out of the node's /proc
		// when the node's kernel runs them.
		inPod, onNode := markedPIDs(ctx, a, "c", markerFor(a.Name))
		Expect(inPod).NotTo(BeEmpty(), "the pod's own /proc shows no process with its marker %q: the search cannot find anything", markerFor(a.Name))
		Expect(onNode).To(BeEmpty(), shows(factNodeRunsPod, "the node's /proc lists the pod's processes (node pids %v, pod pids %v): the node's kernel runs them", onNode, inPod))
	}, Label(factNodeTasks, factNodeRunsPod), SpecTimeout(3*time.Minute))
})

// commList names processes for a failure message.
func commList(procs []facts.Process) string {
	var names []string
	for _, p := range procs {
		names = append(names, p.Comm)
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}
