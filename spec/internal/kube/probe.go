package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Probe is a pod that looks at a node from the node's side: it runs with the cluster's default
// runtime (no runtimeClassName), in the node's PID namespace, privileged, with the node's root
// filesystem read-only at /host and the node's cgroup tree read-only at HostCgroup. The specs
// use it to read host facts (the node's processes, kernel, cgroups) and, in the destructive
// specs only, to kill a VMM.
type Probe struct {
	c    *Cluster
	NS   string
	Name string
	Node string
}

// HostCgroup is where the probe sees the node's /sys/fs/cgroup.
const HostCgroup = "/host-cgroup"

const probeContainer = "probe"

// StartProbe creates a probe pod on node and waits until it runs.
func (c *Cluster) StartProbe(ctx context.Context, ns, node, image string, timeout time.Duration) (*Probe, error) {
	name := "node-probe-" + node
	if len(name) > 63 {
		name = name[:63]
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "node-probe"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostPID:                       true,
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			AutomountServiceAccountToken:  ptr.To(false),
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:    probeContainer,
				Image:   image,
				Command: []string{"sh", "-c", `trap "exit 0" TERM; sleep 86400 & wait`},
				SecurityContext: &corev1.SecurityContext{
					Privileged: ptr.To(true),
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "host", MountPath: "/host", ReadOnly: true},
					{Name: "cgroup", MountPath: HostCgroup, ReadOnly: true},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}},
				{Name: "cgroup", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/sys/fs/cgroup"}}},
			},
		},
	}
	if _, err := c.CreatePod(ctx, pod); err != nil {
		return nil, err
	}
	if _, err := c.WaitForPod(ctx, ns, name, timeout, "running", Running); err != nil {
		return nil, err
	}
	return &Probe{c: c, NS: ns, Name: name, Node: node}, nil
}

// Sh runs a script in the probe and returns its stdout; a non-zero exit is an error.
func (p *Probe) Sh(ctx context.Context, script string) (string, error) {
	out, err := p.c.Sh(ctx, p.NS, p.Name, probeContainer, script)
	if err != nil {
		return out, fmt.Errorf("node probe on %s: %w", p.Node, err)
	}
	return out, nil
}
