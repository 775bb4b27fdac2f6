package integration

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/podvm/podvm/internal/hostbed"
)

// nnpImage is busybox with testbin as /usr/local/bin/nnp, setuid root in
// the image: it prints "Effective uid: N" (hostbed's CritestImages).
const nnpImage = "registry.k8s.io/e2e-test-images/nonewprivs:1.3"

// setuidAttack is what guest root tries, through a read-write hostPath
// volume (/rw) and through its rootfs layer (/a, /bin): a setuid or setgid
// copy of an executable made by chmod, by creating it with the mode (cp
// -p), after chown to root, on a file the host owns, on an image file
// (copied up by overlayfs), and by rewriting a setuid file the host put
// there. Each line runs on its own; its outcome in the guest is only
// logged: what counts is what the host has afterwards.
var setuidAttack = []string{
	"mkdir -p /rw/chmod /a/chmod && cp /usr/local/bin/nnp /rw/chmod/nnp && chmod 6755 /rw/chmod/nnp && cp /usr/local/bin/nnp /a/chmod/nnp && chmod 6755 /a/chmod/nnp",
	"mkdir -p /rw/cpp /a/cpp && cp -p /usr/local/bin/nnp /rw/cpp/nnp && cp -p /usr/local/bin/nnp /a/cpp/nnp",
	"mkdir -p /rw/chown /a/chown && cp /usr/local/bin/nnp /rw/chown/nnp && chown 0:0 /rw/chown/nnp && chmod 6755 /rw/chown/nnp && cp /usr/local/bin/nnp /a/chown/nnp && chown 0:0 /a/chown/nnp && chmod 6755 /a/chown/nnp",
	"chmod 6755 /rw/host/nnp",
	"chmod 6755 /bin/busybox",
	"cat /usr/local/bin/nnp > /rw/hostsuid/nnp",
	"mkdir -p /rw/sgid && chmod 2777 /rw/sgid && cp /usr/local/bin/nnp /rw/sgid/nnp && chmod 2755 /rw/sgid/nnp",
	"stat -c '%n %u:%g %A' /rw/*/nnp /a/*/nnp /bin/busybox",
}

// TestBoundaryGuestSetuidIntegration is hole 5's setuid half with the guest
// as the attacker (docs/security.md H5): root of the guest (a privileged
// container) leaves no setuid or setgid executable on the host, neither in
// a read-write volume nor in its rootfs layer, and none of what it left
// gives a host user another euid. An image's setuid-root binary still
// gives a non-root container process euid 0 inside the guest. It runs on
// a booted pod VM (virtiofsd serves the share) and on a clone of a VM
// template (the share goes through QEMU's 9p proxy helper, which runs as
// root with CAP_FSETID: the set-id filter alone keeps the modes off).
func TestBoundaryGuestSetuidIntegration(t *testing.T) {
	onBootedAndClone(t, guestSetuidBoundary)
}

// onBootedAndClone runs a boundary attack (which returns its pod) in
// subtest booted on a booted pod VM and in subtest clone on a clone of a
// VM template, which must be a clone whose share one 9p proxy helper serves.
func onBootedAndClone(t *testing.T, attack func(t *testing.T, h *criHarness, handler string) string) {
	t.Run("booted", func(t *testing.T) {
		attack(t, startCRIHarness(t), "podvm")
	})
	t.Run("clone", func(t *testing.T) {
		h, _, _ := startTemplateHarness(t)
		pod := attack(t, h, templateHandler)
		requireCloned(t, h.c.LogPath, pod)
		if n := proxyHelpers(pod); n != 1 {
			t.Errorf("pod %s: %d 9p proxy helpers serve its share; want 1", pod, n)
		}
	})
}

// guestSetuidBoundary runs the attack in a pod of handler on h and checks
// the host after; it returns the pod, still running.
func guestSetuidBoundary(t *testing.T, h *criHarness, handler string) string {
	h.crictl("pull", nnpImage)
	rw := hostVolume(t)
	guestRoot := map[string]any{"privileged": true}
	podCfg := h.podConfig("setuid-pod", map[string]any{"security_context": guestRoot})
	pod, _ := h.runPodFrom(handler, podCfg)
	ctr := func(name string, sc map[string]any) string {
		return h.startContainer(pod, podCfg, h.writeJSON(name+".json", map[string]any{
			"metadata": map[string]string{"name": name},
			"image":    map[string]string{"image": nnpImage},
			"command":  []string{"sleep", "100000"},
			"log_path": name + ".log",
			"linux":    map[string]any{"security_context": sc},
			"mounts":   []map[string]any{{"container_path": "/rw", "host_path": rw}},
		}))
	}
	attacker := ctr("attacker", guestRoot)
	user := ctr("user", map[string]any{"run_as_user": map[string]any{"value": 1000}})

	// The positive half: the image's setuid-root binary works in the guest.
	r := h.c.Crictl(h.ctx, "exec", user, "/usr/local/bin/nnp")
	t.Logf("uid 1000 in the guest runs the image's setuid nnp: %q %s", strings.TrimSpace(r.Stdout), lastLine(r.Stderr))
	if !strings.Contains(r.Stdout, "Effective uid: 0") {
		t.Errorf("the image's setuid-root binary does not give euid 0 in the guest: exit %d %q %s", r.ExitCode, r.Stdout, r.Stderr)
	}

	rootfs := filepath.Join(hostbed.DefaultStateDir, "sandboxes", pod, "mounts", attacker, "rootfs")
	image := setidFiles(t, rootfs)
	plantHostFiles(t, rootfs, rw)
	for _, step := range setuidAttack {
		r := h.c.Crictl(h.ctx, "exec", attacker, "sh", "-c", step)
		t.Logf("guest: %s\n  exit %d %s%s", step, r.ExitCode, r.Stdout, lastLine(r.Stderr))
	}

	// On the host: no setuid/setgid executable the guest made, and none
	// that runs as anyone but its caller.
	found := setidFiles(t, rw)
	for p, s := range setidFiles(t, rootfs) {
		if image[p] == nil {
			found[p] = s
		}
	}
	for p, s := range found {
		t.Errorf("the guest left a set-id executable on the host: %s (uid %d gid %d mode %o)", p, s.Uid, s.Gid, s.Mode&0o7777)
	}
	checkHostEuids(t, rw, rootfs)
	return pod
}

// checkHostEuids runs on the host, as uid 65534, each copy of nnp the
// attack left in the volume rw and in the container's rootfs: each must
// run as its caller.
func checkHostEuids(t *testing.T, rw, rootfs string) {
	for _, p := range []string{"rw/chmod", "rw/cpp", "rw/chown", "rw/host", "rw/hostsuid", "rw/sgid", "a/chmod", "a/cpp", "a/chown"} {
		file := filepath.Join(rw, strings.TrimPrefix(p, "rw/"), "nnp")
		if strings.HasPrefix(p, "a/") {
			file = filepath.Join(rootfs, p, "nnp")
		}
		if _, err := os.Stat(file); err != nil {
			continue
		}
		if euid := hostEuid(t, file); euid != "65534" {
			t.Errorf("on the host, uid 65534 runs the guest's %s as euid %s", p, euid)
		}
	}
}

// hostVolume is a directory for a hostPath volume that uid 65534 may also
// reach.
func hostVolume(t *testing.T) string {
	rw := t.TempDir()
	for _, d := range []string{rw, filepath.Dir(rw)} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	return rw
}

// plantHostFiles puts into the volume what a host (or an image) brings:
// a root-owned copy of nnp (host/nnp) and a setuid-root one (hostsuid/nnp).
func plantHostFiles(t *testing.T, rootfs, rw string) {
	nnp, err := os.ReadFile(filepath.Join(rootfs, "usr/local/bin/nnp"))
	if err != nil {
		t.Fatal(err)
	}
	for dir, mode := range map[string]uint32{"host": 0o755, "hostsuid": 0o4755} {
		p := filepath.Join(rw, dir, "nnp")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nnp, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p, mode); err != nil { // os.Chmod drops a raw 04000
			t.Fatal(err)
		}
	}
}

// setidFiles are the regular files under root that are setuid, or setgid
// and group-executable (setgid without it marks mandatory locking).
func setidFiles(t *testing.T, root string) map[string]*syscall.Stat_t {
	found := map[string]*syscall.Stat_t{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		var s syscall.Stat_t
		if syscall.Lstat(p, &s) == nil && (s.Mode&syscall.S_ISUID != 0 || s.Mode&(syscall.S_ISGID|0o010) == syscall.S_ISGID|0o010) {
			rel, _ := filepath.Rel(root, p)
			found[rel] = &s
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// hostEuid runs file (a copy of nnp) on the host as uid 65534 and returns
// the effective uid it reports. The file is passed as an open fd, so no
// directory on its path need be open to uid 65534.
func hostEuid(t *testing.T, file string) string {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "Effective uid:"))
	t.Logf("host: uid 65534 runs %s: %q %v", file, strings.TrimSpace(string(out)), err)
	return got
}
