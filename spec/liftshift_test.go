package spec

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/podvm/podvm/spec/internal/kube"
	"github.com/podvm/podvm/spec/internal/observe"
)

const (
	// probeSettle is how long the application runs after it is Ready before it is observed:
	// five periods of its 2 s liveness probe, so a probe that fails under one runtime shows up
	// as a restart.
	probeSettle = 10 * time.Second

	// appGracePeriod is the application's terminationGracePeriodSeconds: long enough that an
	// exit 0 with the trap's message can only come from the SIGTERM handler, not the SIGKILL
	// that ends the grace period.
	appGracePeriod = 30

	// Values the application is given; the baseline run must show them back (see
	// checkBaseline) before the two runs are compared.
	literalValue  = "hello world"
	configValue   = "hello from a configmap"
	secretValue   = "s3cr3t-t0ken"
	indexPage     = "<h1>served by the sidecar</h1>"
	terminationOK = "SIGTERM received after preStop"
)

var _ = Describe("An ordinary application", Label("lift-and-shift"), Ordered, ContinueOnFailure, func() {
	var baseline, underTest observe.Observation

	BeforeAll(func(ctx SpecContext) {
		createAppConfig(ctx)
		baseline = runApp(ctx, "baseline", *baselineClass)
		underTest = runApp(ctx, "class", *runtimeClass)
	}, NodeTimeout(2*(podStartTimeout+podDeleteTimeout+3*time.Minute)))

	It("works under the baseline runtime class (the reference is sound)", func() {
		checkBaseline(baseline)
	})

	It("behaves the same with only runtimeClassName changed", func() {
		base := fmt.Sprintf("baseline %q", *baselineClass)
		class := fmt.Sprintf("class %q", *runtimeClass)
		diffs := observe.Diff(base, baseline, class, underTest)
		AddReportEntry("observation under the class", underTest.String())
		Expect(diffs).To(BeEmpty(), "%d observations differ:\n%s", len(diffs), strings.Join(diffs, "\n"))
	})
})

// createAppConfig creates the ConfigMap and Secret the application reads.
func createAppConfig(ctx context.Context) {
	GinkgoHelper()
	_, err := cluster.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app-config"},
		Data:       map[string]string{"greeting": configValue, "app.conf": "mode=lift\nshift=true\n"},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = cluster.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "app-secret"},
		StringData: map[string]string{"token": secretValue, "password": "hunter2"},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// appScript is the application: it logs, answers probes through a file, and on SIGTERM logs
// and writes a termination message saying whether the preStop hook ran first.
const appScript = `trap 'msg="SIGTERM received"; [ -f /data/prestop.txt ] && msg="$msg after preStop"; echo "app: $msg"; echo "$msg" > /dev/termination-log; exit 0' TERM
echo "app: starting"
echo "app: LITERAL=$LITERAL"
echo "app: CONFIG_GREETING=$CONFIG_GREETING"
echo "app: init says $(cat /data/init.txt)"
touch /tmp/healthy
echo "app: running"
while :; do sleep 3600 & wait $!; done`

// appDeployment is an ordinary Deployment: probes of three kinds, env from literals, fields,
// resources, a ConfigMap and a Secret, ConfigMap/Secret/emptyDir volumes, an init container, a
// native sidecar, a preStop hook and a SIGTERM handler. Only runtimeClassName varies.
func appDeployment(name, class string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	fieldEnv := func(env, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	sidecar := shContainer("sidecar", `trap "exit 0" TERM; echo "sidecar: serving /www on 8080"; httpd -f -p 8080 -h /www & wait`)
	sidecar.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	sidecar.SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000)}
	sidecar.VolumeMounts = []corev1.VolumeMount{{Name: "www", MountPath: "/www", ReadOnly: true}}
	sidecar.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 2,
	}

	initC := shContainer("init", `echo "`+indexPage+`" > /www/index.html; echo "written by init" > /data/init.txt; echo "init: done"`)
	initC.VolumeMounts = []corev1.VolumeMount{{Name: "www", MountPath: "/www"}, {Name: "data", MountPath: "/data"}}

	app := shContainer("app", appScript)
	app.Env = []corev1.EnvVar{
		{Name: "LITERAL", Value: literalValue},
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("POD_IP", "status.podIP"),
		fieldEnv("NODE_NAME", "spec.nodeName"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		{Name: "MEMORY_LIMIT_MIB", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
		{Name: "CPU_REQUEST_MILLI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
			Resource: "requests.cpu", Divisor: resource.MustParse("1m")}}},
		{Name: "CONFIG_GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}, Key: "greeting"}}},
		{Name: "SECRET_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "app-secret"}, Key: "token"}}},
	}
	app.Resources = resources("50m", "32Mi", "", "128Mi")
	app.VolumeMounts = []corev1.VolumeMount{
		{Name: "config", MountPath: "/etc/app/config", ReadOnly: true},
		{Name: "secret", MountPath: "/etc/app/secret", ReadOnly: true},
		{Name: "data", MountPath: "/data"},
	}
	app.LivenessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/healthy"}}},
		PeriodSeconds: 2,
	}
	app.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 2,
	}
	app.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "echo preStop ran > /data/prestop.txt"}},
	}}

	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RuntimeClassName:              classPtr(class),
					TerminationGracePeriodSeconds: ptr.To[int64](appGracePeriod),
					SecurityContext:               &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2000)},
					InitContainers:                []corev1.Container{initC, sidecar},
					Containers:                    []corev1.Container{app},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: "app-config"}}}},
						{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: "app-secret", DefaultMode: ptr.To[int32](0o440)}}},
						{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "www", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}

// appExecs are the commands run in the application's containers once it is Ready; each
// output is an observation.
var appExecs = []struct{ key, container, script string }{
	{"env", "app", "env | sort"},
	{"id", "app", "id"},
	{"sidecar-id", "sidecar", "id"},
	{"hostname-is-pod-name", "app", `[ "$(hostname)" = "$POD_NAME" ] && echo yes || echo no`},
	{"config-files", "app", "ls /etc/app/config; cat /etc/app/config/greeting; echo; cat /etc/app/config/app.conf"},
	{"secret-files", "app", "ls /etc/app/secret; cat /etc/app/secret/token"},
	{"modes", "app", "stat -L -c '%a %u %g %n' /etc/app/config/greeting /etc/app/secret/token /data /data/init.txt 2>&1; true"},
	{"read-only-config", "app", "touch /etc/app/config/new 2>/dev/null && echo writable || echo read-only"},
	{"emptydir-write", "app", "echo scratch > /data/scratch.txt && cat /data/scratch.txt"},
	{"http-from-app", "app", "wget -q -O - http://127.0.0.1:8080/index.html"},
	{"serviceaccount", "app", "ls /var/run/secrets/kubernetes.io/serviceaccount; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace"},
	{"resolv.conf", "app", "cat /etc/resolv.conf"},
	{"hosts", "app", "cat /etc/hosts"},
	{"cwd-and-umask", "app", "pwd; umask"},
}

// runApp deploys the application under one runtime class, observes it, scales it to zero to
// observe its termination, and removes it.
func runApp(ctx context.Context, variant, class string) observe.Observation {
	GinkgoHelper()
	By(fmt.Sprintf("running the application with runtime class %q", class))
	name := "app-" + variant
	deps := cluster.Client.AppsV1().Deployments(ns)
	_, err := deps.Create(ctx, appDeployment(name, class), metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx SpecContext) {
		_ = deps.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	})

	pod := waitForAppPod(ctx, name)
	time.Sleep(probeSettle)
	pod, err = cluster.GetPod(ctx, ns, pod.Name)
	Expect(err).NotTo(HaveOccurred())

	o := observe.Observation{}
	o["status/pod-ready"] = fmt.Sprint(kube.PodReady(pod))
	o["status/phase"] = string(pod.Status.Phase)
	o["status/qos"] = string(pod.Status.QOSClass)
	for _, c := range []string{"init", "sidecar", "app"} {
		s, ok := kube.ContainerStatus(pod, c)
		o["status/"+c] = fmt.Sprintf("found=%v ready=%v started=%v restarts=%d state=%s", ok, s.Ready, ptr.Deref(s.Started, false), s.RestartCount, stateOf(s.State))
	}
	for _, e := range appExecs {
		res, err := execIn(ctx, pod, e.container, []string{"sh", "-c", e.script}, nil)
		Expect(err).NotTo(HaveOccurred(), "exec %s", e.key)
		o["exec/"+e.key] = res.Stdout
	}
	res, err := execIn(ctx, pod, "app", []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"}, nil)
	Expect(err).NotTo(HaveOccurred())
	o["exec/streams"] = fmt.Sprintf("stdout=%q stderr=%q exit=%d", res.Stdout, res.Stderr, res.ExitCode)
	res, err = execIn(ctx, pod, "app", []string{"cat"}, strings.NewReader("piped through exec\n"))
	Expect(err).NotTo(HaveOccurred())
	o["exec/stdin"] = res.Stdout
	for _, c := range []string{"init", "sidecar", "app"} {
		log, err := cluster.Logs(ctx, ns, pod.Name, c, false)
		Expect(err).NotTo(HaveOccurred())
		o["logs/"+c] = log
	}

	By("scaling the application to zero to watch it terminate")
	followCtx, cancelFollow := context.WithTimeout(ctx, podDeleteTimeout)
	defer cancelFollow()
	logDone := make(chan string, 1)
	go func() {
		defer GinkgoRecover()
		log, _ := cluster.FollowLogs(followCtx, ns, pod.Name, "app")
		logDone <- log
	}()
	watchCtx, cancelWatch := context.WithTimeout(ctx, podDeleteTimeout)
	defer cancelWatch()
	final := make(chan *corev1.Pod, 1)
	go func() {
		defer GinkgoRecover()
		p, err := cluster.WatchUntilDeleted(watchCtx, ns, pod.Name)
		if err != nil {
			fmt.Fprintf(GinkgoWriter, "watching %s: %v\n", pod.Name, err)
		}
		final <- p
	}()
	_, err = deps.Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
	last := <-final
	Expect(last).NotTo(BeNil(), "the pod's last state was not seen")
	select {
	case log := <-logDone:
		o["logs/app-through-termination"] = log
	case <-time.After(time.Minute):
		o["logs/app-through-termination"] = "(log stream did not end)"
	}
	for _, c := range []string{"sidecar", "app"} {
		s, _ := kube.ContainerStatus(last, c)
		o["termination/"+c] = stateOf(s.State)
	}

	return o.Normalize(observe.NewReplacer(map[string]string{
		"<pod-name>":   pod.Name,
		"<pod-ip>":     pod.Status.PodIP,
		"<pod-uid>":    string(pod.UID),
		"<node-name>":  pod.Spec.NodeName,
		"<deployment>": name,
	}))
}

// waitForAppPod waits until the Deployment's one pod runs and is Ready.
func waitForAppPod(ctx context.Context, name string) *corev1.Pod {
	GinkgoHelper()
	var podName string
	Eventually(func(g Gomega) {
		list, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(list.Items).To(HaveLen(1))
		podName = list.Items[0].Name
	}).WithContext(ctx).WithTimeout(podStartTimeout).WithPolling(time.Second).Should(Succeed(), "deployment %s has no pod", name)
	pod, err := cluster.WaitForPod(ctx, ns, podName, podStartTimeout, "running and ready", kube.Running)
	Expect(err).NotTo(HaveOccurred())
	return pod
}

// execIn runs a command in a container with the default exec deadline.
func execIn(ctx context.Context, pod *corev1.Pod, container string, cmd []string, stdin io.Reader) (kube.ExecResult, error) {
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	return cluster.Exec(ctx, pod.Namespace, pod.Name, container, cmd, stdin)
}

// stateOf describes a container state without its timestamps or IDs.
func stateOf(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return "waiting " + s.Waiting.Reason
	case s.Terminated != nil:
		return fmt.Sprintf("terminated exit=%d reason=%s signal=%d message=%q",
			s.Terminated.ExitCode, s.Terminated.Reason, s.Terminated.Signal, strings.TrimSpace(s.Terminated.Message))
	}
	return "none"
}

// checkBaseline asserts that the baseline run shows what the application was built to show,
// so that two runs agreeing cannot mean two runs failing alike.
func checkBaseline(o observe.Observation) {
	GinkgoHelper()
	want := map[string]string{
		"status/pod-ready":          "true",
		"status/app":                "found=true ready=true started=true restarts=0 state=running",
		"status/sidecar":            "found=true ready=true started=true restarts=0 state=running",
		"exec/http-from-app":        indexPage,
		"exec/read-only-config":     "read-only",
		"exec/stdin":                "piped through exec",
		"exec/streams":              `stdout="to-stdout\n" stderr="to-stderr\n" exit=3`,
		"termination/app":           fmt.Sprintf("terminated exit=0 reason=Completed signal=0 message=%q", terminationOK),
		"exec/hostname-is-pod-name": "yes",
		"termination/sidecar":       `terminated exit=0 reason=Completed signal=0 message=""`,
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		Expect(o[k]).To(Equal(want[k]), "baseline observation %s", k)
	}
	Expect(o["status/init"]).To(And(HavePrefix("found=true"), ContainSubstring("restarts=0 state=terminated exit=0 reason=Completed")))
	for _, s := range []string{"LITERAL=" + literalValue, "CONFIG_GREETING=" + configValue, "SECRET_TOKEN=" + secretValue,
		"POD_NAME=<pod-name>", "POD_IP=<pod-ip>", "MEMORY_LIMIT_MIB=128", "CPU_REQUEST_MILLI=50", "SERVICE_ACCOUNT=default"} {
		Expect(o["exec/env"]).To(ContainSubstring(s), "baseline environment")
	}
	Expect(o["logs/app-through-termination"]).To(ContainSubstring("app: "+terminationOK), "the SIGTERM handler's log line")
	Expect(o["logs/init"]).To(Equal("init: done"))
}
