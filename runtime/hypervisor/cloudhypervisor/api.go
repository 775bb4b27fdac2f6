package cloudhypervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// apiBase is where Cloud Hypervisor serves its REST API on the unix socket;
// the host name is not used for anything but the HTTP Host header.
const apiBase = "http://localhost/api/v1/"

// Limits on what is read back from the VMM.
const (
	maxErrorBody = 64 << 10
	maxReplyBody = 1 << 20
)

// apiClient speaks Cloud Hypervisor's REST API over its unix socket. Each
// call is bounded by timeout (and by its ctx). One connection per call, no
// keep-alive: the API is used a handful of times per VM, and no idle
// connection (nor its goroutines) outlives a call.
type apiClient struct {
	socket  string
	timeout time.Duration
	http    *http.Client
}

func newAPIClient(socket string, timeout time.Duration) *apiClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &apiClient{socket: socket, timeout: timeout, http: &http.Client{Transport: tr}}
}

// APIError is a non-2xx answer of the VMM. Messages is Cloud Hypervisor's
// error chain from the response body (outermost first), e.g.
// ["Error from API", "The VM could not boot", "..."].
type APIError struct {
	Method   string
	Op       string // vm.boot, vm.create, ...
	Status   int
	Messages []string
}

func (e *APIError) Error() string {
	msg := strings.Join(e.Messages, ": ")
	if msg == "" {
		msg = "(empty response body)"
	}
	return fmt.Sprintf("%s %s: HTTP %d %s: %s", e.Method, e.Op, e.Status, http.StatusText(e.Status), msg)
}

// errorMessages extracts the VMM's words from an error response body.
// Cloud Hypervisor sends a JSON array of strings, the error and its causes;
// older releases sent the error's debug text. Anything else is shown as
// text, on one line.
func errorMessages(body []byte) []string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	var list []string
	if json.Unmarshal(body, &list) == nil {
		return list
	}
	var obj map[string]any
	if json.Unmarshal(body, &obj) == nil {
		for _, k := range []string{"error", "message"} {
			if s, ok := obj[k].(string); ok {
				return []string{s}
			}
		}
	}
	var s string
	if json.Unmarshal(body, &s) == nil {
		return []string{s}
	}
	text := strings.Join(strings.Fields(string(body)), " ")
	if len(text) > 2000 {
		text = text[:2000] + "..."
	}
	return []string{text}
}

// withTimeout applies the per-call bound unless ctx ends earlier.
func (c *apiClient) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// callError gives a failed exchange its context: which call, and whether the
// VMM did not answer in time, is gone, or broke the connection. An
// *APIError already names its call and is returned as it is.
func (c *apiClient) callError(ctx context.Context, method, op string, start time.Time, err error) error {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: no answer from the VMM within %v (is it hung?): %w",
			method, op, time.Since(start).Round(time.Millisecond), err)
	}
	return fmt.Errorf("%s %s: %w", method, op, err)
}

// call sends one request and decodes a JSON answer into out (if not nil).
// in, if not nil, is the JSON body. Requests without a body send none:
// Cloud Hypervisor answers 400 to a body on vm.boot, vm.shutdown, ...
func (c *apiClient) call(ctx context.Context, method, op string, in, out any) error {
	start := time.Now()
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, apiBase+op, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, op, err)
	}
	setHeaders(req, in != nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return c.callError(ctx, method, op, start, err)
	}
	defer resp.Body.Close()
	if err := readResponse(method, op, resp, out); err != nil {
		return c.callError(ctx, method, op, start, err)
	}
	return nil
}

func setHeaders(req *http.Request, hasBody bool) {
	req.Header.Set("Accept", "application/json")
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
}

// readResponse turns the answer into nil, an *APIError, or a decode error.
func readResponse(method, op string, resp *http.Response, out any) error {
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return &APIError{Method: method, Op: op, Status: resp.StatusCode, Messages: errorMessages(b)}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBody))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if out == nil {
		return nil
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Errorf("HTTP %d with an empty body, a JSON answer was expected", resp.StatusCode)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// putWithFiles sends one PUT with files attached as SCM_RIGHTS to the
// request's bytes: Cloud Hypervisor takes a net device's tap fds this way
// (fds written in the JSON body are ignored). The request is written with
// one sendmsg on a fresh connection, and the answer read from it.
func (c *apiClient) putWithFiles(ctx context.Context, op string, in any, files []*os.File) error {
	const method = http.MethodPut
	start := time.Now()
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s %s: encode request: %w", method, op, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, apiBase+op, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, op, err)
	}
	setHeaders(req, true)
	req.Close = true
	var wire bytes.Buffer
	if err := req.Write(&wire); err != nil {
		return fmt.Errorf("%s %s: %w", method, op, err)
	}
	fds, err := rawFDs(files)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, op, err)
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return c.callError(ctx, method, op, start, err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		uc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	data := wire.Bytes()
	n, _, err := uc.WriteMsgUnix(data, unix.UnixRights(fds...), nil)
	runtime.KeepAlive(files) // the fds must stay open until they are sent
	if err == nil && n < len(data) {
		_, err = uc.Write(data[n:])
	}
	if err != nil {
		return c.callError(ctx, method, op, start, fmt.Errorf("send: %w", err))
	}
	resp, err := http.ReadResponse(bufio.NewReader(uc), req)
	if err != nil {
		return c.callError(ctx, method, op, start, fmt.Errorf("read answer: %w", err))
	}
	defer resp.Body.Close()
	if err := readResponse(method, op, resp, nil); err != nil {
		return c.callError(ctx, method, op, start, err)
	}
	return nil
}

// rawFDs returns the descriptors of files without os.File.Fd's side effect
// of switching them to blocking mode (the taps belong to the caller).
func rawFDs(files []*os.File) ([]int, error) {
	fds := make([]int, 0, len(files))
	for _, f := range files {
		sc, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("fd of %s: %w", f.Name(), err)
		}
		if err := sc.Control(func(fd uintptr) { fds = append(fds, int(fd)) }); err != nil {
			return nil, fmt.Errorf("fd of %s: %w", f.Name(), err)
		}
	}
	return fds, nil
}

// vmmPing is vmm.ping's answer.
type vmmPing struct {
	Version      string   `json:"version"`
	BuildVersion string   `json:"build_version"`
	PID          int64    `json:"pid"`
	Features     []string `json:"features"`
}

// vmInfo is the part of vm.info's answer the driver reads.
type vmInfo struct {
	State  string `json:"state"`
	Config struct {
		Cpus struct {
			BootVCPUs uint32 `json:"boot_vcpus"`
			MaxVCPUs  uint32 `json:"max_vcpus"`
		} `json:"cpus"`
		Memory struct {
			Size        int64 `json:"size"`
			HotplugSize int64 `json:"hotplug_size"`
		} `json:"memory"`
	} `json:"config"`
	MemoryActualSize int64 `json:"memory_actual_size"`
}

// The calls the driver makes, one method each.

func (c *apiClient) Ping(ctx context.Context) (vmmPing, error) {
	var p vmmPing
	err := c.call(ctx, http.MethodGet, "vmm.ping", nil, &p)
	return p, err
}

func (c *apiClient) CreateVM(ctx context.Context, cfg vmConfig) error {
	return c.call(ctx, http.MethodPut, "vm.create", cfg, nil)
}

func (c *apiClient) AddNet(ctx context.Context, n netConfig, tap *os.File) error {
	return c.putWithFiles(ctx, "vm.add-net", n, []*os.File{tap})
}

func (c *apiClient) BootVM(ctx context.Context) error {
	return c.call(ctx, http.MethodPut, "vm.boot", nil, nil)
}

func (c *apiClient) VMInfo(ctx context.Context) (vmInfo, error) {
	var i vmInfo
	err := c.call(ctx, http.MethodGet, "vm.info", nil, &i)
	return i, err
}

func (c *apiClient) ResizeVM(ctx context.Context, r vmResize) error {
	return c.call(ctx, http.MethodPut, "vm.resize", r, nil)
}

func (c *apiClient) ShutdownVM(ctx context.Context) error {
	return c.call(ctx, http.MethodPut, "vm.shutdown", nil, nil)
}

func (c *apiClient) DeleteVM(ctx context.Context) error {
	return c.call(ctx, http.MethodPut, "vm.delete", nil, nil)
}

// ShutdownVMM asks the process to exit. It may close the connection before
// its answer arrives: that counts as success.
func (c *apiClient) ShutdownVMM(ctx context.Context) error {
	err := c.call(ctx, http.MethodPut, "vmm.shutdown", nil, nil)
	var apiErr *APIError
	if err != nil && !errors.As(err, &apiErr) &&
		(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, unix.ECONNRESET)) {
		return nil
	}
	return err
}
