package childproc

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExitReasonHasStatusAndLogTail(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(Spec{Name: "helper for sandbox t", Path: "/bin/sh",
		Args: []string{"-c", "echo first; echo second >&2; exit 3"}, LogPath: filepath.Join(dir, "h.log")})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("child did not exit")
	}
	got := p.ExitReason(5).Error()
	for _, want := range []string{"helper for sandbox t exited unexpectedly", "exit status 3", "first | second"} {
		if !strings.Contains(got, want) {
			t.Errorf("ExitReason = %q, want it to contain %q", got, want)
		}
	}
}

func TestKillReportsSignal(t *testing.T) {
	p, err := Start(Spec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"100"}, LogPath: filepath.Join(t.TempDir(), "s.log")})
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("exited too early")
	}
	p.Kill()
	if got := p.WaitStatus(); got != "signal: killed" {
		t.Errorf("WaitStatus = %q", got)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("signal after exit: %v", err)
	}
}

func TestTerminateKillsAfterGrace(t *testing.T) {
	// The shell ignores SIGTERM, so only the SIGKILL after the grace ends it.
	log := filepath.Join(t.TempDir(), "s.log")
	p, err := Start(Spec{Name: "stubborn", Path: "/bin/sh", Args: []string{"-c", "trap '' TERM; echo trap-$((6*7)); sleep 100 & wait"},
		LogPath: log})
	if err != nil {
		t.Fatal(err)
	}
	// The marker is computed, so the command line the log starts with does not hold it.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(log); strings.Contains(string(b), "trap-42") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell never installed its trap")
		}
	}
	start := time.Now()
	p.Terminate(context.Background(), 200*time.Millisecond)
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("Terminate took %v", d)
	}
}

// Keep the main goroutine on the main thread, so the goroutine below cannot
// land there: Go never terminates the main thread, which would hide the bug.
func init() { runtime.LockOSThread() }

// A child forked while its caller sits on a locked thread that then exits must
// survive: Pdeathsig is tied to the forking thread, and spawn.go forks on a
// thread that never exits.
func TestChildSurvivesExitOfLockedCallerThread(t *testing.T) {
	started := make(chan *Process)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		p, err := Start(Spec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"100"}, LogPath: filepath.Join(t.TempDir(), "s.log")})
		if err != nil {
			t.Error(err)
		}
		started <- p
	}()
	p := <-started
	if p == nil {
		return
	}
	defer p.Kill()
	time.Sleep(300 * time.Millisecond)
	if p.Exited() {
		t.Fatalf("child died with its caller's thread: %s", p.WaitStatus())
	}
}

func TestTailLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\n\nb\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := TailLines(path, 2); got != "b | c" {
		t.Errorf("TailLines = %q", got)
	}
	if got := TailLines(filepath.Join(t.TempDir(), "none"), 2); got != "" {
		t.Errorf("missing file: %q", got)
	}
}

type fakeCgroup struct {
	pids []int
	err  error
}

func (f *fakeCgroup) Add(pid int) error {
	f.pids = append(f.pids, pid)
	return f.err
}

func TestCgroupGetsTheChild(t *testing.T) {
	cg := &fakeCgroup{}
	p, err := Start(Spec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"100"}, LogPath: filepath.Join(t.TempDir(), "s.log"), Cgroup: cg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if len(cg.pids) != 1 || cg.pids[0] != p.Pid() {
		t.Errorf("cgroup got pids %v, want [%d]", cg.pids, p.Pid())
	}
}

func TestCgroupFailureKillsTheChild(t *testing.T) {
	cg := &fakeCgroup{err: syscall.EACCES}
	_, err := Start(Spec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"100"}, LogPath: filepath.Join(t.TempDir(), "s.log"), Cgroup: cg})
	if err == nil || !strings.Contains(err.Error(), "start sleeper") {
		t.Fatalf("Start with a failing cgroup: %v", err)
	}
	if len(cg.pids) != 1 {
		t.Fatalf("cgroup got pids %v", cg.pids)
	}
	if err := syscall.Kill(cg.pids[0], 0); err == nil {
		t.Errorf("child %d still exists after a failed placement", cg.pids[0])
	}
}

// A child that logs without end (a VMM or virtiofsd that a guest makes
// warn on every request) keeps its log and the rotation under the cap, and
// its exit reason still quotes its last line.
func TestLogIsCapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.log")
	const limit = 4096
	p, err := Start(Spec{Name: "chatty", Path: "/bin/sh",
		Args:    []string{"-c", "i=0; while [ $i -lt 3000 ]; do echo warning number $i >&2; i=$((i+1)); done; echo last-words; exit 1"},
		LogPath: path, LogMaxBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("child did not exit")
	}
	for _, f := range []string{path, path + ".1"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > limit {
			t.Errorf("%s is %d bytes, over the cap %d", f, st.Size(), limit)
		}
	}
	if got := p.ExitReason(2).Error(); !strings.Contains(got, "warning number 2999 | last-words") {
		t.Errorf("ExitReason = %q, want the last lines", got)
	}
}

func TestJailedChildHasNoPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch uid")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	p, err := Start(Spec{
		Name: "jailed", Path: "/bin/sh", LogPath: log,
		Args: []string{"-c", "grep -E '^(Uid|Gid|Groups|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status"},
		Jail: &Jail{UID: 4242, GID: 4343},
	})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	out, _ := os.ReadFile(log)
	for _, want := range []string{
		"Uid:\t4242\t4242\t4242\t4242", "Gid:\t4343\t4343\t4343\t4343",
		"CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("jailed child's status lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`Groups:\s*\n`).Match(out) {
		t.Errorf("jailed child kept supplementary groups:\n%s", out)
	}
	// Unjailed children after a jailed one are still root with every
	// capability: the jail thread's drop is its own.
	p, err = Start(Spec{Name: "plain", Path: "/bin/sh", LogPath: log, Args: []string{"-c", "grep -E '^(Uid|CapBnd):' /proc/self/status"}})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	out, _ = os.ReadFile(log)
	if !strings.Contains(string(out), "Uid:\t0\t0\t0\t0") || strings.Contains(string(out), "CapBnd:\t0000000000000000") {
		t.Errorf("unjailed child after a jailed one:\n%s", out)
	}
}

func TestJailLandlock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch uid")
	}
	if LandlockABI() == 0 {
		t.Skip("the kernel has no Landlock")
	}
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chown(dir, 4242, 4242))
	secret := filepath.Join(t.TempDir(), "secret")
	must(os.WriteFile(secret, []byte("x"), 0o644))
	log := filepath.Join(dir, "log")
	var ro []string
	for _, p := range []string{"/bin", "/usr", "/lib", "/lib64", "/etc/ld.so.cache"} {
		if _, err := os.Stat(p); err == nil {
			ro = append(ro, p)
		}
	}
	p, err := Start(Spec{
		Name: "landlocked", Path: "/bin/sh", LogPath: log,
		Args: []string{"-c", "echo ok > " + dir + "/made && echo wrote; cat " + secret + " || echo denied"},
		Jail: &Jail{UID: 4242, GID: 4242, ReadOnly: ro, ReadWrite: []string{dir}},
	})
	must(err)
	<-p.Done()
	out, _ := os.ReadFile(log)
	if !strings.Contains(string(out), "wrote") || !strings.Contains(string(out), "denied") {
		t.Errorf("landlocked child: want a write in its dir and a denied read of a world-readable file outside:\n%s", out)
	}
}

// A jailed child with Namespaces is alone in its PID namespace (pid 1,
// no other process in view), has a network namespace of its own, and does not
// share the host's IPC or UTS namespaces.
func TestJailNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch uid and make namespaces")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := `echo pid=$$; for n in pid net ipc uts; do echo $n=$(readlink /proc/self/ns/$n); done`
	p, err := Start(Spec{Name: "namespaced", Path: "/bin/sh", LogPath: log, Args: []string{"-c", script},
		Jail: &Jail{UID: 4242, GID: 4242, Namespaces: true}})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	out, _ := os.ReadFile(log)
	if !strings.Contains(string(out), "pid=1\n") {
		t.Errorf("the child is not pid 1 of a PID namespace of its own:\n%s", out)
	}
	for _, n := range []string{"pid", "net", "ipc", "uts"} {
		host, err := os.Readlink("/proc/self/ns/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), n+"="+host+"\n") {
			t.Errorf("the child shares the host's %s namespace (%s):\n%s", n, host, out)
		}
	}
}

// A child with OwnRoot sees a root of its own: only the paths it was given
// (read-only where asked, the root itself read-only), /dev/null and
// /dev/urandom, a /proc of its own PID namespace; the host's files
// elsewhere are not there at all (Landlock alone leaves them visible to
// stat, only unreadable).
func TestJailOwnRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make mount namespaces")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	rw := filepath.Join(dir, "rw")
	must(os.Mkdir(rw, 0o700))
	must(os.Chown(rw, 4242, 4242))
	log := filepath.Join(dir, "log")
	var ro []string
	for _, p := range []string{"/usr", "/bin", "/lib", "/lib64", "/etc/ld.so.cache"} {
		if _, err := os.Lstat(p); err == nil {
			ro = append(ro, p)
		}
	}
	script := `echo pid=$$ uid=$(id -u)
[ -e /proc/2 ] && echo proc:host || echo proc:own
[ -e /etc/hostname ] && echo hostname:visible || echo hostname:absent
[ -e /home ] || [ -e /var ] && echo host-dirs:visible || echo host-dirs:absent
touch /newfile 2>/dev/null && echo rootfs:writable || echo rootfs:read-only
touch /usr/podvm-probe 2>/dev/null && echo usr:writable || echo usr:read-only
echo x > ` + rw + `/f && echo rw:writable || echo rw:read-only`
	p, err := Start(Spec{Name: "own-root", Path: "/bin/sh", LogPath: log, Args: []string{"-c", script},
		Jail: &Jail{UID: 4242, GID: 4242, ReadOnly: ro, ReadWrite: []string{rw}, OwnRoot: true}})
	must(err)
	<-p.Done()
	out, _ := os.ReadFile(log)
	// Whole lines: the log starts with the command line, which names them all.
	for _, want := range []string{"pid=1 uid=4242", "proc:own", "hostname:absent", "host-dirs:absent", "rootfs:read-only", "usr:read-only", "rw:writable"} {
		if !strings.Contains(string(out), "\n"+want+"\n") {
			t.Errorf("jailed child's view lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(rw, "f")); err != nil {
		t.Errorf("the write through the read-write bind did not reach the host: %v", err)
	}
}
