package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQMP serves QMP clients on a unix socket. handle gets each command
// and returns the lines to send back (events and/or the reply), or
// qmpClose.
func fakeQMP(t *testing.T, handle func(cmd string, id any) []string) string {
	t.Helper()
	path, _ := serveQMP(t, func(_ int, cmd string, id any) []string { return handle(cmd, id) })
	return path
}

func reply(id any, ret string) string {
	b, _ := json.Marshal(id)
	return `{"return": ` + ret + `, "id": ` + string(b) + `}`
}

func TestQMPQueryStatusSkipsEventsAndStaleReplies(t *testing.T) {
	path := fakeQMP(t, func(cmd string, id any) []string {
		if cmd != "query-status" {
			t.Errorf("command %q", cmd)
		}
		return []string{
			`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}`,
			reply("old-id", `{"status": "paused", "running": false}`),
			reply(id, `{"status": "running", "singlestep": false, "running": true}`),
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.QueryStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "running" || !st.Running {
		t.Errorf("status = %+v", st)
	}
}

func TestQMPErrorReply(t *testing.T) {
	path := fakeQMP(t, func(cmd string, id any) []string {
		b, _ := json.Marshal(id)
		return []string{`{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": ` + string(b) + `}`}
	})
	c, err := dialQMP(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Execute(context.Background(), "nope", nil, nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("err = %v", err)
	}
}

func TestQMPChardevAndQuit(t *testing.T) {
	path := fakeQMP(t, func(cmd string, id any) []string {
		switch cmd {
		case "query-chardev":
			return []string{reply(id, `[{"frontend-open": true, "filename": "file", "label": "console"},
				{"frontend-open": false, "filename": "disconnected:unix:/x/agent.sock,server=on", "label": "agent"}]`)}
		case "quit":
			// QEMU may exit before its reply reaches us.
			return []string{"CLOSE"}
		}
		return nil
	})
	ctx := context.Background()
	c, err := dialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	open, err := c.ChardevFrontendOpen(ctx, "agent")
	if err != nil || open {
		t.Errorf("agent open = %v, %v", open, err)
	}
	if _, err := c.ChardevFrontendOpen(ctx, "nosuch"); err == nil {
		t.Error("unknown chardev: no error")
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("Quit: %v", err)
	}
}

func TestQMPContextCancelUnblocks(t *testing.T) {
	path := fakeQMP(t, func(cmd string, id any) []string { return nil }) // never answers
	c, err := dialQMP(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.QueryStatus(ctx)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	if !strings.Contains(err.Error(), "query-status") {
		t.Errorf("error does not name the command: %v", err)
	}
}

func TestQMPBadGreeting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("{\"event\": \"X\"}\n"))
			c.Close()
		}
	}()
	if _, err := dialQMP(context.Background(), path); err == nil || !strings.Contains(err.Error(), "greeting") {
		t.Errorf("err = %v", err)
	}
}

// QEMU can send an event ahead of the greeting to a client that connects
// while the guest starts (seen under load): the client must skip it.
func TestQMPEventBeforeGreeting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}` + "\n"))
		c.Write([]byte(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}` + "\n"))
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var req struct {
				ID any `json:"id"`
			}
			json.Unmarshal(sc.Bytes(), &req)
			c.Write([]byte(reply(req.ID, "{}") + "\n"))
		}
	}()
	c, err := dialQMP(context.Background(), path)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
}
