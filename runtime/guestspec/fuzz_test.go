package guestspec

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api/contract"
)

// FuzzRewrite feeds Rewrite any spec JSON (a container's config.json is
// written by whoever calls containerd) and any container id, and checks
// what the guest spec must never do, whatever the input: name a host
// path the share does not hold, keep a host device, hook or namespace
// path, or escape the container's own directory in the share; and the
// input spec is never modified.
func FuzzRewrite(f *testing.F) {
	seed, _ := json.Marshal(baseSpec())
	f.Add(seed, "c1", true, uint32(7), "/kubepods/pod1")
	f.Add([]byte(`{"root":{"path":"../../.."},"process":{"args":["sh"]},"mounts":[{"destination":"/../../etc","type":"bind","source":"/","options":["rbind","rw"]},{"destination":"/dev/shm","type":"bind","source":"/dev/shm"}],"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"},{"type":"network","path":"/var/run/netns/x"},{"type":"user","path":"/proc/1/ns/user"}],"devices":[{"path":"/dev/mem","type":"c","major":1,"minor":1}],"cgroupsPath":"a:b:c"}}`), "..", false, uint32(0), "")
	f.Add([]byte(`{"root":{"path":"r"},"process":{},"hooks":{"prestart":[{"path":"/bin/evil"}]},"linux":{"cgroupsPath":"/../../x","resources":{"blockIO":{"weight":10},"memory":{"limit":-1}}}}`), "a/b", true, uint32(1), "/podvm")
	f.Add([]byte(`{"root":{"path":"r"},"process":{},"mounts":[{"destination":"/v","type":"none","source":"/host","options":["rbind","rslave","ro"]}]}`), "x.y-z_1", true, uint32(3), "/kubepods/burstable/pod-1")
	f.Add([]byte(`null`), "", false, uint32(0), "")
	f.Fuzz(func(t *testing.T, data []byte, id string, pod bool, sandboxPid uint32, podCgroup string) {
		var s specs.Spec
		if json.Unmarshal(data, &s) != nil {
			return
		}
		before, _ := json.Marshal(&s)
		// Every recursive bind has one host submount, shared on its own.
		subs := func(string) ([]Submount, error) { return []Submount{{Rel: "sub", Options: []string{"ro"}}}, nil }
		g, res, err := Rewrite(&s, id, Options{Pod: pod, SandboxGuestPid: sandboxPid, PodCgroup: podCgroup, Submounts: subs})
		if after, _ := json.Marshal(&s); string(after) != string(before) {
			t.Fatalf("Rewrite modified its input")
		}
		if err != nil {
			return
		}
		if strings.Contains(id, "/") || id == "" || id == "." || id == ".." {
			t.Fatalf("id %q accepted", id)
		}
		containerDir := path.Join(contract.GuestSharedDir, id)
		if g.Root.Path != path.Join(containerDir, "rootfs") {
			t.Errorf("root %q is not the container's rootfs in the share", g.Root.Path)
		}
		if g.Hooks != nil || g.Process.ApparmorProfile != "" || g.Process.SelinuxLabel != "" {
			t.Errorf("hooks or LSM labels kept")
		}
		for i, sh := range res.Shares {
			if want := path.Join(id, "mounts", fmt.Sprint(i)); sh.ShareRel != want {
				t.Errorf("share %d at %q, want %q", i, sh.ShareRel, want)
			}
		}
		shared := map[string]bool{}
		for _, sh := range res.Shares {
			shared[path.Join(contract.GuestSharedDir, sh.ShareRel)] = true
		}
		for _, m := range g.Mounts {
			if isBind(m) && !shared[m.Source] {
				t.Errorf("guest bind mount of %q, which the share does not hold", m.Source)
			}
		}
		if g.Linux != nil {
			if len(g.Linux.Devices) != 0 || g.Linux.MountLabel != "" {
				t.Errorf("host devices or mount label kept")
			}
			for _, ns := range g.Linux.Namespaces {
				if ns.Path == "" {
					continue
				}
				if sandboxPid == 0 || ns.Path != fmt.Sprintf("/proc/%d/ns/%s", sandboxPid, nsFile[ns.Type]) {
					t.Errorf("namespace %s path %q is not the sandbox container's", ns.Type, ns.Path)
				}
			}
			if r := g.Linux.Resources; r != nil && (r.BlockIO != nil || r.HugepageLimits != nil || r.Rdma != nil) {
				t.Errorf("host-only resources kept")
			}
		}
	})
}
