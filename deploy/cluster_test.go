package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fakeCluster answers kubectl as a cluster whose one node's installer
// becomes ready at the third look.
type fakeCluster struct {
	calls   []string
	looks   int
	labels  string
	podsAll string
}

func (f *fakeCluster) kubectl() Kubectl {
	return Kubectl{run: func(_ context.Context, stdin []byte, args ...string) ([]byte, error) {
		cmd := strings.Join(args, " ")
		f.calls = append(f.calls, cmd)
		switch {
		case strings.HasPrefix(cmd, "apply"), strings.HasPrefix(cmd, "delete"):
			if len(stdin) == 0 && args[0] == "apply" {
				return nil, fmt.Errorf("apply without manifests")
			}
			return nil, nil
		case strings.HasPrefix(cmd, "get daemonset"):
			f.looks++
			ready := 0
			if f.looks >= 3 {
				ready = 1
			}
			return fmt.Appendf(nil, `{"metadata":{"generation":1},"status":{"observedGeneration":1,"desiredNumberScheduled":1,"updatedNumberScheduled":1,"numberReady":%d}}`, ready), nil
		case strings.HasPrefix(cmd, "get pods -n"):
			ready := f.looks >= 3
			return fmt.Appendf(nil, `{"items":[{"metadata":{"name":"podvm-installer-x"},"spec":{"nodeName":"n1"},"status":{"phase":"Running","containerStatuses":[{"ready":%v,"restartCount":0,"state":{}}]}}]}`, ready), nil
		case strings.HasPrefix(cmd, "get pods --all-namespaces"):
			return []byte(f.podsAll), nil
		case strings.HasPrefix(cmd, "get nodes"):
			return []byte(f.labels), nil
		}
		return nil, fmt.Errorf("unexpected kubectl %s", cmd)
	}}
}

func TestInstallWaitsForEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("polls every 2 s")
	}
	f := &fakeCluster{labels: "n1"}
	var out bytes.Buffer
	nodes, err := Install(context.Background(), f.kubectl(), testOptions(), time.Minute, &out)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	if len(nodes) != 1 || nodes[0] != "n1" {
		t.Errorf("nodes = %v", nodes)
	}
	for _, want := range []string{"node n1: pod podvm-installer-x running, not done yet", "node n1: done (pod podvm-installer-x)", "podvm is ready on 1 node(s): n1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUninstallRefusesWhilePodVMPodsExist(t *testing.T) {
	f := &fakeCluster{podsAll: `{"items":[
		{"metadata":{"name":"web","namespace":"shop"},"spec":{"runtimeClassName":"podvm"},"status":{"phase":"Running"}},
		{"metadata":{"name":"done","namespace":"shop"},"spec":{"runtimeClassName":"podvm"},"status":{"phase":"Succeeded"}},
		{"metadata":{"name":"plain","namespace":"shop"},"spec":{},"status":{"phase":"Running"}}]}`}
	err := Uninstall(context.Background(), f.kubectl(), testOptions(), time.Minute, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "1 pod(s) still run with runtimeClassName podvm: shop/web") {
		t.Fatalf("err = %v", err)
	}
	for _, c := range f.calls {
		if strings.HasPrefix(c, "delete") || strings.HasPrefix(c, "apply") {
			t.Errorf("changed the cluster despite running pods: %s", c)
		}
	}
}

func TestDaemonSetStateDone(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   daemonSetState
		want bool
	}{
		{"all ready", daemonSetState{Generation: 2, ObservedGeneration: 2, Desired: 2, Updated: 2, Ready: 2, Nodes: map[string]string{"a": "", "b": ""}}, true},
		{"old generation", daemonSetState{Generation: 2, ObservedGeneration: 1, Desired: 2, Updated: 2, Ready: 2, Nodes: map[string]string{"a": "", "b": ""}}, false},
		{"one not ready", daemonSetState{Generation: 1, ObservedGeneration: 1, Desired: 2, Updated: 2, Ready: 1, Nodes: map[string]string{"a": "", "b": ""}, NotReady: map[string]string{"b": "p"}}, false},
		{"no nodes", daemonSetState{Generation: 1, ObservedGeneration: 1}, false},
		{"pod of an old node still listed", daemonSetState{Generation: 1, ObservedGeneration: 1, Desired: 1, Updated: 1, Ready: 1, Nodes: map[string]string{"a": "", "b": ""}}, false},
	} {
		if got := tc.st.done(); got != tc.want {
			t.Errorf("%s: done = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestDescribeInitContainer(t *testing.T) {
	for _, tc := range []struct {
		status    string
		wantDesc  string
		wantReady bool
	}{
		{`{"initContainerStatuses":[{"restartCount":2,"state":{"waiting":{"reason":"CrashLoopBackOff","message":"back-off"}},"lastState":{"terminated":{"exitCode":1}}}],
			"containerStatuses":[{"state":{"waiting":{"reason":"PodInitializing"}}}]}`, "pod p CrashLoopBackOff, 2 restart(s), last exit 1", false},
		{`{"initContainerStatuses":[{"state":{"running":{}}}],"containerStatuses":[{"state":{"waiting":{"reason":"PodInitializing"}}}]}`,
			"pod p running, not done yet", false},
		{`{"initContainerStatuses":[{"state":{"terminated":{"exitCode":0}}}],"containerStatuses":[{"ready":true,"state":{}}]}`, "done (pod p)", true},
	} {
		var p installerPod
		if err := json.Unmarshal([]byte(`{"metadata":{"name":"p"},"status":`+tc.status+`}`), &p); err != nil {
			t.Fatal(err)
		}
		if desc, ready, _ := p.describe(); desc != tc.wantDesc || ready != tc.wantReady {
			t.Errorf("describe = %q, %v; want %q, %v", desc, ready, tc.wantDesc, tc.wantReady)
		}
	}
}
