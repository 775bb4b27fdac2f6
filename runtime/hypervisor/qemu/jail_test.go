package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/jailuid"
)

// TestJailedQEMUArgs: a jailed QEMU names its state dir, kernel and
// initramfs only through the fds the shim opened for it, after the fds
// already passed (vsock, taps), and keeps its seccomp filter.
func TestJailedQEMUArgs(t *testing.T) {
	l := baseLaunch()
	l.SharedFS = contract.SharedFSVirtiofs
	l.SecretPath = "/run/podvm/sb1/agent.secret"
	j := &jail{files: []*os.File{os.Stdin, os.Stdin, os.Stdin}} // three fds, numbers only
	jl, extra := j.pass(l, []*os.File{os.Stdout})
	if len(extra) != 4 {
		t.Fatalf("passed %d fds, want the tap and the jail's 3", len(extra))
	}
	got := joined(qemuArgs(jl))
	for _, want := range []string{
		"-kernel /proc/self/fd/5 -initrd /proc/self/fd/6",
		"-chardev file,id=console,path=/dev/fdset/", // the console is a pipe, named by no path
		"-qmp unix:/proc/self/fd/4/qmp.sock,server=on,wait=off",
		"-chardev socket,id=fs,path=/proc/self/fd/4/virtiofsd.sock",
		"name=" + contract.FwCfgSecretName + ",file=/proc/self/fd/4/agent.secret",
		"-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("jailed argv lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "/run/podvm") || strings.Contains(got, "/k/") {
		t.Errorf("jailed argv names a host path:\n%s", got)
	}
	if l.StateDir != "/run/podvm/sb1" {
		t.Errorf("pass changed the caller's launch: %q", l.StateDir)
	}
}

func TestJailReason(t *testing.T) {
	l := baseLaunch()
	l.SharedFS = contract.SharedFS9p
	if os.Geteuid() == 0 && New(Options{}).jailReason(l) == "" {
		t.Error("9p: want QEMU unjailed, it serves the share itself")
	}
	l.Proxy9p = true
	if os.Geteuid() == 0 && New(Options{}).jailReason(l) != "" {
		t.Error("9p through the proxy helper (a clone): want QEMU jailed")
	}
	if New(Options{Jail: JailOptions{Off: true}}).jailReason(baseLaunch()) == "" {
		t.Error("jail off: want a reason")
	}
	if os.Geteuid() == 0 && New(Options{}).jailReason(baseLaunch()) != "" {
		t.Error("root, virtio-fs: want QEMU jailed")
	}
}

// TestNewJail: the uid's lease, the state dir and secret handed to it with
// mode 0700, and a credential with no groups and Landlock paths.
func TestNewJail(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	l := baseLaunch()
	l.StateDir = filepath.Join(dir, "state")
	l.Kernel, l.Initrd = filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd")
	l.SecretPath = filepath.Join(l.StateDir, "secret")
	must(t, os.Mkdir(l.StateDir, 0o755))
	for _, p := range []string{l.Kernel, l.Initrd, l.SecretPath} {
		must(t, os.WriteFile(p, nil, 0o600))
	}
	r := jailuid.Range{Base: 70000, Count: 4, Dir: filepath.Join(dir, "locks")}
	j, err := newJail(r, "/usr/bin/qemu-system-x86_64", l)
	must(t, err)
	defer j.release()
	defer j.closeFiles()
	if j.cred.UID < 70000 || j.cred.UID > 70003 || j.cred.GID != j.cred.UID || len(j.cred.Groups) != 0 {
		t.Errorf("credential %+v: want a uid of the range, the same gid, no groups", j.cred)
	}
	for _, p := range []string{l.StateDir, l.SecretPath} {
		if uidOf(t, p) != j.cred.UID {
			t.Errorf("%s: not owned by QEMU's uid %d", p, j.cred.UID)
		}
	}
	if fi, _ := os.Stat(l.StateDir); fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %o, want 0700", fi.Mode().Perm())
	}
	if !slices.Contains(j.cred.ReadWrite, l.StateDir) || !slices.Contains(j.cred.ReadOnly, l.Kernel) ||
		!slices.Contains(j.cred.ReadOnly, l.Initrd) || slices.Contains(j.cred.ReadWrite, kvmDevice) {
		t.Errorf("landlock paths ro %v rw %v", j.cred.ReadOnly, j.cred.ReadWrite)
	}
	if len(j.files) != 3 {
		t.Errorf("%d files opened, want state dir, kernel, initrd", len(j.files))
	}
	// Two live VMs never share a uid.
	l2 := l
	l2.SecretPath = ""
	j2, err := newJail(r, "/usr/bin/qemu-system-x86_64", l2)
	must(t, err)
	defer j2.release()
	defer j2.closeFiles()
	if j2.cred.UID == j.cred.UID {
		t.Errorf("two live jails share uid %d", j.cred.UID)
	}
}

func uidOf(t *testing.T, path string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Stat(path, &st))
	return st.Uid
}
