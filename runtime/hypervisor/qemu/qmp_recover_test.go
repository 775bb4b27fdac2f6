package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Actions a serveQMP handler can return besides reply lines.
const (
	qmpClose = "CLOSE" // close the connection
	qmpStall = "STALL" // stop reading this connection (QEMU's main loop behind)
)

// serveQMP serves any number of QMP clients on a unix socket, one
// goroutine each, and counts the connections. handle gets the connection's
// number (1 for the first), each command and its id, and returns the lines
// to send back, or qmpClose or qmpStall.
func serveQMP(t *testing.T, handle func(conn int, cmd string, id any) []string) (string, *atomic.Int32) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveQMPConn(t, c, int(conns.Add(1)), done, handle)
		}
	}()
	return path, &conns
}

func serveQMPConn(t *testing.T, c net.Conn, n int, done <-chan struct{}, handle func(conn int, cmd string, id any) []string) {
	defer c.Close()
	c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}` + "\n"))
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var req struct {
			Execute string `json:"execute"`
			ID      any    `json:"id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			t.Errorf("bad request %q", sc.Text())
			return
		}
		lines := []string{reply(req.ID, "{}")}
		if req.Execute != "qmp_capabilities" {
			lines = handle(n, req.Execute, req.ID)
		}
		for _, line := range lines {
			switch line {
			case qmpClose:
				return
			case qmpStall:
				<-done
				return
			}
			c.Write([]byte(line + "\n"))
		}
	}
}

// A QMP command that fails on I/O (its ctx ended first, the write was cut,
// QEMU closed the socket) leaves the connection out of step; the next
// command must work again, on a new connection.
func TestQMPRecoversAfterIOFailure(t *testing.T) {
	const timeout = 200 * time.Millisecond
	big := map[string]any{"data": strings.Repeat("x", 8<<20)} // more than a socket buffer
	// A step that is to fail by its deadline gets timeout; the others
	// get a bound a loaded machine cannot reach, as a redial may come first.
	type step struct {
		cmd     string
		args    any
		wantErr bool
		cut     bool
	}
	cases := []struct {
		name   string
		handle func(conn int, cmd string, id any) []string
		steps  []step
		conns  int32 // connections the fake QEMU saw at the end
	}{{
		name: "late reply",
		handle: func(conn int, cmd string, id any) []string {
			if cmd == "slow" {
				time.Sleep(3 * timeout)
			}
			return []string{reply(id, `{"status": "running", "running": true}`)}
		},
		steps: []step{{cmd: "slow", wantErr: true, cut: true}, {cmd: "query-status"}, {cmd: "query-status"}},
		conns: 2,
	}, {
		name: "write cut by the deadline",
		handle: func(conn int, cmd string, id any) []string {
			if cmd == "stop-reading" {
				return []string{reply(id, "{}"), qmpStall}
			}
			return []string{reply(id, `{"status": "running", "running": true}`)}
		},
		steps: []step{{cmd: "stop-reading"}, {cmd: "big", args: big, wantErr: true, cut: true}, {cmd: "query-status"}},
		conns: 2,
	}, {
		name: "server closes the connection",
		handle: func(conn int, cmd string, id any) []string {
			if cmd == "hang-up" {
				return []string{qmpClose}
			}
			return []string{reply(id, `{"status": "running", "running": true}`)}
		},
		steps: []step{{cmd: "hang-up", wantErr: true}, {cmd: "query-status"}},
		conns: 2,
	}, {
		name: "an error reply keeps the connection",
		handle: func(conn int, cmd string, id any) []string {
			if cmd == "nope" {
				b, _ := json.Marshal(id)
				return []string{`{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": ` + string(b) + `}`}
			}
			return []string{reply(id, `{"status": "running", "running": true}`)}
		},
		steps: []step{{cmd: "nope", wantErr: true}, {cmd: "query-status"}},
		conns: 1,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, conns := serveQMP(t, tc.handle)
			c, err := dialQMP(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i, s := range tc.steps {
				bound := 10 * time.Second
				if s.cut {
					bound = timeout
				}
				ctx, cancel := context.WithTimeout(context.Background(), bound)
				var st qmpStatus
				err := c.Execute(ctx, s.cmd, s.args, &st)
				cancel()
				if (err != nil) != s.wantErr {
					t.Fatalf("step %d %s: err = %v, want error: %v", i, s.cmd, err, s.wantErr)
				}
				if err == nil && s.cmd == "query-status" && !st.Running {
					t.Errorf("step %d: status = %+v", i, st)
				}
			}
			if n := conns.Load(); n != tc.conns {
				t.Errorf("fake QEMU saw %d connections, want %d", n, tc.conns)
			}
		})
	}
}

// A closed client stays closed: a command after Close fails at once and
// does not dial QEMU again (its VM is being destroyed).
func TestQMPClosedDoesNotRedial(t *testing.T) {
	path, conns := serveQMP(t, func(conn int, cmd string, id any) []string {
		return []string{reply(id, "{}")}
	})
	c, err := dialQMP(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	start := time.Now()
	err = c.Execute(context.Background(), "query-status", nil, nil)
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Errorf("command after Close: err = %v, want net.ErrClosed", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("command after Close took %v", d)
	}
	time.Sleep(50 * time.Millisecond)
	if n := conns.Load(); n != 1 {
		t.Errorf("fake QEMU saw %d connections after Close, want 1", n)
	}
}

// Close interrupts a command blocked on a stalled QEMU, and that command's
// failure does not dial again.
func TestQMPCloseInterruptsCommand(t *testing.T) {
	path, conns := serveQMP(t, func(conn int, cmd string, id any) []string {
		return []string{qmpStall}
	})
	c, err := dialQMP(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Execute(context.Background(), "query-status", nil, nil) }()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("command interrupted by Close: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt the command")
	}
	if err := c.Execute(context.Background(), "query-status", nil, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("after Close: err = %v, want net.ErrClosed", err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("fake QEMU saw %d connections, want 1", n)
	}
}
