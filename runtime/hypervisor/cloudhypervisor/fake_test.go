package cloudhypervisor

// The test double of a Cloud Hypervisor process: a shell script that stands
// in for the process (records its arguments, forwards events to the event
// monitor fd, exits when told), and an httptest server on the API socket
// that speaks the REST API, validates every request (and its own answers)
// against the v53.0 schema, receives tap fds by SCM_RIGHTS, and opens a
// hybrid vsock socket with a tiny "agent" behind it once the VM boots.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/hvsock"
	"golang.org/x/sys/unix"
)

// fakeAnswer replaces the fake's normal answer to one operation.
type fakeAnswer struct {
	status int
	body   string
}

// chErrorBody is an error body as Cloud Hypervisor writes it: the error
// and its causes as a JSON array of strings.
func chErrorBody(msgs ...string) string {
	b, _ := json.Marshal(msgs)
	return string(b)
}

// fakeVMM is the API side of the test double.
type fakeVMM struct {
	t        testing.TB
	spec     *apiSpec
	dir      string // scripts, fifo and records
	stateDir string
	release  chan struct{} // closed at cleanup: hanging handlers return

	mu         sync.Mutex
	calls      []string // "PUT vm.create", ...
	bodies     map[string][]byte
	schemaErrs []error
	answers    map[string]fakeAnswer
	hangs      map[string]bool
	netFiles   []*os.File
	vmState    string // "", Created, Running, Shutdown
	config     json.RawMessage
	vcpus      uint32
	memBytes   int64
	srv        *httptest.Server
	events     *os.File // write end of the events fifo
	guest      *fakeGuest
	// vsockRefusals is how many hybrid vsock connects the fake guest
	// refuses (closes) before it accepts: a guest still booting.
	vsockRefusals int
	stopped       bool
}

// fakeEnv is one sandbox's worth of files and a fake VMM for it.
type fakeEnv struct {
	dir  string
	cfg  hypervisor.Config
	opts Options
	fake *fakeVMM
}

// newFakeEnv writes the fake binaries and a guest kernel/initramfs stand-in
// under a short directory (unix socket paths are limited), and starts the
// fake's API side, which binds the API socket once the fake process runs.
// serve=false leaves the API socket unbound: a VMM that never listens.
func newFakeEnv(t *testing.T, serve bool) *fakeEnv {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "pvch")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, f := range []string{"vmlinux", "initramfs"} {
		must(t, os.WriteFile(filepath.Join(dir, f), []byte("stand-in"), 0o644))
	}
	must(t, os.Mkdir(filepath.Join(dir, "shared"), 0o755))
	must(t, unix.Mkfifo(filepath.Join(dir, "events.fifo"), 0o600))
	// The fake cloud-hypervisor: records its arguments, says it runs, and
	// copies the events fifo to the event monitor fd until the test closes
	// the fifo (then it exits 0, as the real one after vmm.shutdown).
	chScript := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %[1]s/vmm.args\n: > %[1]s/started\nexec cat %[1]s/events.fifo >&3\n", dir)
	fsdScript := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'virtiofsd 1.13.2'; exit 0; fi\nprintf '%%s\\n' \"$@\" > %s/virtiofsd.args\nexec sleep 3600\n", dir)
	must(t, os.WriteFile(filepath.Join(dir, "cloud-hypervisor"), []byte(chScript), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "virtiofsd"), []byte(fsdScript), 0o755))
	e := &fakeEnv{
		dir: dir,
		cfg: hypervisor.Config{
			ID: "sb-" + filepath.Base(dir), StateDir: filepath.Join(dir, "state"),
			KernelPath: filepath.Join(dir, "vmlinux"), InitrdPath: filepath.Join(dir, "initramfs"),
			VCPUs: 1, MemoryMiB: 256, SharedDir: filepath.Join(dir, "shared"),
		},
		opts: Options{
			Path: filepath.Join(dir, "cloud-hypervisor"), VirtiofsdPath: filepath.Join(dir, "virtiofsd"),
			APITimeout: 2 * time.Second, StartTimeout: 5 * time.Second, StopTimeout: time.Second,
			AgentDialTimeout: 3 * time.Second,
		},
	}
	f := &fakeVMM{t: t, spec: loadSpec(t), dir: dir, stateDir: e.cfg.StateDir, release: make(chan struct{}),
		bodies: map[string][]byte{}, answers: map[string]fakeAnswer{}, hangs: map[string]bool{}}
	e.fake = f
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.attach(stop, serve)
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		f.close()
	})
	return e
}

func (e *fakeEnv) driver() *Driver { return newTestDriver(e.opts, kvmFacts()) }

// attach waits for the fake process to run, then binds the API socket and
// opens the events fifo; it gives up when stop is closed.
func (f *fakeVMM) attach(stop <-chan struct{}, serve bool) {
	if !waitFor(stop, func() bool { _, err := os.Stat(filepath.Join(f.dir, "started")); return err == nil }) {
		return
	}
	if serve {
		srv := serveUnix(f.t, filepath.Join(f.stateDir, apiSocketName), f)
		f.mu.Lock()
		f.srv = srv
		f.mu.Unlock()
	}
	// The fake process blocks opening the fifo for reading; a
	// non-blocking open for writing succeeds once it does.
	var w *os.File
	waitFor(stop, func() bool {
		fd, err := unix.Open(filepath.Join(f.dir, "events.fifo"), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		unix.SetNonblock(fd, false)
		w = os.NewFile(uintptr(fd), "events.fifo")
		return true
	})
	if w != nil {
		f.mu.Lock()
		f.events = w
		f.mu.Unlock()
	}
}

// waitFor polls cond every 2 ms until it holds (true) or stop is closed.
func waitFor(stop <-chan struct{}, cond func() bool) bool {
	for !cond() {
		select {
		case <-stop:
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
	return true
}

// close releases everything the fake holds.
func (f *fakeVMM) close() {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		return
	}
	f.stopped = true
	srv, guest, files, events := f.srv, f.guest, f.netFiles, f.events
	f.events = nil
	f.mu.Unlock()
	close(f.release)
	if srv != nil {
		srv.Close()
	}
	if guest != nil {
		guest.close()
	}
	for _, fl := range files {
		fl.Close()
	}
	if events != nil {
		events.Close()
	}
}

// exitProcess makes the fake process exit 0 (its events fifo ends).
func (f *fakeVMM) exitProcess() {
	f.mu.Lock()
	events := f.events
	f.events = nil
	f.mu.Unlock()
	if events != nil {
		events.Close()
	}
}

// sendEvent writes one event as the real event monitor does (pretty JSON
// followed by a blank line).
func (f *fakeVMM) sendEvent(source, event string) error {
	f.mu.Lock()
	w := f.events
	f.mu.Unlock()
	if w == nil {
		return errors.New("the events fifo is not open")
	}
	b, _ := json.MarshalIndent(map[string]any{
		"timestamp": map[string]int{"secs": 1, "nanos": 5},
		"source":    source, "event": event, "properties": nil,
	}, "", "  ")
	_, err := w.Write(append(b, '\n', '\n'))
	return err
}

func (f *fakeVMM) answer(op string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[op] = fakeAnswer{status, body}
}

func (f *fakeVMM) hang(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hangs[op] = true
}

func (f *fakeVMM) setVsockRefusals(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vsockRefusals = n
}

// callLog is the calls received so far, repeated vmm.pings collapsed.
func (f *fakeVMM) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if len(out) > 0 && c == "GET vmm.ping" && out[len(out)-1] == c {
			continue
		}
		out = append(out, c)
	}
	return out
}

func (f *fakeVMM) body(op string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[op]
}

// schemaErrors are the requests and answers that did not match the schema.
func (f *fakeVMM) schemaErrors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.schemaErrs...)
}

func (f *fakeVMM) receivedNetFiles() []*os.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*os.File(nil), f.netFiles...)
}

// ServeHTTP is the API. Every request is recorded and validated first; an
// invalid one is answered 400 as the real VMM does for a body it cannot
// use, and the test fails on it (schemaErrors).
func (f *fakeVMM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	op := strings.TrimPrefix(r.URL.Path, "/api/v1/")
	call := r.Method + " " + op
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.bodies[op] = body
	ans, failing := f.answers[op]
	hang := f.hangs[op]
	f.mu.Unlock()

	var files []*os.File
	if c, ok := r.Context().Value(connKey{}).(*fdConn); ok {
		files = c.takeFiles()
	}
	if err := f.spec.validateRequest(r, body); err != nil {
		f.schemaError(err)
		closeAll(files)
		f.reply(w, r, http.StatusBadRequest, chErrorBody("Failed to deserialize JSON", err.Error()))
		return
	}
	if hang {
		closeAll(files)
		select {
		case <-r.Context().Done():
		case <-f.release:
		}
		return
	}
	if failing {
		closeAll(files)
		f.reply(w, r, ans.status, ans.body)
		return
	}
	switch call {
	case "GET vmm.ping":
		f.reply(w, r, http.StatusOK, fmt.Sprintf(`{"build_version": "v53.0-fake", "version": "53.0", "pid": %d, "features": ["kvm"]}`, os.Getpid()))
	case "PUT vm.create":
		f.create(w, r, body)
	case "PUT vm.add-net":
		f.addNet(w, r, files)
	case "PUT vm.boot":
		f.boot(w, r)
	case "GET vm.info":
		f.info(w, r)
	case "PUT vm.resize":
		f.resize(w, r, body)
	case "PUT vm.shutdown":
		f.setState(w, r, "Running", "Shutdown")
	case "PUT vm.delete":
		f.mu.Lock()
		f.vmState, f.config = "", nil
		guest := f.guest
		f.guest = nil
		f.mu.Unlock()
		if guest != nil {
			guest.close()
		}
		f.reply(w, r, http.StatusNoContent, "")
	case "PUT vmm.shutdown":
		f.reply(w, r, http.StatusNoContent, "")
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		f.exitProcess()
	default:
		closeAll(files)
		f.reply(w, r, http.StatusNotFound, chErrorBody("Not Found"))
	}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func (f *fakeVMM) schemaError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.schemaErrs = append(f.schemaErrs, err)
}

// reply writes an answer, after checking that the schema allows it.
func (f *fakeVMM) reply(w http.ResponseWriter, r *http.Request, status int, body string) {
	if status >= 200 && status < 300 {
		if err := f.spec.validateResponse(r, status, []byte(body)); err != nil {
			f.schemaError(fmt.Errorf("the fake's own answer: %w", err))
		}
	}
	w.Header().Set("Server", "Cloud Hypervisor API")
	if body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (f *fakeVMM) create(w http.ResponseWriter, r *http.Request, body []byte) {
	var c vmConfig
	if err := json.Unmarshal(body, &c); err != nil {
		f.reply(w, r, http.StatusBadRequest, chErrorBody("Failed to deserialize JSON", err.Error()))
		return
	}
	f.mu.Lock()
	exists := f.vmState != ""
	if !exists {
		f.vmState, f.config = "Created", json.RawMessage(body)
		f.vcpus, f.memBytes = c.Cpus.BootVCPUs, c.Memory.Size
	}
	f.mu.Unlock()
	if exists {
		f.reply(w, r, http.StatusInternalServerError, chErrorBody("Error from API", "The VM could not be created", "VM is already created"))
		return
	}
	f.reply(w, r, http.StatusNoContent, "")
}

// addNet takes the tap fd as the real VMM does: before boot the device is
// added to the configuration (204, "cold" add).
func (f *fakeVMM) addNet(w http.ResponseWriter, r *http.Request, files []*os.File) {
	f.mu.Lock()
	state := f.vmState
	if state == "Created" {
		f.netFiles = append(f.netFiles, files...)
	}
	f.mu.Unlock()
	switch {
	case state != "Created":
		closeAll(files)
		f.reply(w, r, http.StatusInternalServerError, chErrorBody("Error from API", "The network device could not be added to the VM", "VM is not created"))
	case len(files) != 1:
		closeAll(files)
		f.reply(w, r, http.StatusBadRequest, chErrorBody("Bad Request", fmt.Sprintf("got %d tap fds, want 1", len(files))))
	default:
		f.reply(w, r, http.StatusNoContent, "")
	}
}

func (f *fakeVMM) boot(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	state, cfg := f.vmState, f.config
	f.mu.Unlock()
	if state != "Created" {
		f.reply(w, r, http.StatusNotFound, chErrorBody("Error from API", "The VM could not boot", "VM is not created"))
		return
	}
	var c vmConfig
	json.Unmarshal(cfg, &c)
	guest, err := newFakeGuest(c.Vsock.Socket, f)
	if err != nil {
		f.reply(w, r, http.StatusInternalServerError, chErrorBody("Error from API", "The VM could not boot", err.Error()))
		return
	}
	f.mu.Lock()
	f.vmState, f.guest = "Running", guest
	f.mu.Unlock()
	f.reply(w, r, http.StatusNoContent, "")
}

func (f *fakeVMM) info(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	state, cfg, mem := f.vmState, f.config, f.memBytes
	f.mu.Unlock()
	if state == "" {
		f.reply(w, r, http.StatusNotFound, chErrorBody("Error from API", "VM is not created"))
		return
	}
	b, _ := json.Marshal(map[string]any{"config": cfg, "state": state, "memory_actual_size": mem})
	f.reply(w, r, http.StatusOK, string(b))
}

func (f *fakeVMM) resize(w http.ResponseWriter, r *http.Request, body []byte) {
	var req vmResize
	json.Unmarshal(body, &req)
	f.mu.Lock()
	state := f.vmState
	if state == "Running" {
		if req.DesiredVCPUs != nil {
			f.vcpus = *req.DesiredVCPUs
		}
		if req.DesiredRAM != nil {
			f.memBytes = *req.DesiredRAM
		}
	}
	f.mu.Unlock()
	if state != "Running" {
		f.reply(w, r, http.StatusNotFound, chErrorBody("Error from API", "VM is not created"))
		return
	}
	f.reply(w, r, http.StatusNoContent, "")
}

func (f *fakeVMM) setState(w http.ResponseWriter, r *http.Request, from, to string) {
	f.mu.Lock()
	ok := f.vmState == from
	if ok {
		f.vmState = to
	}
	f.mu.Unlock()
	if !ok {
		f.reply(w, r, http.StatusInternalServerError, chErrorBody("Error from API", "Invalid VM state transition"))
		return
	}
	f.reply(w, r, http.StatusNoContent, "")
}

// fakeGuest is the VMM side of hybrid vsock with a tiny agent in the guest:
// CONNECT <port> to the agent port is answered OK <host port>, then the
// agent checks the host's secret, greets and echoes lines. Until vsockRefusals are used up, connects
// are refused the way the VMM does it: the socket is closed unanswered.
type fakeGuest struct {
	ln    net.Listener
	vmm   *fakeVMM
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

const fakeAgentGreeting = "fake-agent ready"

func newFakeGuest(path string, vmm *fakeVMM) (*fakeGuest, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	g := &fakeGuest{ln: ln, vmm: vmm}
	g.wg.Add(1)
	go g.accept()
	return g, nil
}

func (g *fakeGuest) accept() {
	defer g.wg.Done()
	hostPort := uint32(1 << 30)
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		g.conns = append(g.conns, c)
		g.mu.Unlock()
		hostPort++
		g.wg.Add(1)
		go func(c net.Conn, hostPort uint32) {
			defer g.wg.Done()
			defer c.Close()
			line, err := hvsock.ReadLine(c, hvsock.MaxReplyLine)
			if err != nil || line != "CONNECT "+strconv.Itoa(contract.VsockPort) {
				return // a wrong port or command: nothing listens, the VMM closes
			}
			g.vmm.mu.Lock()
			refuse := g.vmm.vsockRefusals > 0
			if refuse {
				g.vmm.vsockRefusals--
			}
			g.vmm.mu.Unlock()
			if refuse {
				return
			}
			g.vmm.mu.Lock()
			config := g.vmm.config
			g.vmm.mu.Unlock()
			fmt.Fprintf(c, "OK %d\n", hostPort)
			if fakeAgentAuth(c, config) != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", fakeAgentGreeting)
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				fmt.Fprintf(c, "echo %s\n", sc.Text())
			}
		}(c, hostPort)
	}
}

func (g *fakeGuest) close() {
	g.ln.Close()
	g.mu.Lock()
	for _, c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}
