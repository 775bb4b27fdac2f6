package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
)

// pollInterval is how often waits look at a pod: short next to the seconds a pod VM takes to
// start under emulation, long enough not to load the API server.
const pollInterval = 500 * time.Millisecond

// CreatePod creates a pod and returns it as the API server stored it.
func (c *Cluster) CreatePod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	c.used(pod.Namespace, pod.Name)
	got, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return got, nil
}

// GetPod reads a pod.
func (c *Cluster) GetPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	return c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
}

// PodCondition decides whether a pod has reached what a wait is for. It returns an error to
// stop the wait early when the pod can no longer get there.
type PodCondition func(*corev1.Pod) (bool, error)

// WaitForPod polls a pod until cond holds, cond fails, or timeout passes. On failure the error
// carries the pod's status and events, which is what a reader needs to see why.
func (c *Cluster) WaitForPod(ctx context.Context, ns, name string, timeout time.Duration, what string, cond PodCondition) (*corev1.Pod, error) {
	c.used(ns, name)
	var last *corev1.Pod
	var condErr error
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.GetPod(ctx, ns, name)
		if err != nil {
			return false, nil // transient API errors: keep polling until the timeout
		}
		last = p
		ok, err := cond(p)
		if err != nil {
			condErr = err
			return false, err
		}
		return ok, nil
	})
	if err == nil {
		return last, nil
	}
	if condErr != nil {
		err = condErr
	}
	return last, fmt.Errorf("pod %s/%s did not become %s within %s: %w\n%s", ns, name, what, timeout, err, c.Diagnose(ctx, ns, name))
}

// Running holds once every container of the pod runs and the pod is Ready. It fails early
// when the pod has ended, since a pod that ended will not run again by itself.
func Running(p *corev1.Pod) (bool, error) {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return false, fmt.Errorf("pod ended in phase %s", p.Status.Phase)
	}
	return p.Status.Phase == corev1.PodRunning && PodReady(p), nil
}

// PodReady reports the pod's Ready condition.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ContainerStatus finds a container's status among regular and init containers.
func ContainerStatus(p *corev1.Pod, name string) (corev1.ContainerStatus, bool) {
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for _, s := range list {
			if s.Name == name {
				return s, true
			}
		}
	}
	return corev1.ContainerStatus{}, false
}

// Terminated holds once the named container has terminated.
func Terminated(container string) PodCondition {
	return func(p *corev1.Pod) (bool, error) {
		s, ok := ContainerStatus(p, container)
		return ok && s.State.Terminated != nil, nil
	}
}

// RestartedPast holds once the named container has restarted more than `before` times and
// runs again, and the pod is Ready.
func RestartedPast(container string, before int32) PodCondition {
	return func(p *corev1.Pod) (bool, error) {
		s, ok := ContainerStatus(p, container)
		if !ok {
			return false, nil
		}
		return s.RestartCount > before && s.State.Running != nil && PodReady(p), nil
	}
}

// DeletePod deletes a pod with the given grace period (nil: the pod's own) and waits until the
// API server no longer has it, which is after the kubelet has stopped its containers.
func (c *Cluster) DeletePod(ctx context.Context, ns, name string, grace *int64, timeout time.Duration) error {
	err := c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: grace})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	return c.WaitPodGone(ctx, ns, name, timeout)
}

// WaitPodGone waits until a pod no longer exists.
func (c *Cluster) WaitPodGone(ctx context.Context, ns, name string, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := c.GetPod(ctx, ns, name)
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("pod %s/%s still there after %s: %w\n%s", ns, name, timeout, err, c.Diagnose(ctx, ns, name))
	}
	return nil
}

// Logs returns a container's log; previous selects the log of its last terminated instance.
func (c *Cluster) Logs(ctx context.Context, ns, pod, container string, previous bool) (string, error) {
	c.used(ns, pod)
	raw, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s[%s]: %w", ns, pod, container, err)
	}
	return string(raw), nil
}

// FollowLogs streams a container's log until the container ends or ctx is done, and returns
// everything read. Start it before stopping a container to keep what it says on its way out.
func (c *Cluster) FollowLogs(ctx context.Context, ns, pod, container string) (string, error) {
	c.used(ns, pod)
	stream, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("follow logs of %s/%s[%s]: %w", ns, pod, container, err)
	}
	defer stream.Close()
	var b strings.Builder
	_, err = io.Copy(&b, stream)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return b.String(), fmt.Errorf("follow logs of %s/%s[%s]: %w", ns, pod, container, err)
	}
	return b.String(), nil
}

// Diagnose describes a pod for a failure message: phase, conditions, each container's state,
// and the pod's events in time order.
func (c *Cluster) Diagnose(ctx context.Context, ns, name string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var b strings.Builder
	p, err := c.GetPod(ctx, ns, name)
	if err != nil {
		fmt.Fprintf(&b, "pod %s/%s: %v\n", ns, name, err)
	} else {
		fmt.Fprintf(&b, "pod %s/%s phase=%s node=%s reason=%q message=%q\n", ns, name, p.Status.Phase, p.Spec.NodeName, p.Status.Reason, p.Status.Message)
		for _, cond := range p.Status.Conditions {
			fmt.Fprintf(&b, "  condition %s=%s %s %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
		}
		for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
			for _, s := range list {
				fmt.Fprintf(&b, "  container %s restarts=%d ready=%v state=%s last=%s\n", s.Name, s.RestartCount, s.Ready, describeState(s.State), describeState(s.LastTerminationState))
			}
		}
	}
	evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
	})
	if err == nil {
		items := evs.Items
		sort.SliceStable(items, func(i, j int) bool { return items[i].LastTimestamp.Before(&items[j].LastTimestamp) })
		for _, e := range items {
			fmt.Fprintf(&b, "  event %s %s (x%d): %s\n", e.Type, e.Reason, e.Count, strings.TrimSpace(e.Message))
		}
	}
	return b.String()
}

func describeState(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return fmt.Sprintf("waiting(%s: %s)", s.Waiting.Reason, s.Waiting.Message)
	case s.Terminated != nil:
		return fmt.Sprintf("terminated(exit %d, %s: %s)", s.Terminated.ExitCode, s.Terminated.Reason, strings.TrimSpace(s.Terminated.Message))
	}
	return "none"
}

// WatchUntilDeleted follows a pod until the API server deletes it and returns the last state
// it had, which holds its containers' final exit codes, reasons and termination messages.
func (c *Cluster) WatchUntilDeleted(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	var last *corev1.Pod
	refresh := true
	for {
		if refresh {
			p, err := c.GetPod(ctx, ns, name)
			switch {
			case apierrors.IsNotFound(err) && last != nil:
				return last, nil
			case apierrors.IsNotFound(err):
				return nil, fmt.Errorf("pod %s/%s is already gone", ns, name)
			case err != nil:
				return last, err
			}
			last, refresh = p, false
		}
		w, err := c.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
			ResourceVersion: last.ResourceVersion,
		})
		if err != nil {
			return last, fmt.Errorf("watch pod %s/%s: %w", ns, name, err)
		}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				refresh = true // a watch error (say, a version too old): read the pod afresh
				continue
			}
			last = p
			if ev.Type == watch.Deleted {
				w.Stop()
				return last, nil
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return last, fmt.Errorf("pod %s/%s not deleted: %w", ns, name, ctx.Err())
		}
		// The watch closed early (an API server timeout): open it again, checking first that
		// the pod was not deleted in between.
		refresh = true
	}
}
