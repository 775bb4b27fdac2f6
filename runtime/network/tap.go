package network

import (
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tapSuffix marks the taps this package creates, so that Cleanup can find
// them after a crash without any state: tap0_podvm, tap1_podvm, ...
const tapSuffix = "_podvm"

func tapName(i int) string { return fmt.Sprintf("tap%d%s", i, tapSuffix) }

func isOurTap(l netlink.Link) bool {
	return l.Type() == "tuntap" && strings.HasSuffix(l.Attrs().Name, tapSuffix)
}

// openTap creates the tap name inside the namespace and returns its only
// fd. The kernel creates a tap in the namespace of the thread that opened
// /dev/net/tun, hence the open on a thread inside it. Without TUNSETPERSIST
// the tap goes away with its last fd, so a crashed shim (and its QEMU,
// which dies with it) leaves no tap behind.
func openTap(n *nsHandle, name string, vnetHdr bool) (*os.File, error) {
	var f *os.File
	err := n.run(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		// IFF_NO_PI: frames without the 4-byte packet-info prefix, as QEMU
		// expects. IFF_VNET_HDR: each frame carries a virtio_net_hdr with
		// checksum and segmentation offload state, see the package doc.
		flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if vnetHdr {
			flags |= unix.IFF_VNET_HDR
		}
		ifr.SetUint16(flags)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create tap %s in %s: %w", name, n.path, err)
	}
	return f, nil
}
