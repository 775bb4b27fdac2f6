package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
)

// TestQEMUJailIntegration boots two VMs and reads, from /proc, what each
// QEMU may do: its own unprivileged uid, no capabilities (not even in the
// bounding set), no_new_privs, its seccomp filter; and that one VM's QEMU
// cannot signal the other's.
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
		t.Logf("VM %d: QEMU pid %d uid %s root %s", i, pid, uid[0], readLink(pid, "root"))
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
