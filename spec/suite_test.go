package spec

import (
	"context"
	"flag"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/podvm/podvm/spec/internal/kube"
)

var (
	kubeconfig    = flag.String("kubeconfig", "", "kubeconfig of the cluster to run the specs against; without it the suite is skipped")
	runtimeClass  = flag.String("runtime-class", "", `RuntimeClass under test (required; "" means no runtimeClassName: the cluster's default runtime)`)
	baselineClass = flag.String("baseline-runtime-class", "", `RuntimeClass the lift-and-shift spec compares against ("" is the cluster's default runtime)`)
	image         = flag.String("image", "docker.io/library/busybox:1.37", "busybox image every spec pod runs (sh, head, tail, md5sum, nproc, httpd, wget, ...)")
	nsPrefix      = flag.String("namespace-prefix", "podvm-spec", "prefix of the namespace each run creates and deletes")
	vmmRegex      = flag.String("vmm-process-regex", "qemu-system|cloud-hyperviso|firecracker", "regular expression for a VMM's process name or executable, used by the blast-radius spec that kills one")
)

// The timeouts are generous on purpose: under software emulation (QEMU TCG on 2 cores) a pod
// VM takes 3-8 s to run and a busy node can take much longer; a timeout only bounds a hang.
const (
	// podStartTimeout bounds scheduling, image pull, sandbox (VM) start and readiness.
	podStartTimeout = 4 * time.Minute
	// podDeleteTimeout bounds graceful termination (our pods stop on SIGTERM) and teardown.
	podDeleteTimeout = 3 * time.Minute
	// execTimeout bounds a short command run in a container (about 0.3 s under TCG).
	execTimeout = time.Minute
	// namespaceDeleteTimeout bounds the final cleanup of everything a run created.
	namespaceDeleteTimeout = 5 * time.Minute
)

var (
	cluster *kube.Cluster
	ns      string // the run's namespace
	vmmRE   *regexp.Regexp

	probesMu sync.Mutex
	probes   = map[string]*kube.Probe{}
)

func TestSpecs(t *testing.T) {
	if *kubeconfig == "" {
		t.Skip("isolation specs skipped: no --kubeconfig given (they need a cluster; see docs/specs.md)")
	}
	if !flagSet("runtime-class") {
		t.Fatal(`--runtime-class is required: the RuntimeClass under test, or "" for the cluster's default runtime`)
	}
	RegisterFailHandler(Fail)
	RunSpecs(t, "podvm isolation specs")
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

var _ = BeforeSuite(func(ctx SpecContext) {
	var err error
	vmmRE, err = regexp.Compile(*vmmRegex)
	Expect(err).NotTo(HaveOccurred(), "--vmm-process-regex")
	cluster, err = kube.Connect(*kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	cluster.UsedPod = noteUsedPod
	ns, err = cluster.CreateNamespace(ctx, *nsPrefix)
	Expect(err).NotTo(HaveOccurred())
	// Registered at once, so the namespace goes also when a spec fails or the run is interrupted.
	DeferCleanup(func(ctx SpecContext) {
		Expect(cluster.DeleteNamespace(ctx, ns, namespaceDeleteTimeout)).To(Succeed())
	}, NodeTimeout(namespaceDeleteTimeout+time.Minute))
	fmt.Fprintf(GinkgoWriter, "runtime class under test %q, baseline %q, namespace %s, image %s\n",
		*runtimeClass, *baselineClass, ns, *image)
}, NodeTimeout(2*time.Minute))

// UsedPodEntry names the report entries that say which pods a spec used ("namespace/name", once
// per spec and pod; never printed, always in the JSON report): the conformance harness reads
// them to tell on which pod VMs each spec ran (conformance/specorigin.go).
const UsedPodEntry = "podvm-used-pod"

var (
	usedMu sync.Mutex
	used   = map[string]bool{}
)

// noteUsedPod records that the running spec used a pod (kube.Cluster.UsedPod).
func noteUsedPod(ns, name string) {
	pod := ns + "/" + name
	key := CurrentSpecReport().FullText() + "\x00" + pod
	usedMu.Lock()
	seen := used[key]
	used[key] = true
	usedMu.Unlock()
	if !seen {
		AddReportEntry(UsedPodEntry, pod, ReportEntryVisibilityNever)
	}
}

// probeFor returns the node probe on node, starting it on first use. Probes live in the run's
// namespace and go with it.
func probeFor(ctx context.Context, node string) *kube.Probe {
	GinkgoHelper()
	probesMu.Lock()
	defer probesMu.Unlock()
	if p, ok := probes[node]; ok {
		return p
	}
	p, err := cluster.StartProbe(ctx, ns, node, *image, podStartTimeout)
	Expect(err).NotTo(HaveOccurred(), "start the node probe on %s", node)
	probes[node] = p
	return p
}
