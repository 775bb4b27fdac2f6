package spec

import (
	"context"
	"fmt"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/podvm/podvm/spec/internal/facts"
	"github.com/podvm/podvm/spec/internal/kube"
)

const (
	// memoryLimit is the limit of the pod that allocates past it: small, so the allocation ends
	// fast even under emulation, and well above what busybox itself needs.
	memoryLimit = "128Mi"

	// guestBaseAllowance is how much more than its limit a pod may see as MemTotal: the base
	// size of a VM runtime's guest before limits are added (podvm 256 MiB, AKS Pod Sandboxing
	// 512 MiB, Kata's default_memory 2 GiB). A pod on the node's kernel sees the node's total,
	// far above limit + 2 GiB on any node big enough for this spec to be asked at all.
	guestBaseAllowance = 2 << 30

	// cpuLoopSeconds is how long each busy-loop phase runs: long next to the 100 ms CFS quota
	// period and the 10 ms resolution of /proc/uptime, short enough to keep the suite quick.
	cpuLoopSeconds = 5

	// maxParallelWorkRatio bounds the work two parallel busy loops do under a limit of one CPU,
	// relative to one loop alone for the same time. One CPU's worth of time gives a ratio of 1;
	// two unthrottled loops on a node with two or more CPUs give about 2. The 30% over 1 absorbs
	// quota enforced per 100 ms period, a loop iteration that reads the clock, and noise from the
	// node, while staying far from 2.
	maxParallelWorkRatio = 1.3

	// pidsOverAsk is how many processes beyond the pod pids limit the spec tries to start: enough
	// to be sure the limit, not chance, stopped them.
	pidsOverAsk = 64

	// maxPidsToSpawn caps the spec: with a podPidsLimit above it the spec skips rather than start
	// tens of thousands of processes on someone's node.
	maxPidsToSpawn = 4096

	// pidsPodMemoryLimit gives the pids pod room for limit+pidsOverAsk sleeping shells (each a
	// forked busybox, well under 256 KiB of its own), so that the pids limit, not memory, is
	// what stops them.
	pidsPodMemoryLimit = "512Mi"
)

// Only the specs a shared kernel cannot pass carry the isolation label: an OOM kill at the
// limit, a CPU quota and the pods' pids limit hold under runc too, and must keep holding in a VM.
var _ = Describe("Resource limits", Label("limits"), func() {
	Context("a memory limit", Ordered, ContinueOnFailure, func() {
		var pod *corev1.Pod
		var log string

		BeforeAll(func(ctx SpecContext) {
			// free reports sysinfo(2), which no file mounted over /proc/meminfo changes.
			c := shContainer("c", `grep MemTotal /proc/meminfo; free; exec tail /dev/zero`)
			c.Resources = resources("50m", memoryLimit, "", memoryLimit)
			p := newPod("memory-limit", c)
			p.Spec.RestartPolicy = corev1.RestartPolicyNever
			_, err := cluster.CreatePod(ctx, p)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx SpecContext) {
				Expect(cluster.DeletePod(ctx, ns, p.Name, nil, podDeleteTimeout)).To(Succeed())
			}, NodeTimeout(podDeleteTimeout+30*time.Second))
			pod, err = cluster.WaitForPod(ctx, ns, p.Name, podStartTimeout+2*time.Minute, "terminated", kube.Terminated("c"))
			Expect(err).NotTo(HaveOccurred())
			log, err = cluster.Logs(ctx, ns, p.Name, "c", false)
			Expect(err).NotTo(HaveOccurred())
		}, NodeTimeout(podStartTimeout+3*time.Minute))

		It("ends an allocation past the limit as OOMKilled", func() {
			s, _ := kube.ContainerStatus(pod, "c")
			t := s.State.Terminated
			Expect(t).NotTo(BeNil())
			AddReportEntry("termination", fmt.Sprintf("exit %d, reason %s", t.ExitCode, t.Reason))
			Expect(t.Reason).To(Equal("OOMKilled"), "tail /dev/zero in a %s container ended with exit %d reason %q\n%s",
				memoryLimit, t.ExitCode, t.Reason, cluster.Diagnose(context.Background(), ns, pod.Name))
			Expect(t.ExitCode).To(Equal(int32(137)), "an OOM kill is SIGKILL: exit 128+9")
		})

		It("shows the pod no more memory than its limit and a VM's base", Label("isolation", factNodeMemory), func(ctx SpecContext) {
			seen, err := facts.MemTotal(log)
			Expect(err).NotTo(HaveOccurred(), "the container's log should hold its MemTotal line: %q", log)
			sysinfo, err := facts.FreeTotal(log)
			Expect(err).NotTo(HaveOccurred(), "the container's log should hold free's Mem: line: %q", log)
			limit := resource.MustParse(memoryLimit)
			bound := limit.Value() + guestBaseAllowance
			n, err := cluster.GetNode(ctx, pod.Spec.NodeName)
			Expect(err).NotTo(HaveOccurred())
			nodeMem := n.Status.Capacity.Memory().Value()
			AddReportEntry("memory", fmt.Sprintf("pod sees %s in /proc/meminfo and %s from sysinfo with a %s limit (bound %s), node has %s",
				mib(seen), mib(sysinfo), memoryLimit, mib(bound), mib(nodeMem)))
			if nodeMem <= bound {
				Skip(fmt.Sprintf("node %s has %s, not more than the bound %s: a pod seeing the node's memory could not be told apart", n.Name, mib(nodeMem), mib(bound)))
			}
			Expect(seen).To(BeNumerically("<=", bound),
				shows(factNodeMemory, "the pod sees %s of memory with a %s limit: more than the limit plus a VM's base (%s); the node has %s", mib(seen), memoryLimit, mib(guestBaseAllowance), mib(nodeMem)))
			Expect(sysinfo).To(BeNumerically("<=", bound),
				shows(factNodeMemory, "sysinfo(2) in the pod gives %s of memory (its /proc/meminfo %s) with a %s limit: more than the limit plus a VM's base (%s); the node has %s",
					mib(sysinfo), mib(seen), memoryLimit, mib(guestBaseAllowance), mib(nodeMem)))
		}, SpecTimeout(time.Minute))
	})

	Context("a CPU limit of one CPU", Ordered, ContinueOnFailure, func() {
		const limitMilli = 1000
		var pod *corev1.Pod

		BeforeAll(func(ctx SpecContext) {
			c := idle("c")
			// A small request keeps the pod schedulable next to the others on a 2-CPU node;
			// the limit is what the spec is about.
			c.Resources = resources("100m", "", strconv.Itoa(limitMilli)+"m", "")
			pod = startPods(ctx, newPod("cpu-limit", c))[0]
		}, NodeTimeout(podStartTimeout+time.Minute))

		It("shows as that many CPUs inside the pod", Label("isolation", factNodeCPUs), func(ctx SpecContext) {
			n, err := cluster.GetNode(ctx, pod.Spec.NodeName)
			Expect(err).NotTo(HaveOccurred())
			skipBelowTwoCPUs(n, n.Status.Capacity.Cpu(), "a pod that sees all of them sees one CPU too")
			kv := facts.KeyValues(sh(ctx, pod, "c", `echo "nproc=$(nproc)"; echo "online=$(cat /sys/devices/system/cpu/online)"`))
			AddReportEntry("cpus", kv)
			nodeCPUs := strconv.FormatInt(facts.CeilCPUs(n.Status.Capacity.Cpu().MilliValue()), 10)
			Expect(kv["nproc"]).NotTo(Equal(nodeCPUs), shows(factNodeCPUs, "nproc in a pod limited to %dm CPU is the node's %s CPUs (online CPUs: %s)", limitMilli, nodeCPUs, kv["online"]))
			Expect(kv["nproc"]).To(Equal(strconv.FormatInt(facts.CeilCPUs(limitMilli), 10)),
				"nproc in a pod limited to %dm CPU (online CPUs: %s)", limitMilli, kv["online"])
		}, SpecTimeout(time.Minute))

		It("holds two busy loops to one CPU's worth of work", func(ctx SpecContext) {
			n, err := cluster.GetNode(ctx, pod.Spec.NodeName)
			Expect(err).NotTo(HaveOccurred())
			skipBelowTwoCPUs(n, n.Status.Allocatable.Cpu(), "two loops could not use more than one CPU anyway")
			kv := facts.KeyValues(sh(ctx, pod, "c", busyLoopScript(cpuLoopSeconds)))
			solo, err1 := facts.Int64(kv["solo"])
			a, err2 := facts.Int64(kv["a"])
			b, err3 := facts.Int64(kv["b"])
			Expect([]error{err1, err2, err3}).To(HaveEach(BeNil()), "busy loop output %v", kv)
			Expect(solo).To(BeNumerically(">", 0))
			Expect(a).To(BeNumerically(">", 0), "both parallel loops must have run")
			Expect(b).To(BeNumerically(">", 0), "both parallel loops must have run")
			ratio := float64(a+b) / float64(solo)
			AddReportEntry("busy loops", fmt.Sprintf("one loop %d iterations in %ds; two loops %d + %d; ratio %.2f", solo, cpuLoopSeconds, a, b, ratio))
			Expect(ratio).To(BeNumerically("<=", maxParallelWorkRatio),
				"two loops did %.2f times the work of one in the same time under a %dm CPU limit", ratio, limitMilli)
		}, SpecTimeout(2*time.Minute+2*cpuLoopSeconds*time.Second))
	})

	It("holds the node's pod pids limit", func(ctx SpecContext) {
		c := idle("c")
		c.Resources = resources("50m", "64Mi", "", pidsPodMemoryLimit)
		pod := startPods(ctx, newPod("pids-limit", c))[0]
		raw, err := cluster.KubeletConfigz(ctx, pod.Spec.NodeName)
		Expect(err).NotTo(HaveOccurred())
		limit, set, err := facts.PodPidsLimit(raw)
		Expect(err).NotTo(HaveOccurred())
		if !set {
			Skip(fmt.Sprintf("the kubelet on node %s has no podPidsLimit (unset or -1): there is no pod pids limit to hold", pod.Spec.NodeName))
		}
		if limit+pidsOverAsk > maxPidsToSpawn {
			Skip(fmt.Sprintf("podPidsLimit %d on node %s: above the %d processes this spec will start", limit, pod.Spec.NodeName, maxPidsToSpawn))
		}
		s0, _ := kube.ContainerStatus(pod, "c")

		want := limit + pidsOverAsk
		execCtx, cancel := context.WithTimeout(ctx, 6*time.Minute)
		defer cancel()
		res, err := cluster.Exec(execCtx, ns, pod.Name, "c", []string{"sh", "-c", spawnScript(want)}, nil)
		Expect(err).NotTo(HaveOccurred(), "the spawning shell must start and report (stdout %q)", res.Stdout)
		kv := facts.KeyValues(res.Stdout)
		alive, err1 := facts.Int64(kv["alive"])
		spawned, err2 := facts.Int64(kv["spawned"])
		Expect([]error{err1, err2}).To(HaveEach(BeNil()), "spawn output %q, stderr %q", res.Stdout, res.Stderr)
		AddReportEntry("pids", fmt.Sprintf("podPidsLimit %d; tried %d; started %d; alive at once in the container %d; first error %q",
			limit, want, spawned, alive, kv["spawnerr"]))
		Expect(alive).To(BeNumerically("<=", limit),
			"%d processes existed at once in one container of a pod whose pids limit is %d (%d of %d started)", alive, limit, spawned, want)

		// The pod survives: same container, no restart, and it still runs commands.
		Eventually(func(ctx context.Context) (string, error) {
			return cluster.Sh(ctx, ns, pod.Name, "c", "echo alive")
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(ContainSubstring("alive"))
		now, err := cluster.GetPod(ctx, ns, pod.Name)
		Expect(err).NotTo(HaveOccurred())
		s1, _ := kube.ContainerStatus(now, "c")
		Expect(s1.RestartCount).To(Equal(s0.RestartCount), "the container restarted while at its pids limit")
		Expect(s1.State.Running).NotTo(BeNil(), "the container no longer runs")
	}, SpecTimeout(podStartTimeout+8*time.Minute))
})

// skipBelowTwoCPUs skips a spec that tells one CPU from the node's on a node with fewer than
// two (cpus: the node's capacity or allocatable, whichever the spec's measure depends on).
func skipBelowTwoCPUs(n *corev1.Node, cpus *resource.Quantity, why string) {
	GinkgoHelper()
	if milli := cpus.MilliValue(); milli < 2000 {
		Skip(fmt.Sprintf("node %s has %dm CPU: %s", n.Name, milli, why))
	}
}

// busyLoopScript counts loop iterations for seconds with one loop, then with two loops in
// parallel for as long. The loops read the clock from /proc/uptime with shell builtins only.
func busyLoopScript(seconds int) string {
	return fmt.Sprintf(`
now() { read u r < /proc/uptime; echo "${u%%.*}${u#*.}"; }
work() { n=0; while :; do read u r < /proc/uptime; [ "${u%%.*}${u#*.}" -ge "$1" ] && break; n=$((n+1)); done; echo $n; }
end=$(( $(now) + %[1]d00 )); echo "solo=$(work $end)"
end=$(( $(now) + %[1]d00 )); work $end > /tmp/loop-a & work $end > /tmp/loop-b; wait
echo "a=$(cat /tmp/loop-a)"; echo "b=$(cat /tmp/loop-b)"`, seconds)
}

// spawnScript starts up to n sleeping processes from a subshell, which ends at the first fork
// that fails; then, with shell builtins only (no fork is possible at the limit), it counts the
// container's processes, kills every sleeper it started and reports.
func spawnScript(n int64) string {
	return fmt.Sprintf(`rm -f /tmp/pids /tmp/spawn.err
( i=0; while [ $i -lt %d ]; do sleep 600 & echo $! >> /tmp/pids; i=$((i+1)); done ) 2>/tmp/spawn.err
set -- /proc/[0-9]*; alive=$#
while read -r p; do kill -9 "$p" 2>/dev/null; done < /tmp/pids
n=0; while read -r p; do n=$((n+1)); done < /tmp/pids
e=""; read -r e < /tmp/spawn.err
echo "alive=$alive"; echo "spawned=$n"; echo "spawnerr=$e"`, n)
}
