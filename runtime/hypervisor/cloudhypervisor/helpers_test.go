package cloudhypervisor

// Test helpers shared by the files of this package: accelerator facts, a
// unix-socket httptest server that receives SCM_RIGHTS fds, and the checks
// that nothing (goroutine, process) is left behind.

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/runtime/hypervisor/accel"
	"golang.org/x/sys/unix"
)

// kvmFacts are what the accelerator probe finds on a host with VT-x.
func kvmFacts() accel.Facts {
	return accel.Facts{APIVersion: 12, CPUFlags: map[string]bool{"vmx": true}, Modules: map[string]bool{"kvm_intel": true}}
}

// pvmFacts are this workplace's machines: /dev/kvm is kvm_pvm.
func pvmFacts() accel.Facts {
	return accel.Facts{APIVersion: 12, CPUFlags: map[string]bool{}, Modules: map[string]bool{"kvm_pvm": true}}
}

// newTestDriver is New with the accelerator facts given.
func newTestDriver(opts Options, facts accel.Facts) *Driver {
	d := New(opts)
	d.probe = func() accel.Facts { return facts }
	return d
}

// fdListener accepts unix connections whose reads also collect the fds
// sent with SCM_RIGHTS, as Cloud Hypervisor's HTTP server does.
type fdListener struct{ *net.UnixListener }

func (l fdListener) Accept() (net.Conn, error) {
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	return &fdConn{UnixConn: c}, nil
}

type fdConn struct {
	*net.UnixConn
	mu    sync.Mutex
	files []*os.File
}

func (c *fdConn) Read(b []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(16*4))
	n, oobn, _, _, err := c.ReadMsgUnix(b, oob)
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for i := range msgs {
				fds, ferr := unix.ParseUnixRights(&msgs[i])
				if ferr != nil {
					continue
				}
				c.mu.Lock()
				for _, fd := range fds {
					c.files = append(c.files, os.NewFile(uintptr(fd), "received-fd-"+strconv.Itoa(fd)))
				}
				c.mu.Unlock()
			}
		}
	}
	return n, err
}

func (c *fdConn) takeFiles() []*os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.files
	c.files = nil
	return f
}

type connKey struct{}

// serveUnix starts an httptest server for h on a unix socket at path whose
// handlers can reach their connection (for received fds).
func serveUnix(t testing.TB, path string, h http.Handler) *httptest.Server {
	t.Helper()
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close() // the loopback TCP listener it made; ours replaces it
	srv.Listener = fdListener{ul}
	srv.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	srv.Start()
	return srv
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ourGoroutines are stacks of goroutines this package (driver or fakes) or
// the HTTP machinery would leave behind if something were not shut down.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, marker := range []string{
			"cloudhypervisor.(*VM).supervise", "cloudhypervisor.watchEvents",
			"hvsock.Dialer", "cloudhypervisor.(*fakeGuest)", "cloudhypervisor.(*fakeVMM)",
			"net/http.(*persistConn)", "net/http.(*conn).serve", "childproc.Start.func",
		} {
			if strings.Contains(g, marker) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// checkNoLeaks fails the test if, once all its other cleanups ran, any of
// ourGoroutines is left (waiting up to 3 s for them to end). Call it first
// in a test: cleanups run last-registered first.
func checkNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for {
			left := ourGoroutines()
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutine(s) left behind:\n%s", len(left), strings.Join(left, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// assertProcessesGone checks that none of pids exists any more.
func assertProcessesGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				t.Errorf("pid %d still alive", pid)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
