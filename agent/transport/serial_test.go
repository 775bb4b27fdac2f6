package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

// fakePorts stands in for a virtio-serial port: every open makes a fresh
// socketpair, keeps the guest end and hands the host end to the test.
type fakePorts struct {
	opens atomic.Int32
	hosts chan net.Conn
}

func newFakePorts() *fakePorts {
	return &fakePorts{hosts: make(chan net.Conn, 4)}
}

func (p *fakePorts) open() (*os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			return nil, err
		}
	}
	hostFile := os.NewFile(uintptr(fds[1]), "host")
	host, err := net.FileConn(hostFile)
	hostFile.Close()
	if err != nil {
		return nil, err
	}
	p.opens.Add(1)
	p.hosts <- host
	return os.NewFile(uintptr(fds[0]), "guest"), nil
}

// nextHost returns the host end of the next opened port, after the host's
// side of the handshake: the ready line the agent must send before
// anything else, a hello, and its echo.
func (p *fakePorts) nextHost(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-p.hosts:
		hostHandshake(t, c, "", 1)
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the listener did not open the port")
		return nil
	}
}

// hostHandshake plays the host: it reads the ready line, sends stale bytes
// and then the hello hellos times, and reads the echo.
func hostHandshake(t *testing.T, c net.Conn, stale string, hellos int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	line := make([]byte, len(contract.ReadyLine))
	if _, err := io.ReadFull(c, line); err != nil || string(line) != contract.ReadyLine {
		t.Fatalf("host read %q (%v), want the ready line %q", line, err, contract.ReadyLine)
	}
	hello := contract.HelloPrefix + "0123abcd\n"
	msg := stale
	for range hellos {
		msg += hello
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	want := contract.OKPrefix + "0123abcd\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("host read %q (%v), want the echo %q", got, err, want)
	}
}

// details is an agent that only answers GuestDetails.
type details struct {
	api.AgentServiceService
}

func (details) GuestDetails(context.Context, *api.GuestDetailsRequest) (*api.GuestDetailsResponse, error) {
	return &api.GuestDetailsResponse{Transport: "serial"}, nil
}

func callDetails(t *testing.T, client api.AgentServiceService) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.GuestDetails(ctx, &api.GuestDetailsRequest{})
	if err != nil {
		t.Fatalf("GuestDetails: %v", err)
	}
	if resp.Transport != "serial" {
		t.Fatalf("transport = %q", resp.Transport)
	}
}

// TestSerialListenerReconnect serves ttrpc on the listener, drops the host
// side and checks that a new host is served on the reopened port.
func TestSerialListenerReconnect(t *testing.T) {
	ports := newFakePorts()
	l := NewSerialListener("fake", ports.open)
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	api.RegisterAgentServiceService(srv, details{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()

	host := ttrpc.NewClient(ports.nextHost(t))
	callDetails(t, api.NewAgentServiceClient(host))
	callDetails(t, api.NewAgentServiceClient(host)) // the same conn keeps serving

	// Only one conn is out at a time: no second open while the first lives.
	time.Sleep(3 * hostPollInterval)
	if n := ports.opens.Load(); n != 1 {
		t.Fatalf("port opened %d times while the first host was connected", n)
	}

	host.Close()
	second := ttrpc.NewClient(ports.nextHost(t))
	defer second.Close()
	callDetails(t, api.NewAgentServiceClient(second))

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, ttrpc.ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// TestSerialHandshakeSkipsStaleBytes: bytes of an earlier session before
// the hello, and the hello sent twice (once per ready line the host read),
// must not reach ttrpc.
func TestSerialHandshakeSkipsStaleBytes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stale  string
		hellos int
	}{
		{"clean", "", 1},
		{"stale bytes", "\x00\x00\x00\x10garbage of an old frame\npodvm-hello zz\n", 1},
		{"stale run without newline", "abc", 1},
		{"hello twice", "", 2},
		{"hello three times after stale bytes", "\x01\x02\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ports := newFakePorts()
			l := NewSerialListener("fake", ports.open)
			srv, err := ttrpc.NewServer()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			api.RegisterAgentServiceService(srv, details{})
			go srv.Serve(context.Background(), l)
			c := <-ports.hosts
			hostHandshake(t, c, tc.stale, tc.hellos)
			host := ttrpc.NewClient(c)
			defer host.Close()
			callDetails(t, api.NewAgentServiceClient(host))
			callDetails(t, api.NewAgentServiceClient(host))
		})
	}
}

// TestSerialHandshakeHostGone: a host that sends no hello is given up on
// and the port reopened for the next host.
func TestSerialHandshakeHostGone(t *testing.T) {
	ports := newFakePorts()
	l := NewSerialListener("fake", ports.open)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	first := <-ports.hosts
	line := make([]byte, len(contract.ReadyLine))
	if _, err := io.ReadFull(first, line); err != nil {
		t.Fatal(err)
	}
	first.Close() // gone without a hello: the agent reads EOF
	second := ports.nextHost(t)
	defer second.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after the second host's handshake")
	}
}

// TestSerialListenerWaitsForHost checks that a hung-up port (no host
// connected) is not handed out, and that Close ends the wait.
func TestSerialListenerWaitsForHost(t *testing.T) {
	ports := newFakePorts()
	hungUp := func() (*os.File, error) {
		f, err := ports.open()
		if err == nil {
			(<-ports.hosts).Close()
		}
		return f, err
	}
	l := NewSerialListener("fake", hungUp)
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		t.Fatalf("Accept returned (%v) with no host connected", err)
	case <-time.After(5 * hostPollInterval):
	}
	l.Close()
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end Accept")
	}
}

func TestSerialListenerRetriesOpen(t *testing.T) {
	ports := newFakePorts()
	var fails atomic.Int32
	busyTwice := func() (*os.File, error) {
		if fails.Add(1) <= 2 {
			return nil, unix.EBUSY
		}
		return ports.open()
	}
	l := NewSerialListener("fake", busyTwice)
	defer l.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	ports.nextHost(t).Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if n := fails.Load(); n != 3 {
		t.Fatalf("open called %d times, want 3", n)
	}
}

func TestFindSerialPort(t *testing.T) {
	sys := t.TempDir()
	for port, name := range map[string]string{
		"vport0p0": "org.qemu.guest_agent.0\n",
		"vport1p1": "podvm.agent\n",
		"vport1p2": "",
	} {
		if err := os.MkdirAll(filepath.Join(sys, port), 0o755); err != nil {
			t.Fatal(err)
		}
		if name != "" {
			if err := os.WriteFile(filepath.Join(sys, port, "name"), []byte(name), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name    string
		want    string
		wantErr bool
	}{
		{"podvm.agent", "/dev/vport1p1", false},
		{"org.qemu.guest_agent.0", "/dev/vport0p0", false},
		{"podvm.other", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindSerialPort(sys, "/dev", tt.name)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("FindSerialPort(%q) = %q, %v; want %q (error %v)", tt.name, got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := FindSerialPort(filepath.Join(sys, "missing"), "/dev", "podvm.agent"); err == nil {
		t.Fatal("want an error without the sysfs class directory")
	}
}

func TestListenUnknownAddress(t *testing.T) {
	if _, _, err := Listen(context.Background(), "tcp:1234", testSecret(t)); err == nil {
		t.Fatal("want an error for an unknown address")
	}
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, kind, err := Listen(context.Background(), "unix:"+path, testSecret(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if kind != Unix {
		t.Fatalf("kind = %q", kind)
	}
}

// openPTY returns a pty master whose slave has been closed: like a
// virtio-serial port with no host, it polls POLLHUP until the slave (the
// "host") is opened again.
func openPTY(t *testing.T) (master *os.File, slavePath string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty to stand in for a port: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slavePath = "/dev/pts/" + strconv.Itoa(n)
	// A master reports the hang-up only once a slave has come and gone.
	s, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return m, slavePath
}

// TestSerialWaitHostWakesOnSignal: with the periodic check an hour away,
// only the host-arrival wake-up (SIGIO on a real port) can end the wait
// once the host is there.
func TestSerialWaitHostWakesOnSignal(t *testing.T) {
	master, slavePath := openPTY(t)
	arrived := make(chan os.Signal, 1)
	l := NewSerialListener("pty", nil)
	l.hostArrived, l.pollEvery = arrived, time.Hour
	defer l.Close()

	done := make(chan error, 1)
	go func() { done <- l.waitHost(master) }()
	select {
	case err := <-done:
		t.Fatalf("waitHost returned (%v) with no host", err)
	case <-time.After(100 * time.Millisecond):
	}
	host, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	arrived <- unix.SIGIO
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitHost did not wake on the host-arrival signal")
	}
	if fl, err := unix.FcntlInt(master.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_ASYNC != 0 {
		t.Fatalf("O_ASYNC left on after the wait (flags %#x, %v)", fl, err)
	}
}

// TestSetAsync checks that the port's owner and O_ASYNC are set for the
// wait and that O_ASYNC is cleared after it.
func TestSetAsync(t *testing.T) {
	master, _ := openPTY(t)
	if err := setAsync(master, true); err != nil {
		t.Fatal(err)
	}
	fl, err := unix.FcntlInt(master.Fd(), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_ASYNC == 0 {
		t.Fatalf("O_ASYNC not set (flags %#x, %v)", fl, err)
	}
	if owner, err := unix.FcntlInt(master.Fd(), unix.F_GETOWN, 0); err != nil || owner != os.Getpid() {
		t.Fatalf("owner = %d (%v), want %d", owner, err, os.Getpid())
	}
	if err := setAsync(master, false); err != nil {
		t.Fatal(err)
	}
	if fl, err = unix.FcntlInt(master.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_ASYNC != 0 {
		t.Fatalf("O_ASYNC still set (flags %#x, %v)", fl, err)
	}
}

// countChecks runs waitHost on a hung-up pty for d and returns how many
// times it checked the port.
func countChecks(t *testing.T, l *SerialListener, d time.Duration) int64 {
	t.Helper()
	master, _ := openPTY(t)
	done := make(chan error, 1)
	go func() { done <- l.waitHost(master) }()
	time.Sleep(d)
	l.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("waitHost after Close = %v, want net.ErrClosed", err)
	}
	return l.checks.Load()
}

// TestSerialWaitHostBacksOff: while SIGIO watches the port, the periodic
// check (each one wakes an idle guest's vCPU) doubles its period up to
// pollMax; without SIGIO it keeps pollEvery, its only way to see a host.
func TestSerialWaitHostBacksOff(t *testing.T) {
	const every, most, window = 10 * time.Millisecond, 80 * time.Millisecond, time.Second

	l := NewSerialListener("pty", nil)
	l.hostArrived, l.pollEvery, l.pollMax = make(chan os.Signal, 1), every, most
	// 10, 20, 40 then every 80 ms: about 15 checks in a second.
	if n := countChecks(t, l, window); n > 25 {
		t.Errorf("%d checks in %s with SIGIO armed, want the period to double to %s", n, window, most)
	}

	fixed := NewSerialListener("pty", nil)
	fixed.pollEvery, fixed.pollMax = every, most
	// About 100 at a fixed 10 ms; a loaded machine may fall well short.
	if n := countChecks(t, fixed, window); n < 30 {
		t.Errorf("%d checks in %s without SIGIO, want one every %s", n, window, every)
	}
}

// TestSerialWaitHostFindsHostWithoutSignal: a host whose arrival raises no
// signal is still found by the backed-off check, within pollMax.
func TestSerialWaitHostFindsHostWithoutSignal(t *testing.T) {
	master, slavePath := openPTY(t)
	l := NewSerialListener("pty", nil)
	l.hostArrived, l.pollEvery, l.pollMax = make(chan os.Signal, 1), 10*time.Millisecond, 100*time.Millisecond
	defer l.Close()
	done := make(chan error, 1)
	go func() { done <- l.waitHost(master) }()
	time.Sleep(500 * time.Millisecond) // long enough to reach pollMax
	host, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	arrived := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(arrived); d > time.Second {
			t.Errorf("host found after %s, want within about pollMax (100ms)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitHost did not find the host without a signal")
	}
}
