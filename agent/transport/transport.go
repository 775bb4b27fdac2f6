// Package transport gives podvm-agent the net.Listener it serves ttrpc on:
// AF_VSOCK when the guest has a virtio-vsock device, otherwise the named
// virtio-serial port, or a unix socket when tests run the agent on the host.
package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/agent/api/contract"
	agentsecret "github.com/podvm/podvm/agent/secret"
)

// Unix names the unix-socket transport used by tests on the host.
const Unix = "unix"

// retryInterval paces the search for a channel while none is there yet.
const retryInterval = 500 * time.Millisecond

// Listen opens the listener addr names:
//
//	""             vsock if usable, else serial (the guest's default)
//	"vsock"        AF_VSOCK on contract.VsockPort
//	"serial"       the virtio-serial port named contract.SerialPortName
//	"unix:PATH"    a unix socket (tests)
//
// In the guest the devices are present before init runs, but Listen keeps
// retrying until ctx ends rather than failing: an agent that exits as PID 1
// panics the kernel, and one that waits can still be debugged from the
// console. It returns the listener and the transport's name for
// GuestDetails.
//
// The listener yields only connections whose host proved it holds secret
// (contract.GuestAuth), one session at a time.
func Listen(ctx context.Context, addr string, secret []byte) (net.Listener, string, error) {
	key, err := agentsecret.NewKey(secret)
	if err != nil {
		return nil, "", err
	}
	return ListenKey(ctx, addr, key)
}

// ListenKey is Listen with a key that may change while it serves (a VM
// restored from a template is re-keyed by Handover): each connection is
// checked against the key's secret of the moment.
func ListenKey(ctx context.Context, addr string, secret *agentsecret.Key) (net.Listener, string, error) {
	if path, ok := strings.CutPrefix(addr, Unix+":"); ok {
		l, err := listenUnix(path)
		if err != nil {
			return nil, "", err
		}
		return secure(l, Unix, secret)
	}
	try, err := chooser(addr)
	if err != nil {
		return nil, "", err
	}
	logged := false
	for {
		l, kind, err := try()
		if err == nil {
			return secure(l, kind, secret)
		}
		if !logged {
			log.G(ctx).WithError(err).Error("no agent channel yet; retrying")
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("listen: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(retryInterval):
		}
	}
}

// chooser returns the attempt Listen repeats for addr.
func chooser(addr string) (func() (net.Listener, string, error), error) {
	vsockTry := func() (net.Listener, string, error) {
		l, err := ListenVsock(contract.VsockPort)
		return l, string(contract.TransportVsock), err
	}
	serialTry := func() (net.Listener, string, error) {
		l, err := ListenSerial(contract.SerialPortName)
		return l, string(contract.TransportSerial), err
	}
	switch addr {
	case "":
		return func() (net.Listener, string, error) {
			l, kind, verr := vsockTry()
			if verr == nil {
				return l, kind, nil
			}
			l, kind, serr := serialTry()
			if serr == nil {
				return l, kind, nil
			}
			return nil, "", errors.Join(verr, serr)
		}, nil
	case string(contract.TransportVsock):
		return vsockTry, nil
	case string(contract.TransportSerial):
		return serialTry, nil
	}
	return nil, fmt.Errorf("unknown listen address %q (want vsock, serial or unix:PATH)", addr)
}

// secure makes l admit only hosts that hold secret: a serial port checks
// after its handshake, other listeners through authenticate.
func secure(l net.Listener, kind string, secret *agentsecret.Key) (net.Listener, string, error) {
	a := newKeyAuthenticator(secret, contract.Transport(kind))
	if sl, ok := l.(*SerialListener); ok {
		sl.auth = a
		return sl, kind, nil
	}
	return authenticate(l, a), kind, nil
}

// listenUnix listens on a unix socket, replacing a stale socket file left by
// an earlier run.
func listenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}
