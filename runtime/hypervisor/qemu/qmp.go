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

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// qmpClient speaks just enough QMP (QEMU Machine Protocol) for the driver:
// greeting, capabilities negotiation, commands matched to replies by id.
// Asynchronous events are read and dropped. One command at a time.
//
// A command that fails on I/O (its ctx ended, the write was cut, QEMU
// closed the socket) leaves the connection out of step: the decoder keeps
// its read error, and half a command may sit in QEMU's parser. The client
// then drops that connection and the next command dials the monitor again
// (QEMU's -qmp server=on,wait=off takes a new client once the old one is
// gone), so one timeout under load does not fail every later command.
type qmpClient struct {
	path string
	mu   sync.Mutex // held for a whole command: one at a time

	connMu sync.Mutex // guards cur and closed; Close takes only this
	cur    *qmpConn   // nil after an I/O failure, until the next command
	closed bool
	lost   error // the failure that dropped the last connection, for the log
}

// qmpConn is one connection to the monitor, past negotiation. Its ids
// count from 1: a stale reply never crosses to a new connection.
type qmpConn struct {
	conn   net.Conn
	dec    *json.Decoder
	nextID uint64
	broken bool // an I/O error: the stream is out of step
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
	q, err := openQMP(ctx, path)
	if err != nil {
		return nil, err
	}
	return &qmpClient{path: path, cur: q}, nil
}

// openQMP dials the monitor and negotiates capabilities.
func openQMP(ctx context.Context, path string) (*qmpConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	q := &qmpConn{conn: conn, dec: json.NewDecoder(conn)}
	stop := watch(ctx, conn)
	defer stop()
	// An event may come before the greeting: a client that connects while
	// QEMU starts the guest can get RESUME first (seen under load, QEMU
	// 7.2), so events are skipped here as everywhere else.
	var greeting qmpMessage
	for {
		greeting, err = q.read()
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
	if err := q.execute("qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Execute runs one command and decodes its "return" into result (if not
// nil). ctx bounds the whole exchange, a reconnection included.
func (c *qmpClient) Execute(ctx context.Context, cmd string, args, result any) error {
	return c.do(ctx, cmd, func(q *qmpConn) error { return q.execute(cmd, args, result) })
}

// do runs f on the current connection, dialing a new one first if the
// last was dropped, and drops this one if f leaves it out of step.
func (c *qmpClient) do(ctx context.Context, cmd string, f func(*qmpConn) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil { // not sent: the connection stays in step
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	q, err := c.connection(ctx)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	stop := watch(ctx, q.conn)
	err = f(q)
	stop()
	if q.broken {
		c.drop(q, err)
	}
	return err
}

// connection returns the current connection, or dials the monitor again
// after a drop. A closed client stays closed.
func (c *qmpClient) connection(ctx context.Context) (*qmpConn, error) {
	c.connMu.Lock()
	q, closed, lost := c.cur, c.closed, c.lost
	c.connMu.Unlock()
	if closed {
		return nil, net.ErrClosed
	}
	if q != nil {
		return q, nil
	}
	q, err := openQMP(ctx, c.path)
	if err != nil {
		return nil, fmt.Errorf("reconnect: %w", err)
	}
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.closed { // Close ran while we dialed
		q.conn.Close()
		return nil, net.ErrClosed
	}
	c.cur = q
	log.G(ctx).WithError(lost).WithField("qmp", c.path).Warn("qmp: reconnected to QEMU's monitor after an I/O failure")
	return q, nil
}

// drop closes q, out of step after err, so the next command dials again.
func (c *qmpClient) drop(q *qmpConn, err error) {
	q.conn.Close()
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.cur == q {
		c.cur, c.lost = nil, err
	}
}

func (q *qmpConn) execute(cmd string, args, result any) error {
	id := q.newID()
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		q.broken = true
		return fmt.Errorf("qmp %s: send: %w", cmd, err)
	}
	return q.await(cmd, id, result)
}

func (q *qmpConn) newID() string {
	q.nextID++
	return fmt.Sprintf("podvm-%d", q.nextID)
}

// await reads until the reply to command id, decoding its "return" into
// result (if not nil).
func (q *qmpConn) await(cmd, id string, result any) error {
	for {
		m, err := q.read()
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
// its monitor is in pretty mode; a JSON decoder copes with both. Any read
// error marks the connection broken: the decoder would return it forever.
func (q *qmpConn) read() (qmpMessage, error) {
	var m qmpMessage
	if err := q.dec.Decode(&m); err != nil {
		q.broken = true
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return m, err
	}
	return m, nil
}

// watch makes ctx's deadline and cancellation interrupt blocked I/O on
// conn. stop waits for a cancellation already under way, so it cannot
// set a past deadline after the next command set its own.
func watch(ctx context.Context, conn net.Conn) (stop func()) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Time{})
	}
	fired := make(chan struct{})
	unregister := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !unregister() {
			<-fired
		}
	}
}

// Close drops the connection; the client stays closed (no command dials
// again), and a command in flight fails.
func (c *qmpClient) Close() error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	if c.cur == nil {
		return nil
	}
	return c.cur.conn.Close()
}

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
	return c.do(ctx, "getfd", func(q *qmpConn) error {
		uc, ok := q.conn.(*net.UnixConn)
		if !ok {
			return fmt.Errorf("qmp getfd: %T is not a unix socket", q.conn)
		}
		id := q.newID()
		b, err := json.Marshal(map[string]any{"execute": "getfd", "id": id, "arguments": map[string]any{"fdname": name}})
		if err != nil {
			return err
		}
		if _, _, err := uc.WriteMsgUnix(append(b, '\n'), unix.UnixRights(int(f.Fd())), nil); err != nil {
			q.broken = true
			return fmt.Errorf("qmp getfd: send: %w", err)
		}
		return q.await("getfd", id, nil)
	})
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
