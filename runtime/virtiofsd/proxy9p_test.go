package virtiofsd

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/internal/childproc"
)

// The request types of QEMU's 9p proxy protocol (hw/9pfs/9p-proxy.h) that
// the tests send.
const (
	tCreate  = 3
	tMknod   = 4
	tMkdir   = 5
	tSymlink = 6
	tChmod   = 11
	tChown   = 12
	tRename  = 15
)

// proxyClient speaks QEMU's side of the 9p proxy protocol to a started
// virtfs-proxy-helper: a header of type and size (native 32-bit words),
// then the arguments (32-bit "d", 64-bit "q", strings as a 16-bit length
// and the bytes). Status replies carry 0 or -errno; a create's reply is a
// word with the fd passed alongside, or -errno alone.
type proxyClient struct {
	t    *testing.T
	conn *net.UnixConn
	d    *Daemon
}

// startProxyClient starts the helper on share with cfg's set-id choice and
// connects a client to it.
func startProxyClient(t *testing.T, share string, allowSetID bool) *proxyClient {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("virtfs-proxy-helper needs root")
	}
	if _, err := os.Stat(ProxyHelperPath); err != nil {
		t.Skipf("no %s (qemu-system-common): %v", ProxyHelperPath, err)
	}
	d, end, err := StartProxy9p(Config{Name: "virtfs-proxy-helper for test", SharedDir: share,
		LogPath: filepath.Join(t.TempDir(), "proxy.log"), AllowSetID: allowSetID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { end.Close(); d.Stop(t.Context()) })
	c, err := net.FileConn(end)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &proxyClient{t: t, conn: c.(*net.UnixConn), d: d}
}

type proxyArgs []byte

func (a proxyArgs) d(v int32) proxyArgs { return binary.NativeEndian.AppendUint32(a, uint32(v)) }
func (a proxyArgs) q(v int64) proxyArgs { return binary.NativeEndian.AppendUint64(a, uint64(v)) }
func (a proxyArgs) s(v string) proxyArgs {
	return append(binary.NativeEndian.AppendUint16(a, uint16(len(v))), v...)
}

func (c *proxyClient) send(typ uint32, args proxyArgs) {
	c.t.Helper()
	msg := binary.NativeEndian.AppendUint32(nil, typ)
	msg = binary.NativeEndian.AppendUint32(msg, uint32(len(args)))
	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(append(msg, args...)); err != nil {
		c.t.Fatalf("request %d: %v; %v", typ, err, c.death())
	}
}

// death says how the helper ended, if it did.
func (c *proxyClient) death() error {
	select {
	case <-c.d.Done():
		return c.d.ExitReason()
	case <-time.After(time.Second):
		return fmt.Errorf("the helper still runs")
	}
}

// status sends a request answered by a status and returns it as an errno
// (0 for success).
func (c *proxyClient) status(typ uint32, args proxyArgs) syscall.Errno {
	c.t.Helper()
	c.send(typ, args)
	reply := make([]byte, 12)
	if _, err := io.ReadFull(c.conn, reply); err != nil {
		c.t.Fatalf("request %d: no reply: %v; %v", typ, err, c.death())
	}
	return errnoOf(int32(binary.NativeEndian.Uint32(reply[8:])))
}

// create asks for a file created and opened as uid:gid and closes the fd
// it gets.
func (c *proxyClient) create(path string, mode, uid, gid int32) syscall.Errno {
	c.t.Helper()
	c.send(tCreate, proxyArgs{}.s(path).d(unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL).d(mode).d(uid).d(gid))
	word, oob := make([]byte, 4), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.conn.ReadMsgUnix(word, oob)
	if err != nil || n != 4 {
		c.t.Fatalf("create %s: no reply (%d bytes): %v; %v", path, n, err, c.death())
	}
	if msgs, _ := unix.ParseSocketControlMessage(oob[:oobn]); len(msgs) == 1 {
		fds, _ := unix.ParseUnixRights(&msgs[0])
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	if v := int32(binary.NativeEndian.Uint32(word)); v < 0 {
		return errnoOf(v)
	}
	return 0
}

func errnoOf(v int32) syscall.Errno {
	if v < 0 {
		return syscall.Errno(-v)
	}
	return 0
}

// owned checks path's owner and group on the host.
func owned(t *testing.T, share, path string, uid, gid uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(share, path), &st); err != nil {
		t.Errorf("%s: %v", path, err)
	} else if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s is owned by %d:%d on the host; want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

// The file operations of the lift-and-shift spec's pod (spec/liftshift_test.go)
// as they reach the helper: an emptyDir of the pod's fsGroup (2000, setgid),
// written by a root init container (its files get the group 2000), then by
// a sidecar as 1000:1000: creates, mkdir, symlink, chown, rename. Debian's
// helper (QEMU 7.2), started as before, died of SIGABRT, silently, at the
// second request, the first to switch gid after the root create of group
// 2000 (docs/factory.md, section 7).
func TestProxy9pHelperServesAWritingPod(t *testing.T) {
	share := t.TempDir()
	if err := os.Mkdir(filepath.Join(share, "data"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(share, "data"), 0, 2000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(share, "data"), os.ModeSetgid|0o777); err != nil {
		t.Fatal(err)
	}
	c := startProxyClient(t, share, false)
	steps := []struct {
		what string
		do   func() syscall.Errno
	}{
		{"init (root) creates data/init.txt", func() syscall.Errno { return c.create("data/init.txt", 0o644, 0, 2000) }},
		{"init (root) makes data/conf", func() syscall.Errno { return c.status(tMkdir, proxyArgs{}.d(0).d(2000).s("data/conf").d(0o2755)) }},
		{"init (root) chowns data/init.txt to 1000", func() syscall.Errno { return c.status(tChown, proxyArgs{}.s("data/init.txt").d(1000).d(2000)) }},
		{"sidecar (1000) creates data/app.tmp", func() syscall.Errno { return c.create("data/app.tmp", 0o640, 1000, 2000) }},
		{"sidecar (1000) renames it to data/app.txt", func() syscall.Errno { return c.status(tRename, proxyArgs{}.s("data/app.tmp").s("data/app.txt")) }},
		{"sidecar (1000) makes data/own", func() syscall.Errno { return c.status(tMkdir, proxyArgs{}.d(1000).d(1000).s("data/own").d(0o755)) }},
		{"sidecar (1000) creates data/own/f", func() syscall.Errno { return c.create("data/own/f", 0o600, 1000, 1000) }},
		{"sidecar (1000) links data/link", func() syscall.Errno {
			return c.status(tSymlink, proxyArgs{}.d(1000).d(1000).s("app.txt").s("data/link"))
		}},
		{"root creates data/root.txt", func() syscall.Errno { return c.create("data/root.txt", 0o644, 0, 0) }},
		{"sidecar (1000) creates data/last", func() syscall.Errno { return c.create("data/last", 0o644, 1000, 2000) }},
	}
	for _, s := range steps {
		if errno := s.do(); errno != 0 {
			t.Fatalf("%s: %v", s.what, errno)
		}
		if c.d.proc.Exited() {
			t.Fatalf("%s: %v", s.what, c.d.ExitReason())
		}
	}
	owned(t, share, "data/init.txt", 1000, 2000)
	owned(t, share, "data/conf", 0, 2000)
	owned(t, share, "data/app.txt", 1000, 2000)
	// The directory's setgid gives what is made in it its group, whatever
	// gid the request names.
	owned(t, share, "data/own", 1000, 2000)
	owned(t, share, "data/own/f", 1000, 2000)
	owned(t, share, "data/link", 1000, 2000)
	owned(t, share, "data/root.txt", 0, 2000)
	owned(t, share, "data/last", 1000, 2000)
	if target, err := os.Readlink(filepath.Join(share, "data/link")); err != nil || target != "app.txt" {
		t.Errorf("data/link -> %q, %v", target, err)
	}
	helperConfined(t, c.d.Pid(), share)
	// Its log: the command line and "Started", no complaint (libnuma and
	// libcap-ng read /proc and /sys, which Landlock denies).
	log, _ := os.ReadFile(c.d.cfg.LogPath)
	if lines := strings.Split(strings.TrimSpace(string(log)), "\n"); len(lines) != 2 || lines[1] != "Started" {
		t.Errorf("the helper's log: %s", log)
	}
}

// Where the kernel has Landlock, the helper's confinement keeps a process
// to its share and the files it runs from: a shell started with it (as
// the helper would be) reads a file of the share, and not /etc/passwd.
func TestProxy9pHelperLandlock(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if childproc.LandlockABI() == 0 {
		t.Skip("no Landlock in this kernel")
	}
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, "mine"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Binary: "/bin/sh", SharedDir: share}
	p, err := childproc.Start(childproc.Spec{
		Name: "sh", Path: "/bin/sh", LogPath: filepath.Join(dir, "log"), Confine: cfg.confineProxyHelper(),
		Args: []string{"-c", "read x < " + share + "/mine && echo read $x; read y < /etc/passwd && echo leaked $y; echo new > " + share + "/new && echo wrote"},
	})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	log, _ := os.ReadFile(filepath.Join(dir, "log"))
	for _, want := range []string{"read mine", "cannot open /etc/passwd: Permission denied", "wrote"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("no %q in what the confined shell said:\n%s", want, log)
		}
	}
	if strings.Contains(string(log), "\nleaked") {
		t.Errorf("the confined shell read /etc/passwd:\n%s", log)
	}
}

// helperConfined checks that every thread of the helper runs chrooted in
// share as root with the same eight capabilities (proxyHelperCaps), under
// no_new_privs and the two filters.
func helperConfined(t *testing.T, pid int, share string) {
	t.Helper()
	proc := fmt.Sprintf("/proc/%d", pid)
	if root, _ := os.Readlink(proc + "/root"); root != share {
		t.Errorf("the helper's root is %q; want %s", root, share)
	}
	tasks, _ := os.ReadDir(proc + "/task")
	if len(tasks) != 2 {
		t.Errorf("the helper has %d threads; want 2 (main, QEMU's call_rcu)", len(tasks))
	}
	for _, task := range tasks {
		b, err := os.ReadFile(proc + "/task/" + task.Name() + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Uid:\t0\t0\t0\t0", "CapEff:\t00000000000401db", "CapPrm:\t00000000000401db", "NoNewPrivs:\t1", "Seccomp_filters:\t2"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("thread %s of the helper: no %q in its status:\n%s", task.Name(), want, b)
			}
		}
	}
}

// A guest cannot make a block or char device node on the host through the
// proxy helper (it has no CAP_MKNOD); a fifo it can. With CAP_MKNOD in
// proxyHelperCaps both nodes were made (2026-12-07).
func TestProxy9pHelperRefusesDeviceNodes(t *testing.T) {
	share := t.TempDir()
	c := startProxyClient(t, share, false)
	for _, n := range []struct {
		name string
		mode uint32
		dev  uint64
		want syscall.Errno
	}{
		{"blk", unix.S_IFBLK | 0o600, unix.Mkdev(7, 0), unix.EPERM},
		{"chr", unix.S_IFCHR | 0o600, unix.Mkdev(1, 3), unix.EPERM},
		{"fifo", unix.S_IFIFO | 0o600, 0, 0},
	} {
		if errno := c.status(tMknod, proxyArgs{}.d(0).d(0).s(n.name).d(int32(n.mode)).q(int64(n.dev))); errno != n.want {
			t.Errorf("mknod %s as root: %v; want %v", n.name, errno, n.want)
		}
		_, err := os.Lstat(filepath.Join(share, n.name))
		if made := err == nil; made != (n.want == 0) {
			t.Errorf("mknod %s: on the host %v, want made=%v", n.name, err, n.want == 0)
		}
	}
}

// A guest cannot leave a setuid or setgid file on the host through the
// proxy helper: chmod, create and mknod with those bits are refused by the
// set-id filter. The control, the same attack with AllowSetID (the filter
// off), succeeds, so the test can fail.
func TestProxy9pHelperRefusesSetid(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("AllowSetID=%v", allow), func(t *testing.T) {
			share := t.TempDir()
			if err := os.WriteFile(filepath.Join(share, "exe"), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			c := startProxyClient(t, share, allow)
			attacks := map[string]syscall.Errno{
				"chmod 4755":          c.status(tChmod, proxyArgs{}.s("exe").d(0o4755)),
				"create 2755 as 1000": c.create("sgid", 0o2755, 1000, 1000),
				"create 4755 as root": c.create("suid", 0o4755, 0, 0),
				"mknod 4755 as root":  c.status(tMknod, proxyArgs{}.d(0).d(0).s("node").d(unix.S_IFREG|0o4755).q(0)),
			}
			var setid []string
			for _, name := range []string{"exe", "sgid", "suid", "node"} {
				if fi, err := os.Lstat(filepath.Join(share, name)); err == nil && fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
					setid = append(setid, fmt.Sprintf("%s %v", name, fi.Mode()))
				}
			}
			for what, errno := range attacks {
				if !allow && errno != unix.EPERM {
					t.Errorf("%s: %v; want EPERM (the set-id filter)", what, errno)
				}
				if allow && errno != 0 {
					t.Errorf("control: %s: %v; want success", what, errno)
				}
			}
			switch {
			case !allow && len(setid) > 0:
				t.Errorf("set-id files on the host: %s", strings.Join(setid, ", "))
			case allow && len(setid) != 4:
				t.Errorf("control: want 4 set-id files on the host, got %q", setid)
			}
		})
	}
}
