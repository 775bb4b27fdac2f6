package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func pod(phase corev1.PodPhase, ready bool, statuses ...corev1.ContainerStatus) *corev1.Pod {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	return &corev1.Pod{Status: corev1.PodStatus{
		Phase:             phase,
		Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}},
		ContainerStatuses: statuses,
	}}
}

var (
	running    = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	terminated = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}
)

func TestRunning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		ok      bool
		wantErr bool
	}{
		{"pending", pod(corev1.PodPending, false), false, false},
		{"running, not ready", pod(corev1.PodRunning, false), false, false},
		{"running and ready", pod(corev1.PodRunning, true), true, false},
		{"failed ends the wait", pod(corev1.PodFailed, false), false, true},
		{"succeeded ends the wait", pod(corev1.PodSucceeded, false), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := Running(tc.pod)
			if ok != tc.ok || (err != nil) != tc.wantErr {
				t.Fatalf("Running = %v, %v; want %v, err=%v", ok, err, tc.ok, tc.wantErr)
			}
		})
	}
}

func TestRestartedPast(t *testing.T) {
	cond := RestartedPast("c", 0)
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		ok   bool
	}{
		{"no status yet", pod(corev1.PodRunning, true), false},
		{"not restarted", pod(corev1.PodRunning, true, corev1.ContainerStatus{Name: "c", State: running}), false},
		{"restarted, not running yet", pod(corev1.PodRunning, false, corev1.ContainerStatus{Name: "c", RestartCount: 1, State: terminated}), false},
		{"restarted, running, not ready", pod(corev1.PodRunning, false, corev1.ContainerStatus{Name: "c", RestartCount: 1, State: running}), false},
		{"restarted and ready", pod(corev1.PodRunning, true, corev1.ContainerStatus{Name: "c", RestartCount: 1, State: running}), true},
		{"another container restarted", pod(corev1.PodRunning, true, corev1.ContainerStatus{Name: "d", RestartCount: 3, State: running}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok, _ := cond(tc.pod); ok != tc.ok {
				t.Fatalf("RestartedPast = %v; want %v", ok, tc.ok)
			}
		})
	}
}

func TestTerminatedAndContainerStatus(t *testing.T) {
	p := pod(corev1.PodFailed, false, corev1.ContainerStatus{Name: "c", State: terminated})
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: running}}
	if ok, _ := Terminated("c")(p); !ok {
		t.Error("Terminated(c) = false for a terminated container")
	}
	if ok, _ := Terminated("init")(p); ok {
		t.Error("Terminated(init) = true for a running init container")
	}
	if _, found := ContainerStatus(p, "init"); !found {
		t.Error("ContainerStatus does not find init containers")
	}
	if _, found := ContainerStatus(p, "missing"); found {
		t.Error("ContainerStatus found a container that does not exist")
	}
}

func TestNodeReady(t *testing.T) {
	n := &corev1.Node{}
	if NodeReady(n) {
		t.Error("a node without conditions is Ready")
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse}, {Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if !NodeReady(n) {
		t.Error("a Ready node is not Ready")
	}
}
