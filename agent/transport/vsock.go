package transport

import (
	"fmt"
	"net"
	"os"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// ListenVsock listens on an AF_VSOCK port when the guest has a working
// virtio-vsock device.
//
// /dev/vsock and a successful listen are not proof of that: both work as
// soon as AF_VSOCK is built into the kernel, with no device behind it, and
// the host could then never connect. The local context ID is: without a
// guest transport it reads VMADDR_CID_ANY, or 1 (local) with only the
// loopback transport; a guest given a device has a CID of 3 or more.
func ListenVsock(port uint32) (net.Listener, error) {
	if _, err := os.Stat("/dev/vsock"); err != nil {
		return nil, fmt.Errorf("vsock: %w", err)
	}
	cid, err := vsock.ContextID()
	if err != nil {
		return nil, fmt.Errorf("vsock: local context id: %w", err)
	}
	if cid == unix.VMADDR_CID_ANY || cid <= unix.VMADDR_CID_HOST {
		return nil, fmt.Errorf("vsock: no virtio-vsock device (local context id %d)", int32(cid))
	}
	l, err := vsock.ListenContextID(cid, port, nil)
	if err != nil {
		return nil, fmt.Errorf("vsock: listen on port %d: %w", port, err)
	}
	return l, nil
}
