package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// qmpClient speaks just enough QMP (QEMU Machine Protocol) for the driver:
// greeting, capabilities negotiation, commands matched to replies by id.
// Asynchronous events are read and dropped. One command at a time.
type qmpClient struct {
	mu     sync.Mutex
	conn   net.Conn
	dec    *json.Decoder
	nextID uint64
}

// QMPError is an {"error": {...}} reply.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return fmt.Sprintf("qmp %s: %s", e.Class, e.Desc) }

// qmpMessage is any message QEMU sends: greeting, reply or event.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	ID     any             `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *QMPError       `json:"error"`
}

// dialQMP connects to the QMP socket, reads the greeting and leaves
// negotiation mode so commands can be sent.
func dialQMP(ctx context.Context, path string) (*qmpClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	c := &qmpClient{conn: conn, dec: json.NewDecoder(conn)}
	stop := c.watch(ctx)
	defer stop()
	// An event may come before the greeting: a client that connects while
	// QEMU starts the guest can get RESUME first (seen under load, QEMU
	// 7.2), so events are skipped here as everywhere else.
	var greeting qmpMessage
	for {
		greeting, err = c.read()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("qmp greeting: %w", err)
		}
		if greeting.Event == "" {
			break
		}
	}
	if greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: unexpected message %+v", greeting)
	}
	if err := c.executeLocked("qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Execute runs one command and decodes its "return" into result (if not
// nil). ctx bounds the whole exchange.
func (c *qmpClient) Execute(ctx context.Context, cmd string, args, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	stop := c.watch(ctx)
	defer stop()
	return c.executeLocked(cmd, args, result)
}

func (c *qmpClient) executeLocked(cmd string, args, result any) error {
	c.nextID++
	id := fmt.Sprintf("podvm-%d", c.nextID)
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: send: %w", cmd, err)
	}
	return c.await(cmd, id, result)
}

// await reads until the reply to command id, decoding its "return" into
// result (if not nil).
func (c *qmpClient) await(cmd, id string, result any) error {
	for {
		m, err := c.read()
		if err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if m.Event != "" || m.ID != id {
			continue // an event, or a stale reply of a command that timed out
		}
		if m.Error != nil {
			return fmt.Errorf("qmp %s: %w", cmd, m.Error)
		}
		if result != nil && m.Return != nil {
			if err := json.Unmarshal(m.Return, result); err != nil {
				return fmt.Errorf("qmp %s: decode reply: %w", cmd, err)
			}
		}
		return nil
	}
}

// read returns the next message. QEMU writes one object per line, unless
// its monitor is in pretty mode; a JSON decoder copes with both.
func (c *qmpClient) read() (qmpMessage, error) {
	var m qmpMessage
	if err := c.dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return m, err
	}
	return m, nil
}

// watch makes ctx's deadline and cancellation interrupt blocked I/O.
func (c *qmpClient) watch(ctx context.Context) (stop func()) {
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	unregister := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { unregister() }
}

// Close drops the connection.
func (c *qmpClient) Close() error { return c.conn.Close() }

// qmpStatus is query-status's reply.
type qmpStatus struct {
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

// QueryStatus returns the run state: "running", "paused", "prelaunch", ...
func (c *qmpClient) QueryStatus(ctx context.Context) (qmpStatus, error) {
	var st qmpStatus
	err := c.Execute(ctx, "query-status", nil, &st)
	return st, err
}

// qmpChardev is one entry of query-chardev.
type qmpChardev struct {
	Label        string `json:"label"`
	Filename     string `json:"filename"`
	FrontendOpen bool   `json:"frontend-open"`
}

// ChardevFrontendOpen reports whether the device behind chardev label is
// open; for a virtio-serial port that means the guest has opened the port.
func (c *qmpClient) ChardevFrontendOpen(ctx context.Context, label string) (bool, error) {
	var devs []qmpChardev
	if err := c.Execute(ctx, "query-chardev", nil, &devs); err != nil {
		return false, err
	}
	for _, d := range devs {
		if d.Label == label {
			return d.FrontendOpen, nil
		}
	}
	return false, fmt.Errorf("qmp: no chardev %q", label)
}

// SendFD hands QEMU a copy of f under name (getfd, the fd passed with
// the command as SCM_RIGHTS), for commands that take "fd:name".
func (c *qmpClient) SendFD(ctx context.Context, name string, f *os.File) error {
	uc, ok := c.conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("qmp getfd: %T is not a unix socket", c.conn)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	stop := c.watch(ctx)
	defer stop()
	c.nextID++
	id := fmt.Sprintf("podvm-%d", c.nextID)
	b, err := json.Marshal(map[string]any{"execute": "getfd", "id": id, "arguments": map[string]any{"fdname": name}})
	if err != nil {
		return err
	}
	if _, _, err := uc.WriteMsgUnix(append(b, '\n'), unix.UnixRights(int(f.Fd())), nil); err != nil {
		return fmt.Errorf("qmp getfd: send: %w", err)
	}
	return c.await("getfd", id, nil)
}

// Quit asks QEMU to exit. QEMU may close the socket right after replying,
// or before the reply is read: both count as success.
func (c *qmpClient) Quit(ctx context.Context) error {
	err := c.Execute(ctx, "quit", nil, nil)
	if err != nil && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)) {
		return nil
	}
	return err
}
