package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/internal/childproc"
)

// TestQEMUJailIntegration boots two VMs and reads, from /proc, what each
// QEMU may do: its own unprivileged uid, no capabilities (not even in the
// bounding set), no_new_privs, its seccomp filter, mount (a root of its
// own), PID, network, IPC and UTS namespaces of its own; and that one VM's
// QEMU cannot signal the other's.
func TestQEMUJailIntegration(t *testing.T) {
	needRootAndQEMU(t)
	kernel := testKernel(t)
	initrd := buildInitramfs(t, contract.SharedFSVirtiofs)
	var pids []int
	var uids []string
	for i := 0; i < 2; i++ {
		cfg := testConfig(t, kernel, initrd, contract.SharedFSVirtiofs)
		vm := startVM(t, cfg)
		pid := vm.Pids()[0]
		st := procStatus(t, pid)
		uid := strings.Fields(st["Uid"])
		if len(uid) != 4 || uid[0] == "0" || uid[0] != uid[1] || uid[0] != uid[2] || uid[0] != uid[3] {
			t.Errorf("VM %d: QEMU's Uid is %q, want one unprivileged uid", i, st["Uid"])
		}
		if gid := strings.Fields(st["Gid"]); len(gid) != 4 || gid[0] == "0" || gid[3] == "0" {
			t.Errorf("VM %d: QEMU's Gid is %q, want no root gid", i, st["Gid"])
		}
		for key, want := range map[string]string{
			"CapPrm": "0000000000000000", "CapEff": "0000000000000000", "CapBnd": "0000000000000000",
			"CapAmb": "0000000000000000", "Seccomp": "2", "NoNewPrivs": "1", "Groups": "",
		} {
			if st[key] != want {
				t.Errorf("VM %d: QEMU's %s is %q, want %q", i, key, st[key], want)
			}
		}
		var fi syscall.Stat_t
		must(t, syscall.Stat(cfg.StateDir, &fi))
		if fmt.Sprint(fi.Uid) != uid[0] || fi.Mode&0o077 != 0 {
			t.Errorf("VM %d: state dir is uid %d mode %o, want QEMU's uid %s and 0700", i, fi.Uid, fi.Mode&0o777, uid[0])
		}
		if d := vm.(*VM).Diagnose(context.Background()); !strings.Contains(d, "QEMU is jailed as uid "+uid[0]) || !strings.Contains(d, "run state: running") {
			t.Errorf("VM %d: the hang report does not say QEMU runs jailed, or cannot reach it:\n%s", i, d)
		}
		checkFileWall(t, vm.(*VM), i)
		if !holdsOpen(pid, cfg.StateDir) {
			// The crash sweep finds a jailed QEMU by this fd, its command line
			// naming the dir only as /proc/self/fd/N.
			t.Errorf("VM %d: QEMU holds no fd of its state dir %s", i, cfg.StateDir)
		}
		if _, err := os.Stat("/etc/hostname"); err == nil {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/etc/hostname", pid)); err == nil {
				t.Errorf("VM %d: QEMU's root holds the host's /etc/hostname: it has no root of its own", i)
			}
		}
		for _, ns := range []string{"ns/mnt", "ns/pid", "ns/net", "ns/ipc", "ns/uts"} {
			if own := readLink(os.Getpid(), ns); readLink(pid, ns) == own {
				t.Errorf("VM %d: QEMU shares the host's %s (%s)", i, ns, own)
			}
		}
		t.Logf("VM %d: QEMU pid %d uid %s root %s, namespaces mnt %s pid %s net %s ipc %s uts %s",
			i, pid, uid[0], readLink(pid, "root"), readLink(pid, "ns/mnt"), readLink(pid, "ns/pid"), readLink(pid, "ns/net"),
			readLink(pid, "ns/ipc"), readLink(pid, "ns/uts"))
		pids, uids = append(pids, pid), append(uids, uid[0])
	}
	if uids[0] == uids[1] {
		t.Fatalf("both QEMUs run as uid %s", uids[0])
	}
	// As QEMU 1's uid: signalling itself works (the check is not vacuous),
	// signalling QEMU 2 does not.
	if out, err := killAs(t, uids[0], pids[0]); err != nil {
		t.Errorf("uid %s cannot signal its own QEMU: %v: %s", uids[0], err, out)
	}
	if out, err := killAs(t, uids[0], pids[1]); err == nil {
		t.Errorf("uid %s signalled the other VM's QEMU (pid %d, uid %s): %s", uids[0], pids[1], uids[1], out)
	}
}

// checkFileWall asks QEMU, over QMP, to create a file in its state dir
// and one in /tmp, which any uid may write: Landlock lets only the first
// through.
func checkFileWall(t *testing.T, vm *VM, i int) {
	t.Helper()
	vm.mu.Lock()
	qmp := vm.qmp
	vm.mu.Unlock()
	// QEMU's name for its state dir: /proc/self/fd/N, from its -qmp.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", vm.Pids()[0]))
	must(t, err)
	dir := ""
	for _, a := range strings.Split(string(cmdline), "\x00") {
		if p, ok := strings.CutPrefix(a, "unix:"); ok && strings.Contains(p, "/"+qmpSocketName) {
			dir = p[:strings.Index(p, "/"+qmpSocketName)]
		}
	}
	outside, err := os.MkdirTemp("", "pvjail")
	must(t, err)
	defer os.RemoveAll(outside)
	must(t, os.Chmod(outside, 0o777))
	add := func(id, path string) error {
		args := map[string]any{"id": id, "backend": map[string]any{"type": "file", "data": map[string]any{"out": path}}}
		return qmp.Execute(context.Background(), "chardev-add", args, nil)
	}
	if err := add("inside", dir+"/jail-probe"); err != nil {
		t.Errorf("VM %d: QEMU cannot create a file in its state dir: %v", i, err)
	}
	err = add("outside", outside+"/probe")
	if _, serr := os.Stat(outside + "/probe"); serr == nil || err == nil {
		if childprocLandlock() {
			t.Errorf("VM %d: QEMU created a file in a world-writable dir outside its state dir (err %v)", i, err)
		}
	} else {
		t.Logf("VM %d: QEMU may not create a file outside its state dir: %v", i, err)
	}
}

// holdsOpen reports whether process pid has dir open.
func holdsOpen(pid int, dir string) bool {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if readLink(pid, "fd/"+fd.Name()) == dir {
			return true
		}
	}
	return false
}

// procStatus is /proc/<pid>/status as key -> value.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

func readLink(pid int, name string) string {
	s, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		return err.Error()
	}
	return s
}

// killAs runs kill -0 pid as uid (and the gid of that number).
func killAs(t *testing.T, uid string, pid int) (string, error) {
	t.Helper()
	n, err := strconv.ParseUint(uid, 10, 32)
	must(t, err)
	cmd := exec.Command("/bin/sh", "-c", "kill -0 "+strconv.Itoa(pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(n), Gid: uint32(n), Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func childprocLandlock() bool { return childproc.LandlockABI() > 0 }
