package stdio

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"

	"github.com/podvm/podvm/agent/api"
)

// fakeAgent serves canned output in small pieces and records stdin.
type fakeAgent struct {
	mu          sync.Mutex
	stdout      []byte
	stderr      []byte
	stdin       bytes.Buffer
	stdinClosed chan struct{}
}

func (f *fakeAgent) read(buf *[]byte, n uint32) *api.ReadStreamResponse {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n > 7 {
		n = 7 // force many calls
	}
	if len(*buf) == 0 {
		return &api.ReadStreamResponse{Eof: true}
	}
	k := min(int(n), len(*buf))
	d := (*buf)[:k]
	*buf = (*buf)[k:]
	return &api.ReadStreamResponse{Data: d}
}

func (f *fakeAgent) ReadStdout(_ context.Context, r *api.ReadStreamRequest) (*api.ReadStreamResponse, error) {
	return f.read(&f.stdout, r.Len), nil
}

func (f *fakeAgent) ReadStderr(_ context.Context, r *api.ReadStreamRequest) (*api.ReadStreamResponse, error) {
	return f.read(&f.stderr, r.Len), nil
}

func (f *fakeAgent) WriteStdin(_ context.Context, r *api.WriteStreamRequest) (*api.WriteStreamResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stdin.Write(r.Data)
	return &api.WriteStreamResponse{Len: uint32(len(r.Data))}, nil
}

func (f *fakeAgent) CloseStdin(context.Context, *api.CloseStdinRequest) (*api.Empty, error) {
	close(f.stdinClosed)
	return &api.Empty{}, nil
}

func mkfifo(t *testing.T, dir, name string) string {
	p := filepath.Join(dir, name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRelayCopiesStreamsAndClosesStdin(t *testing.T) {
	dir := t.TempDir()
	in, out, errp := mkfifo(t, dir, "in"), mkfifo(t, dir, "out"), mkfifo(t, dir, "err")
	agent := &fakeAgent{stdout: []byte("hello from the guest\n"), stderr: []byte("an error line\n"), stdinClosed: make(chan struct{})}
	ctx := context.Background()

	// containerd's side: readers of stdout/stderr and the writer of stdin.
	outR, err := fifo.OpenFifo(ctx, out, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	errR, err := fifo.OpenFifo(ctx, errp, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Start(ctx, agent, "c1", "", Streams{Stdin: in, Stdout: out, Stderr: errp})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inW, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	inW.Write([]byte("typed input"))
	inW.Close()

	gotOut, _ := io.ReadAll(outR)
	gotErr, _ := io.ReadAll(errR)
	if string(gotOut) != "hello from the guest\n" || string(gotErr) != "an error line\n" {
		t.Errorf("stdout %q, stderr %q", gotOut, gotErr)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.WaitOutput(wctx); err != nil {
		t.Fatalf("WaitOutput: %v", err)
	}
	select {
	case <-agent.stdinClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("EOF on the stdin fifo did not close stdin in the guest")
	}
	agent.mu.Lock()
	defer agent.mu.Unlock()
	if agent.stdin.String() != "typed input" {
		t.Errorf("guest stdin got %q", agent.stdin.String())
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		s  Streams
		ok bool
	}{
		{Streams{Stdout: "/run/fifo/out"}, true},
		{Streams{Stdout: "fifo:///run/fifo/out"}, true},
		{Streams{Stdout: "binary:///usr/bin/logger"}, false},
		{Streams{Stdin: "file:///tmp/x"}, false},
		{Streams{Terminal: true, Stdout: "/run/fifo/out"}, true},
	}
	for _, c := range cases {
		if err := Validate(c.s); (err == nil) != c.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", c.s, err, c.ok)
		}
	}
}

// emptyGuest answers every read at once with nothing and no EOF: a guest
// that misbehaves (the agent blocks until it has data or EOF).
type emptyGuest struct {
	fakeAgent
	mu sync.Mutex
	n  int
}

func (g *emptyGuest) ReadStdout(context.Context, *api.ReadStreamRequest) (*api.ReadStreamResponse, error) {
	g.mu.Lock()
	g.n++
	g.mu.Unlock()
	return &api.ReadStreamResponse{}, nil
}

// TestRelayPacesEmptyReads: the relay does not spin on a guest that
// answers reads with nothing.
func TestRelayPacesEmptyReads(t *testing.T) {
	dir := t.TempDir()
	out := mkfifo(t, dir, "out")
	outR, err := fifo.OpenFifo(context.Background(), out, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	g := &emptyGuest{}
	begin := time.Now()
	r, err := Start(context.Background(), g, "c1", "", Streams{Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	r.Close()
	ran := time.Since(begin) // a loaded machine may oversleep
	g.mu.Lock()
	defer g.mu.Unlock()
	if limit := 2 * int(ran/emptyReadBackoff); g.n > limit {
		t.Errorf("%d reads in %v of a guest that answers with nothing; want them paced (at most %d)", g.n, ran.Round(time.Millisecond), limit)
	}
}
