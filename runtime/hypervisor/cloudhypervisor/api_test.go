package cloudhypervisor

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// apiSocket returns a socket path in a fresh short directory.
func apiSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "pvca")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "api.sock")
}

// Error answers surface with the VMM's own words and the call's context,
// whatever the body's shape, and are *APIError for callers that branch on
// the status.
func TestAPIErrorAnswers(t *testing.T) {
	checkNoLeaks(t)
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"error chain as JSON array (current releases)", 500,
			chErrorBody("Error from API", "The VM could not boot", "Error starting vCPU", "KVM_RUN: Operation not permitted (os error 1)"),
			"PUT vm.boot: HTTP 500 Internal Server Error: Error from API: The VM could not boot: Error starting vCPU: KVM_RUN: Operation not permitted (os error 1)"},
		{"not created", 404, chErrorBody("Error from API", "VM is not created"),
			"PUT vm.boot: HTTP 404 Not Found: Error from API: VM is not created"},
		{"debug text (older releases)", 500, "VmBoot(VmNotCreated)\n",
			"HTTP 500 Internal Server Error: VmBoot(VmNotCreated)"},
		{"JSON object with an error field", 400, `{"error": "unknown field comdline"}`,
			"HTTP 400 Bad Request: unknown field comdline"},
		{"pending CPU removal", 429, chErrorBody("Too Many Requests"),
			"HTTP 429 Too Many Requests: Too Many Requests"},
		{"empty body", 500, "", "HTTP 500 Internal Server Error: (empty response body)"},
		{"multi-line text collapsed", 500, "first line\n  second line\n", "first line second line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := apiSocket(t)
			srv := serveUnix(t, sock, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			err := newAPIClient(sock, 2*time.Second).BootVM(context.Background())
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v (%T), want *APIError", err, err)
			}
			if apiErr.Status != tt.status || apiErr.Op != "vm.boot" {
				t.Errorf("APIError = %+v", apiErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestAPIDecodesAnswers(t *testing.T) {
	checkNoLeaks(t)
	sock := apiSocket(t)
	srv := serveUnix(t, sock, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/vmm.ping":
			io.WriteString(w, `{"build_version": "v53.0", "version": "53.0", "pid": 42, "features": ["kvm", "io_uring"]}`)
		case "/api/v1/vm.info":
			io.WriteString(w, `{"config": {"cpus": {"boot_vcpus": 2, "max_vcpus": 4}, "memory": {"size": 268435456, "hotplug_size": 536870912},
				"payload": {"kernel": "/k"}}, "state": "Running", "memory_actual_size": 268435456, "device_tree": {}}`)
		case "/api/v1/vm.counters":
			io.WriteString(w, `not json`)
		}
	}))
	defer srv.Close()
	c := newAPIClient(sock, 2*time.Second)
	ctx := context.Background()
	p, err := c.Ping(ctx)
	if err != nil || p.Version != "53.0" || p.PID != 42 || len(p.Features) != 2 {
		t.Errorf("Ping = %+v, %v", p, err)
	}
	i, err := c.VMInfo(ctx)
	if err != nil || i.State != "Running" || i.Config.Cpus.MaxVCPUs != 4 || i.Config.Memory.HotplugSize != 512<<20 {
		t.Errorf("VMInfo = %+v, %v", i, err)
	}
	var out map[string]any
	if err := c.call(ctx, http.MethodGet, "vm.counters", nil, &out); err == nil || !strings.Contains(err.Error(), "GET vm.counters: decode answer") {
		t.Errorf("undecodable answer: %v", err)
	}
}

// A VMM that does not answer costs the call's timeout, never a hang, in
// each way it can fail to answer; and cancelling the ctx ends a call at
// once.
func TestAPINeverAnswers(t *testing.T) {
	checkNoLeaks(t)
	tests := []struct {
		name  string
		serve func(t *testing.T, sock string) (stop func())
	}{
		{"socket bound, never accepts", func(t *testing.T, sock string) func() {
			// The kernel completes connects into the backlog: the request
			// is written, nothing ever reads it.
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			must(t, err)
			must(t, unix.Bind(fd, &unix.SockaddrUnix{Name: sock}))
			must(t, unix.Listen(fd, 8))
			return func() { unix.Close(fd) }
		}},
		{"accepts, reads, never answers", func(t *testing.T, sock string) func() {
			ln, err := net.Listen("unix", sock)
			must(t, err)
			done := make(chan struct{})
			go func() {
				defer close(done)
				var conns []net.Conn
				defer func() {
					for _, c := range conns {
						c.Close()
					}
				}()
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					conns = append(conns, c)
					go io.Copy(io.Discard, c)
				}
			}()
			return func() { ln.Close(); <-done }
		}},
		{"handler blocks", func(t *testing.T, sock string) func() {
			release := make(chan struct{})
			srv := serveUnix(t, sock, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			return func() { close(release); srv.Close() }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := apiSocket(t)
			stop := tt.serve(t, sock)
			defer stop()
			c := newAPIClient(sock, 300*time.Millisecond)

			start := time.Now()
			err := c.BootVM(context.Background())
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("call took %v with a 300ms timeout", took)
			}
			if err == nil || !strings.Contains(err.Error(), "PUT vm.boot: no answer from the VMM within") {
				t.Errorf("err = %v", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err does not wrap context.DeadlineExceeded: %v", err)
			}

			// The fd-passing path is bounded the same way.
			tap, err := os.Open("/dev/null")
			must(t, err)
			defer tap.Close()
			start = time.Now()
			err = c.AddNet(context.Background(), netConfigFor(0, netLaunch{MAC: "02:00:00:00:00:01"}), tap)
			if time.Since(start) > 3*time.Second || err == nil || !strings.Contains(err.Error(), "PUT vm.add-net") {
				t.Errorf("AddNet after %v: %v", time.Since(start), err)
			}

			// Cancellation ends a call at once, and says so.
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(30*time.Millisecond, cancel)
			c.timeout = time.Minute
			start = time.Now()
			_, err = c.VMInfo(ctx)
			if took := time.Since(start); took > 2*time.Second || !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled call: %v after %v", err, took)
			}
		})
	}
}

// A VMM that is gone, or hangs up mid-request, gives an error naming the
// call at once.
func TestAPIVMMGone(t *testing.T) {
	checkNoLeaks(t)
	sock := apiSocket(t)
	c := newAPIClient(sock, 2*time.Second)
	_, err := c.Ping(context.Background())
	if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "GET vmm.ping") {
		t.Errorf("no socket: %v", err)
	}

	ln, err := net.Listen("unix", sock)
	must(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			c.Read(buf)
			c.Close() // hang up without an answer
		}
	}()
	start := time.Now()
	err = c.CreateVM(context.Background(), vmConfigFor(testLaunch("/s")))
	if err == nil || !strings.Contains(err.Error(), "PUT vm.create") || time.Since(start) > time.Second {
		t.Errorf("hang-up: %v after %v", err, time.Since(start))
	}
	// vmm.shutdown: a VMM that exits before its answer is a success.
	if err := c.ShutdownVMM(context.Background()); err != nil {
		t.Errorf("ShutdownVMM with a hang-up: %v", err)
	}
}

// vm.add-net carries the taps as SCM_RIGHTS: the VMM receives the very
// files (same inode), in order, with a body that passes the schema.
func TestAPIPutWithFiles(t *testing.T) {
	checkNoLeaks(t)
	spec := loadSpec(t)
	sock := apiSocket(t)
	got := make(chan []*os.File, 1)
	srv := serveUnix(t, sock, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := spec.validateRequest(r, body); err != nil {
			t.Errorf("schema: %v", err)
		}
		got <- r.Context().Value(connKey{}).(*fdConn).takeFiles()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	dir := t.TempDir()
	var files []*os.File
	for _, name := range []string{"tap0", "tap1"} {
		f, err := os.Create(filepath.Join(dir, name))
		must(t, err)
		defer f.Close()
		files = append(files, f)
	}
	c := newAPIClient(sock, 2*time.Second)
	must(t, c.putWithFiles(context.Background(), "vm.add-net", netConfigFor(0, netLaunch{MAC: "02:00:00:00:00:01"}), files))
	received := <-got
	defer closeAll(received)
	if len(received) != len(files) {
		t.Fatalf("received %d fds, sent %d", len(received), len(files))
	}
	for i := range files {
		if !sameFile(t, files[i], received[i]) {
			t.Errorf("fd %d is not the file sent", i)
		}
	}
	// The sender's files are untouched (still open, still ours).
	if _, err := files[0].Stat(); err != nil {
		t.Errorf("sent file: %v", err)
	}
}

func sameFile(t *testing.T, a, b *os.File) bool {
	t.Helper()
	sa, err := a.Stat()
	must(t, err)
	sb, err := b.Stat()
	must(t, err)
	return os.SameFile(sa, sb)
}
