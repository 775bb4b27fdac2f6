package spec

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/podvm/podvm/spec/internal/facts"
	"github.com/podvm/podvm/spec/internal/kube"
	"github.com/podvm/podvm/spec/internal/safety"
)

const (
	// recoverTimeout bounds the crashed pod's way back: the runtime notices the dead VM, the
	// kubelet sees the sandbox gone, and starts a new sandbox (a new VM) and the container.
	recoverTimeout = 5 * time.Minute

	// leakTimeout bounds how long after the pod is deleted its host processes may linger
	// while the runtime tears the sandbox down.
	leakTimeout = 2 * time.Minute

	// crashExecTimeout bounds the exec that panics the guest: its stream dies with the VM, or
	// hangs until the runtime notices.
	crashExecTimeout = 30 * time.Second
)

var _ = Describe("A crash in one pod", Label("blast-radius", "isolation", "destructive", factGuard), Serial, func() {
	It("stays in that pod when its guest kernel panics", func(ctx SpecContext) {
		crashOnePod(ctx, "panic", func(ctx context.Context, victim *corev1.Pod) {
			By("writing c to /proc/sysrq-trigger in the pod (a kernel panic)")
			ctx, cancel := context.WithTimeout(ctx, crashExecTimeout)
			defer cancel()
			res, err := cluster.Exec(ctx, ns, victim.Name, "c", []string{"sh", "-c", "echo c > /proc/sysrq-trigger"}, nil)
			// The exec is expected to die with the kernel; its outcome is for the record only.
			fmt.Fprintf(GinkgoWriter, "sysrq exec: exit %d, stdout %q, stderr %q, err %v\n", res.ExitCode, res.Stdout, res.Stderr, err)
		})
	}, SpecTimeout(2*podStartTimeout+recoverTimeout+leakTimeout+5*time.Minute))

	It("stays in that pod when its VMM is killed", func(ctx SpecContext) {
		crashOnePod(ctx, "vmm-kill", func(ctx context.Context, victim *corev1.Pod) {
			By(fmt.Sprintf("killing the processes in the pod's cgroups that match %q", *vmmRegex))
			inPod := facts.InPod(nodeProcesses(ctx, victim.Spec.NodeName), string(victim.UID))
			vmms := facts.Matching(inPod, vmmRE)
			Expect(vmms).NotTo(BeEmpty(), "no process matching --vmm-process-regex %q in the cgroups of pod %s; processes there: [%s]",
				*vmmRegex, victim.UID, commList(inPod))
			var pids []string
			for _, p := range vmms {
				pids = append(pids, fmt.Sprint(p.PID))
			}
			AddReportEntry("killed", fmt.Sprintf("%s (pids %s)", commList(vmms), strings.Join(pids, " ")))
			probeSh(ctx, victim.Spec.NodeName, "kill -9 "+strings.Join(pids, " "))
		})
	}, SpecTimeout(2*podStartTimeout+recoverTimeout+leakTimeout+5*time.Minute))
})

// crashOnePod starts a victim pod (privileged, so it may panic its kernel) and a bystander pod
// of the class on one node, proves the victim's kernel is not the node's, crashes the victim,
// and checks that only the victim went down and came back, and that nothing of it stays on the
// node after it is deleted.
func crashOnePod(ctx context.Context, name string, crash func(context.Context, *corev1.Pod)) {
	GinkgoHelper()
	victimC := idle("c")
	victimC.SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	pods := startPods(ctx, newPod(name+"-victim", victimC), newPod(name+"-bystander", idle("c")))
	victim, bystander := pods[0], pods[1]
	node := victim.Spec.NodeName

	By("proving the victim's kernel is not the node's")
	nodeK := nodeKernel(ctx, node)
	victimK := podKernel(ctx, victim, "c")
	if err := safety.CheckSeparateKernel(victimK.Kernel, nodeK.Kernel); err != nil {
		Fail(shows(factGuard, "%v", err)())
	}

	nodeBefore, err := cluster.GetNode(ctx, node)
	Expect(err).NotTo(HaveOccurred())
	bystanderK := podKernel(ctx, bystander, "c")
	vs, _ := kube.ContainerStatus(victim, "c")
	bs, _ := kube.ContainerStatus(bystander, "c")

	crash(ctx, victim)

	By("waiting for the victim to restart with a new kernel")
	after, err := cluster.WaitForPod(ctx, ns, victim.Name, recoverTimeout, "restarted", kube.RestartedPast("c", vs.RestartCount))
	Expect(err).NotTo(HaveOccurred(), "the crashed pod must be restarted per its restartPolicy (Always)")
	newK := podKernel(ctx, after, "c")
	Expect(newK.BootID).NotTo(Equal(victimK.BootID), "the restarted pod still runs the kernel that crashed")
	s, _ := kube.ContainerStatus(after, "c")
	AddReportEntry("victim", fmt.Sprintf("restarts %d -> %d, boot_id %s -> %s", vs.RestartCount, s.RestartCount, victimK.BootID, newK.BootID))

	By("checking the bystander and the node")
	b, err := cluster.GetPod(ctx, ns, bystander.Name)
	Expect(err).NotTo(HaveOccurred())
	bsNow, _ := kube.ContainerStatus(b, "c")
	Expect(bsNow.RestartCount).To(Equal(bs.RestartCount), "the bystander pod restarted")
	Expect(kube.PodReady(b) && bsNow.State.Running != nil).To(BeTrue(), "the bystander pod no longer runs:\n%s", cluster.Diagnose(ctx, ns, b.Name))
	Expect(podKernel(ctx, b, "c").BootID).To(Equal(bystanderK.BootID), "the bystander pod's kernel rebooted")
	nodeAfter, err := cluster.GetNode(ctx, node)
	Expect(err).NotTo(HaveOccurred())
	Expect(kube.NodeReady(nodeAfter)).To(BeTrue(), "node %s is not Ready", node)
	Expect(nodeAfter.Status.NodeInfo.BootID).To(Equal(nodeBefore.Status.NodeInfo.BootID), "node %s rebooted", node)

	By("deleting the victim and looking for what it left on the node")
	uid := string(after.UID)
	onHost := facts.InPod(nodeProcesses(ctx, node), uid)
	// Without a process of the pod on the host to follow, "nothing is left" would be vacuous.
	Expect(onHost).NotTo(BeEmpty(), "no host process is in the cgroups of pod %s, so what it leaves behind cannot be told from nothing: the runtime does not charge the pod's VMM to the pod's cgroup", uid)
	AddReportEntry("victim on the host", commList(onHost))
	before := facts.Identities(onHost)
	Expect(cluster.DeletePod(ctx, ns, victim.Name, nil, podDeleteTimeout)).To(Succeed())
	Eventually(func(g Gomega) {
		procs := nodeProcesses(ctx, node)
		g.Expect(facts.InPod(procs, uid)).To(BeEmpty(), "processes still in the deleted pod's cgroups")
		g.Expect(facts.StillAlive(before, procs)).To(BeEmpty(), "processes of the deleted pod still alive")
	}).WithContext(ctx).WithTimeout(leakTimeout).WithPolling(5 * time.Second).Should(Succeed())
}
