package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/container"
	"github.com/podvm/podvm/agent/reaper"
)

// agentMethods are every call of AgentService.
var agentMethods = []string{
	"GuestDetails", "CreateSandbox", "DestroySandbox", "CreateContainer", "StartContainer", "RemoveContainer",
	"WaitProcess", "SignalProcess", "WriteStdin", "CloseStdin", "ReadStdout", "ReadStderr", "ExecProcess",
	"RemoveProcess", "ResizeTTY", "ListProcesses", "StatsContainer", "UpdateContainer", "GetOOMEvent", "ConfigureNetwork",
}

// fuzzAgentAddr serves one agent off the guest (runc absent, container
// state in a temporary directory, no network) on a unix socket for every
// input of a fuzz target, and removes it all when the target ends.
func fuzzAgentAddr(f *testing.F) string {
	if err := reaper.Start(); err != nil {
		f.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "podvm-fuzz-agent")
	if err != nil {
		f.Fatal(err)
	}
	exits := reaper.Subscribe()
	cfg := container.Config{Runc: "/nonexistent/runc", StateDir: filepath.Join(dir, "runc"), BundleDir: filepath.Join(dir, "containers")}
	svc := New(Config{Containers: container.NewManager(cfg, exits), StartedNs: 1})
	svc.SetReady("unix", 2)
	srv, err := NewServer(svc)
	if err != nil {
		f.Fatal(err)
	}
	addr := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	f.Cleanup(func() {
		srv.Close()
		reaper.Unsubscribe(exits)
		os.RemoveAll(dir)
	})
	return addr
}

// rawRequest marshals to exactly its bytes: the fuzz input as a request.
func rawRequest(b []byte) *api.Empty {
	m := &api.Empty{}
	m.ProtoReflect().SetUnknown(b)
	return m
}

// FuzzAgentRequests sends every AgentService call with any bytes as its
// request, over ttrpc as the shim does. The agent is PID 1 of the guest:
// it must answer each (an error is fine) without a panic, which its
// interceptor would turn into an Internal "agent panic" error.
func FuzzAgentRequests(f *testing.F) {
	addr := fuzzAgentAddr(f)
	for i := range agentMethods {
		f.Add(uint8(i), []byte{})
	}
	f.Add(uint8(1), []byte("\x0a\x02s1\x1a\x1a\x0a\x08virtiofs\x12\x05podvm\x1a\x07relative")) // CreateSandbox, relative mount point
	f.Add(uint8(3), []byte("\x0a\x03../\x12\x02{}"))                                           // CreateContainer, bad id, bad spec
	f.Add(uint8(3), []byte("\x0a\x02c1\x12\x16{\"root\":{\"path\":\"/\"}}"))                   // CreateContainer, root that exists
	f.Add(uint8(7), []byte("\x0a\x02c1\x18\xff\x01"))                                          // SignalProcess, signal 255
	f.Add(uint8(14), []byte("\x0a\x02c1\x18\xff\xff\xff\xff\x0f"))                             // ResizeTTY, huge width
	f.Add(uint8(17), []byte("\x0a\x02c1\x12\x03{x:"))                                          // UpdateContainer, bad JSON
	f.Add(uint8(19), []byte("\x0a\x05\x0a\x03eth"))                                            // ConfigureNetwork off the guest
	f.Add(uint8(8), []byte("\x0a\x02c1\x1a\x10aaaaaaaaaaaaaaaa"))                              // WriteStdin
	f.Fuzz(func(t *testing.T, method uint8, req []byte) {
		conn, err := net.Dial("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		client := ttrpc.NewClient(conn)
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		name := agentMethods[int(method)%len(agentMethods)]
		err = client.Call(ctx, "podvm.agent.v1.AgentService", name, rawRequest(req), &api.Empty{})
		if st, ok := status.FromError(err); ok && st.Code() == codes.Internal && strings.Contains(st.Message(), "agent panic") {
			t.Fatalf("%s with request %x: %v", name, req, err)
		}
	})
}

// FuzzAgentFrames writes any bytes on a connection to the agent, as a
// broken or hostile peer would, then checks that the agent still serves a
// new connection: garbage ends that connection, never the agent.
func FuzzAgentFrames(f *testing.F) {
	addr := fuzzAgentAddr(f)
	f.Add([]byte{})
	f.Add([]byte("podvm-agent ready\n"))
	f.Add([]byte("\xff\xff\xff\xff\x00\x00\x00\x01\x01\x00"))                 // 4 GiB message announced
	f.Add([]byte("\x00\x00\x00\x04\x00\x00\x00\x01\x01\x00\xde\xad\xbe\xef")) // request that is no protobuf
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x02\x01\x00"))                 // even stream id (server-initiated)
	f.Add([]byte("\x00\x00\x00\x03\x00\x00\x00\x01\x07\xff\x01\x02\x03"))     // unknown message type
	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := net.Dial("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(100 * time.Millisecond))
		conn.Write(data)
		conn.Close()

		conn, err = net.Dial("unix", addr)
		if err != nil {
			t.Fatalf("the agent stopped listening after %x: %v", data, err)
		}
		client := ttrpc.NewClient(conn)
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := api.NewAgentServiceClient(client).GuestDetails(ctx, &api.GuestDetailsRequest{}); err != nil {
			t.Fatalf("the agent does not answer after %x: %v", data, err)
		}
	})
}
