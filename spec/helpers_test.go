package spec

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/podvm/podvm/spec/internal/facts"
	"github.com/podvm/podvm/spec/internal/kube"
	"github.com/podvm/podvm/spec/internal/safety"
)

// idleScript keeps a container alive doing nothing and ends it at once on SIGTERM, so deleting
// a spec pod does not wait out its grace period. As PID 1 it also reaps orphans: ash's wait
// collects any child, not only its own job.
const idleScript = `trap "exit 0" TERM; sleep 86400 & wait`

// classPtr turns a runtime class flag into a pod's runtimeClassName ("" means none).
func classPtr(class string) *string {
	if class == "" {
		return nil
	}
	return ptr.To(class)
}

// newPod builds a pod of the class under test in the run's namespace.
func newPod(name string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			RuntimeClassName:              classPtr(*runtimeClass),
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			AutomountServiceAccountToken:  ptr.To(false),
			Containers:                    containers,
		},
	}
}

// shContainer runs a shell script in the busybox image.
func shContainer(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: *image, Command: []string{"sh", "-c", script}}
}

// idle is a container that only waits.
func idle(name string) corev1.Container { return shContainer(name, idleScript) }

// resources builds requirements from "cpu", "memory" quantities ("" leaves one out).
func resources(reqCPU, reqMem, limCPU, limMem string) corev1.ResourceRequirements {
	list := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		if len(l) == 0 {
			return nil
		}
		return l
	}
	return corev1.ResourceRequirements{Requests: list(reqCPU, reqMem), Limits: list(limCPU, limMem)}
}

// pinTo makes a pod run on the named node (through the scheduler, so its resources count).
func pinTo(p *corev1.Pod, node string) *corev1.Pod {
	p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{
					Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}},
			}},
		},
	}}
	return p
}

// startPods creates the pods on one node (the first pod's, wherever the scheduler puts it),
// waits until all of them run and are Ready, and deletes them when the spec ends.
func startPods(ctx context.Context, pods ...*corev1.Pod) []*corev1.Pod {
	GinkgoHelper()
	for i, p := range pods {
		if i > 0 {
			pinTo(p, pods[0].Spec.NodeName)
		}
		_, err := cluster.CreatePod(ctx, p)
		Expect(err).NotTo(HaveOccurred())
		name := p.Name
		DeferCleanup(func(ctx SpecContext) {
			Expect(cluster.DeletePod(ctx, ns, name, nil, podDeleteTimeout)).To(Succeed())
		}, NodeTimeout(podDeleteTimeout+30*time.Second))
		if i == 0 && len(pods) > 1 {
			scheduled, err := cluster.WaitForPod(ctx, ns, name, podStartTimeout, "scheduled", func(p *corev1.Pod) (bool, error) {
				return p.Spec.NodeName != "", nil
			})
			Expect(err).NotTo(HaveOccurred())
			pods[0].Spec.NodeName = scheduled.Spec.NodeName
		}
	}
	running := make([]*corev1.Pod, len(pods))
	for i, p := range pods {
		got, err := cluster.WaitForPod(ctx, ns, p.Name, podStartTimeout, "running and ready", kube.Running)
		Expect(err).NotTo(HaveOccurred())
		running[i] = got
	}
	return running
}

// sh runs a script in a pod's container and returns its trimmed stdout; failing to run it or
// a non-zero exit fails the spec.
func sh(ctx context.Context, pod *corev1.Pod, container, script string) string {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	out, err := cluster.Sh(ctx, pod.Namespace, pod.Name, container, script)
	Expect(err).NotTo(HaveOccurred())
	return strings.TrimSpace(out)
}

// probeSh runs a script in the node probe on node.
func probeSh(ctx context.Context, node, script string) string {
	GinkgoHelper()
	p := probeFor(ctx, node)
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	out, err := p.Sh(ctx, script)
	Expect(err).NotTo(HaveOccurred())
	return strings.TrimSpace(out)
}

// kernelScript prints what a kernel says about itself.
const kernelScript = `echo "release=$(uname -r)"; echo "version=$(cat /proc/version)"; echo "bootid=$(cat /proc/sys/kernel/random/boot_id)"`

// kernelFacts is what a kernel says about itself.
type kernelFacts struct {
	Release string
	safety.Kernel
}

func parseKernel(out string) kernelFacts {
	kv := facts.KeyValues(out)
	return kernelFacts{Release: kv["release"], Kernel: safety.Kernel{BootID: kv["bootid"], ProcVersion: kv["version"]}}
}

// podKernel reads the kernel a pod's container runs on.
func podKernel(ctx context.Context, pod *corev1.Pod, container string) kernelFacts {
	GinkgoHelper()
	return parseKernel(sh(ctx, pod, container, kernelScript))
}

// nodeKernel reads the node's kernel: release and boot ID from the API (NodeInfo), /proc/version
// through the node probe. The probe's own boot ID and release must be the API's, or the probe
// does not run on the node's kernel and nothing it says about the node can be trusted.
func nodeKernel(ctx context.Context, node string) kernelFacts {
	GinkgoHelper()
	n, err := cluster.GetNode(ctx, node)
	Expect(err).NotTo(HaveOccurred())
	seen := parseKernel(probeSh(ctx, node, kernelScript))
	info := n.Status.NodeInfo
	Expect(seen.BootID).To(Equal(info.BootID),
		"the node probe (default runtime, hostPID) must run on the node's kernel: its boot_id is not NodeInfo.BootID")
	Expect(seen.Release).To(Equal(info.KernelVersion),
		"the node probe must run on the node's kernel: its uname -r is not NodeInfo.KernelVersion")
	Expect(seen.ProcVersion).NotTo(BeEmpty())
	return kernelFacts{Release: info.KernelVersion, Kernel: safety.Kernel{BootID: info.BootID, ProcVersion: seen.ProcVersion}}
}

// memTotal reads MemTotal (bytes) in a container.
func memTotal(ctx context.Context, pod *corev1.Pod, container string) int64 {
	GinkgoHelper()
	m, err := facts.MemTotal(sh(ctx, pod, container, "cat /proc/meminfo"))
	Expect(err).NotTo(HaveOccurred())
	return m
}

// nodeMemTotal reads the node's MemTotal (bytes) through the probe.
func nodeMemTotal(ctx context.Context, node string) int64 {
	GinkgoHelper()
	m, err := facts.MemTotal(probeSh(ctx, node, "cat /proc/meminfo"))
	Expect(err).NotTo(HaveOccurred())
	return m
}

// nodeProcesses lists every process on the node, through the probe.
func nodeProcesses(ctx context.Context, node string) []facts.Process {
	GinkgoHelper()
	procs := facts.Processes(probeSh(ctx, node, facts.ProcessListingScript))
	Expect(procs).NotTo(BeEmpty(), "the node probe listed no processes")
	return procs
}

// mib formats a byte count for messages.
func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }
