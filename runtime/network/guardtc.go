package network

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// dropPrio is the priority of the filter behind the guard on a tap, which
// drops what the guard did not pass. Cleanup need not look for it: a tap's
// filters go with the tap.
const dropPrio = filterPrio + 1

// tcActShot is the verdict that drops a frame (TC_ACT_SHOT); the ingress
// qdisc counts it under "dropped".
const tcActShot = 2

// addGuard joins tap to veth through the guard of iface (guard.go):
//
//	tc filter add dev TAP parent ffff: prio 1 protocol all bpf bytecode GUARD action mirred egress redirect dev VETH
//	tc filter add dev TAP parent ffff: prio 2 protocol all bpf da bytecode '1,6 0 0 2'
//
// A frame the guard passes takes the same mirred redirect as the frames
// from the veth (addRedirect); any other frame, and one too short for what the guard reads
// (the program then returns 0, "no match"), falls through to the second
// filter, whose program returns "drop". Neither tc's gact "drop" nor flower
// is available everywhere (neither is built into the kernel these tests run
// on; cls_bpf, u32 and mirred are), and u32 cannot see a VLAN tag.
func addGuard(n *nsHandle, tap, veth netlink.Link, iface Interface) error {
	prog, err := guardProgram(iface)
	if err != nil {
		return fmt.Errorf("guard of %s in %s: %w", tap.Attrs().Name, n.path, err)
	}
	// The drop first: until the guard is in, nothing passes at all.
	drop, err := bpfFilter(tap, dropPrio, ret(tcActShot), nil)
	if err != nil {
		return fmt.Errorf("drop filter on %s in %s: %w", tap.Attrs().Name, n.path, err)
	}
	guard, err := bpfFilter(tap, filterPrio, prog, redirectTo(veth))
	if err != nil {
		return fmt.Errorf("guard of %s in %s: %w", tap.Attrs().Name, n.path, err)
	}
	// One thread in the namespace for both: the netlink library sends eBPF
	// fds only, so these messages go out on sockets of our own.
	return n.run(func() error {
		if _, err := drop.Execute(unix.NETLINK_ROUTE, 0); err != nil {
			return fmt.Errorf("add drop filter to %s in %s: %w", tap.Attrs().Name, n.path, err)
		}
		if _, err := guard.Execute(unix.NETLINK_ROUTE, 0); err != nil {
			return fmt.Errorf("guard and redirect %s to %s in %s: add tc filter: %w", tap.Attrs().Name, veth.Attrs().Name, n.path, err)
		}
		return nil
	})
}

// bpfFilter is the message that adds a cls_bpf filter with a classic
// program to link's ingress. With an action, the program's non-zero result
// runs it; without, the program's result is the verdict itself (direct
// action).
func bpfFilter(link netlink.Link, prio uint16, prog cbpf, action netlink.Action) (*nl.NetlinkRequest, error) {
	ops, err := prog.encode()
	if err != nil {
		return nil, err
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(&nl.TcMsg{
		Family:  nl.FAMILY_ALL,
		Ifindex: int32(link.Attrs().Index),
		Parent:  ingressHandle,
		Info:    netlink.MakeHandle(prio, nl.Swap16(unix.ETH_P_ALL)),
	})
	req.AddData(nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated("bpf")))
	opts := nl.NewRtAttr(nl.TCA_OPTIONS, nil)
	opts.AddRtAttr(nl.TCA_BPF_OPS_LEN, nl.Uint16Attr(uint16(len(prog))))
	opts.AddRtAttr(nl.TCA_BPF_OPS, ops)
	if action == nil {
		opts.AddRtAttr(nl.TCA_BPF_FLAGS, nl.Uint32Attr(nl.TCA_BPF_FLAG_ACT_DIRECT))
	} else if err := netlink.EncodeActions(opts.AddRtAttr(nl.TCA_BPF_ACT, nil), []netlink.Action{action}); err != nil {
		return nil, err
	}
	req.AddData(opts)
	return req, nil
}
