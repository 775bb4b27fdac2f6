package portforward

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/server"
	"github.com/podvm/podvm/runtime/internal/vmtest"
	"github.com/podvm/podvm/runtime/network"
)

// podNetns makes a network namespace standing in for a pod's, with its
// loopback up as CNI's loopback plugin leaves it, and returns its path.
func podNetns(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		vmtest.Missing(t, "needs root: creates a network namespace and nat rules in it")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		vmtest.Missing(t, "needs ip (apt-get install iproute2): %v", err)
	}
	for _, name := range []string{"iptables", "iptables-restore"} {
		if _, err := tool(name); err != nil {
			vmtest.Missing(t, "%v", err)
		}
	}
	name := fmt.Sprintf("pvpf-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	if len(name) > 60 {
		name = name[:60]
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		vmtest.Missing(t, "cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return "/var/run/netns/" + name
}

// agentClient serves the real agent service on a unix socket; its "guest
// loopback" is this process's, where the tests' servers listen.
func agentClient(t *testing.T) api.AgentServiceService {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(server.New(server.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(c)
	t.Cleanup(func() { client.Close() })
	return api.NewAgentServiceClient(client)
}

// upperServer answers each connection with what it read, in upper case,
// once the client has half-closed; it returns its port.
func upperServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// exchange dials 127.0.0.1:port inside the namespace, as the CRI does,
// sends msg, half-closes and reads to the end.
func exchange(t *testing.T, nsPath string, port int, msg string) (string, error) {
	t.Helper()
	var got string
	err := network.Do(nsPath, func() error {
		c, err := net.DialTimeout("tcp4", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		got = string(b)
		return err
	})
	return got, err
}

func TestForwardRelaysIntoTheGuestIntegration(t *testing.T) {
	ns := podNetns(t)
	f, err := Start(context.Background(), ns, Agent{Client: agentClient(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	port := upperServer(t)

	// Sequential and concurrent connections, and one bigger than a chunk.
	big := strings.Repeat("0123456789abcdef", (3*maxChunk)/16+7)
	var wg sync.WaitGroup
	for i, msg := range []string{"hello guest", "second", "third", big} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := exchange(t, ns, port, msg)
			if err != nil {
				t.Errorf("connection %d: %v", i, err)
			} else if got != strings.ToUpper(msg) {
				t.Errorf("connection %d: got %d bytes %.40q, want %d bytes %.40q", i, len(got), got, len(msg), strings.ToUpper(msg))
			}
		}()
	}
	wg.Wait()
}

// TestForwardNothingListeningIntegration: a port nothing listens on in the
// guest ends the host connection at once, with nothing read.
func TestForwardNothingListeningIntegration(t *testing.T) {
	ns := podNetns(t)
	f, err := Start(context.Background(), ns, Agent{Client: agentClient(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	begin := time.Now()
	got, err := exchange(t, ns, closed, "anyone?")
	if got != "" {
		t.Fatalf("read %q from a port nothing listens on", got)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Fatalf("the connection took %s to end", took)
	}
	t.Logf("connection to the closed port ended after %s (%v)", time.Since(begin).Round(time.Millisecond), err)
}

// stallingOpener opens guest connections that never answer.
type stallingOpener struct{ opened chan struct{} }

func (o stallingOpener) OpenPort(ctx context.Context, port uint16) (GuestConn, error) {
	a, b := net.Pipe()
	go func() { <-ctx.Done(); b.Close() }()
	o.opened <- struct{}{}
	return pipeConn{a}, nil
}

type pipeConn struct{ net.Conn }

func (p pipeConn) CloseWrite() error { return nil }

// TestForwardCloseEndsRelaysIntegration: Close ends connections in flight
// on both sides and stops accepting; a second Start in the same namespace
// (a new shim after a crash) replaces the rule, with one jump to the chain.
func TestForwardCloseEndsRelaysIntegration(t *testing.T) {
	ns := podNetns(t)
	o := stallingOpener{opened: make(chan struct{}, 1)}
	f, err := Start(context.Background(), ns, o)
	if err != nil {
		t.Fatal(err)
	}
	result := make(chan error, 1)
	go func() {
		_, err := exchange(t, ns, 9, "")
		result <- err
	}()
	select {
	case <-o.opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection never reached the opener")
	}
	begin := time.Now()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took >= closeWait {
		t.Errorf("Close took %s: it waited for a relay it should have ended", took)
	}
	select {
	case <-result:
	case <-time.After(5 * time.Second):
		t.Fatal("the host connection stayed open after Close")
	}

	// The old listener is gone; a new forwarder takes over the namespace.
	f2, err := Start(context.Background(), ns, Agent{Client: agentClient(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	port := upperServer(t)
	if got, err := exchange(t, ns, port, "again"); err != nil || got != "AGAIN" {
		t.Fatalf("after a second Start: %q, %v", got, err)
	}
	var rules string
	if err := network.Do(ns, func() error {
		out, err := exec.Command("iptables", "-w", "5", "-t", "nat", "-S").CombinedOutput()
		rules = string(out)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(rules, "-A OUTPUT -j "+Chain); n != 1 {
		t.Errorf("%d jumps to %s after two starts, want 1:\n%s", n, Chain, rules)
	}
	if n := strings.Count(rules, "-A "+Chain+" "); n != 1 {
		t.Errorf("%d rules in %s after two starts, want 1:\n%s", n, Chain, rules)
	}
}

func TestStartErrorsIntegration(t *testing.T) {
	_, err := Start(context.Background(), "/var/run/netns/pvpf-does-not-exist", stallingOpener{})
	if err == nil || !strings.Contains(err.Error(), "pvpf-does-not-exist") {
		t.Fatalf("missing namespace: %v", err)
	}
}
