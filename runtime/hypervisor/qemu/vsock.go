package qemu

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const vhostVsockPath = "/dev/vhost-vsock"

// vhostVsockUsable reports whether QEMU could use vhost-vsock on this host,
// and if not, why in words for Info and Check.
func vhostVsockUsable() (bool, string) {
	f, err := os.OpenFile(vhostVsockPath, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("no usable %s (%v)", vhostVsockPath, err)
	}
	f.Close()
	return true, vhostVsockPath + " is usable"
}

// VHOST_VSOCK_SET_GUEST_CID = _IOW(VHOST_VIRTIO 0xAF, 0x60, __u64).
const vhostVsockSetGuestCID = 0x4008AF60

// First and last CIDs a guest may have: 0-2 are reserved (hypervisor, local,
// host) and 0xffffffff is VMADDR_CID_ANY.
const (
	minGuestCID = 3
	maxGuestCID = 0xfffffffe
)

// maxCIDTries bounds the search for a free CID.
const maxCIDTries = 64

// reserveCID opens /dev/vhost-vsock and claims a CID on it. The handle is
// given to QEMU (vhostfd=), so the CID stays ours from here on: there is no
// window in which another VM could take it between choosing and starting.
// The first candidate derives from the sandbox id, so a VM usually gets the
// same CID across restarts, which makes logs easier to follow.
func reserveCID(id string) (*os.File, uint32, error) {
	f, err := os.OpenFile(vhostVsockPath, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("vsock: %w", err)
	}
	cid, err := claimCID(id, func(cid uint64) error {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), vhostVsockSetGuestCID, uintptr(unsafe.Pointer(&cid)))
		if errno != 0 {
			return errno
		}
		return nil
	})
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, cid, nil
}

// claimCID tries CIDs from the id's hash onwards until set succeeds.
func claimCID(id string, set func(uint64) error) (uint32, error) {
	h := fnv.New32a()
	h.Write([]byte(id))
	span := uint64(maxGuestCID - minGuestCID + 1)
	start := uint64(h.Sum32()) % span
	var lastErr error
	for i := uint64(0); i < maxCIDTries; i++ {
		cid := minGuestCID + (start+i)%span
		err := set(cid)
		if err == nil {
			return uint32(cid), nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			return 0, fmt.Errorf("vsock: set guest CID %d: %w", cid, err)
		}
		lastErr = err
	}
	return 0, fmt.Errorf("vsock: no free guest CID after %d tries: %w", maxCIDTries, lastErr)
}

// dialVsock connects to (cid, port) honouring ctx. A guest that is up but has
// no listener on port refuses at once (ECONNRESET), so callers can retry.
func dialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("vsock:%d:%d", cid, port))
	err = unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port})
	if err == unix.EINPROGRESS {
		err = waitConnected(ctx, f)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vsock connect %d:%d: %w", cid, port, err)
	}
	return &vsockConn{File: f, local: vsockAddr{unix.VMADDR_CID_HOST, 0}, remote: vsockAddr{cid, port}}, nil
}

// waitConnected waits until a non-blocking connect finishes and returns its
// result (SO_ERROR).
func waitConnected(ctx context.Context, f *os.File) error {
	if dl, ok := ctx.Deadline(); ok {
		f.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var soErr error
	waited := false
	werr := rc.Write(func(fd uintptr) bool {
		// SO_ERROR reads 0 while the connect is still pending, so look at
		// it only once the socket has become writable.
		if !waited {
			waited = true
			return false
		}
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			soErr = err
		case v != 0:
			soErr = unix.Errno(v)
		}
		return true
	})
	f.SetWriteDeadline(time.Time{})
	if werr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return werr
	}
	return soErr
}

// vsockConn adapts a connected AF_VSOCK socket to net.Conn; the standard
// library's net.FileConn does not know the address family.
type vsockConn struct {
	*os.File
	local, remote vsockAddr
}

func (c *vsockConn) LocalAddr() net.Addr  { return c.local }
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }

type vsockAddr struct{ CID, Port uint32 }

func (vsockAddr) Network() string  { return "vsock" }
func (a vsockAddr) String() string { return fmt.Sprintf("vsock:%d:%d", a.CID, a.Port) }
