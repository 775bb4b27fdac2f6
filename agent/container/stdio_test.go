package container

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// TestSourceReadCancelKeepsData cancels a blocked read and checks that the
// bytes written afterwards go to the next reader, not to the cancelled one.
func TestSourceReadCancelKeepsData(t *testing.T) {
	s, p, err := newStdio(false, true, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	defer p.Close()

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, _, err := s.stdout.read(ctx, 16)
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read = %v, want context.Canceled", err)
	}

	if _, err := p.out.Write([]byte("kept")); err != nil {
		t.Fatal(err)
	}
	data, eof, err := s.stdout.read(context.Background(), 16)
	if err != nil || eof || string(data) != "kept" {
		t.Fatalf("read after cancel = %q, %v, %v", data, eof, err)
	}

	// Once the writer is gone the stream drains to EOF, and stays there.
	p.out.Close()
	for range 2 {
		if data, eof, err := s.stdout.read(context.Background(), 16); err != nil || !eof || len(data) != 0 {
			t.Fatalf("read after close = %q, %v, %v; want eof", data, eof, err)
		}
	}
}

func TestUnrequestedStreams(t *testing.T) {
	s, p, err := newStdio(false, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, eof, err := s.stderr.read(context.Background(), 8); !eof || err != nil {
		t.Fatalf("read of unrequested stderr: eof %v, %v", eof, err)
	}
	if _, err := s.stdin.write(context.Background(), []byte("x")); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("write to unrequested stdin = %v, want FailedPrecondition", err)
	}
	if p.null == nil {
		t.Fatal("procIO has no /dev/null for unrequested streams")
	}
}

func TestStdinClose(t *testing.T) {
	s, p, err := newStdio(true, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n, err := s.stdin.write(context.Background(), []byte("hi")); n != 2 || err != nil {
		t.Fatalf("write = %d, %v", n, err)
	}
	buf := make([]byte, 8)
	if n, _ := p.in.Read(buf); string(buf[:n]) != "hi" {
		t.Fatalf("process read %q", buf[:n])
	}
	if err := s.stdin.close(); err != nil {
		t.Fatal(err)
	}
	if err := s.stdin.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.stdin.write(context.Background(), []byte("x")); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("write after close = %v, want FailedPrecondition", err)
	}
}

// TestStdinCloseDuringBlockedWrite closes stdin while a write waits on a
// full pipe that nobody reads.
func TestStdinCloseDuringBlockedWrite(t *testing.T) {
	s, p, err := newStdio(true, false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	res := make(chan error, 1)
	go func() {
		_, err := s.stdin.write(context.Background(), make([]byte, 1<<20))
		res <- err
	}()
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() {
		s.stdin.close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close waited for the blocked write")
	}
	if err := <-res; !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("blocked write ended with %v, want FailedPrecondition", err)
	}
}
