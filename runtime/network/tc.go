package network

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ingressHandle is the handle of every ingress qdisc, "ffff:".
var ingressHandle = netlink.MakeHandle(0xffff, 0)

// filterPrio is the priority of our filters. 1 runs them before anything
// else on the qdisc, and marks them for Cleanup: a pod namespace has no tc
// filters of its own, so whatever sits at this priority on a pod interface
// is ours.
const filterPrio = 1

// addIngress adds the ingress qdisc to link; one that exists is reused (a
// qdisc holds no state of its own: only its filters matter).
func addIngress(n *nsHandle, link netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: link.Attrs().Index,
		Parent:    netlink.HANDLE_INGRESS,
		Handle:    ingressHandle,
	}}
	if err := n.nl.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add ingress qdisc to %s in %s: %w", link.Attrs().Name, n.path, err)
	}
	return nil
}

// addRedirect makes every frame that arrives on from leave through to:
// `tc filter add dev FROM parent ffff: prio 1 protocol all u32 match u32 0 0
// action mirred egress redirect dev TO`.
func addRedirect(n *nsHandle, from, to netlink.Link) error {
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: from.Attrs().Index,
			Parent:    ingressHandle,
			Priority:  filterPrio,
			Protocol:  unix.ETH_P_ALL,
		},
		// Sel nil: netlink's match-everything selector (one zero key).
		Actions: []netlink.Action{redirectTo(to)},
	}
	if err := n.nl.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect %s to %s in %s: add tc filter: %w", from.Attrs().Name, to.Attrs().Name, n.path, err)
	}
	return nil
}

// redirectTo is "mirred egress redirect dev TO". Its verdict is "stolen":
// the frame never reaches its own device's stack.
func redirectTo(to netlink.Link) netlink.Action {
	return &netlink.MirredAction{
		ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
		MirredAction: netlink.TCA_EGRESS_REDIR,
		Ifindex:      to.Attrs().Index,
	}
}

// removeRedirect undoes addRedirect and addIngress on link: if it has our
// filters, it deletes them, and the ingress qdisc too when nothing else is
// left on it (an empty ingress qdisc does nothing, so removing one that was
// there before Setup changes no behaviour). A link without our filters is
// left alone; nothing to remove is not an error.
func removeRedirect(n *nsHandle, link netlink.Link) error {
	name := link.Attrs().Name
	filters, err := dump(func() ([]netlink.Filter, error) { return n.nl.FilterList(link, ingressHandle) })
	if err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // no ingress qdisc
		}
		return fmt.Errorf("list tc filters of %s in %s: %w", name, n.path, err)
	}
	ours, others := 0, 0
	for _, f := range filters {
		if f.Attrs().Priority == filterPrio {
			ours++
		} else {
			others++
		}
	}
	if ours == 0 {
		return nil // not ours: leave the qdisc alone
	}
	if others == 0 {
		q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: ingressHandle}}
		if err := n.nl.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("delete ingress qdisc of %s in %s: %w", name, n.path, err)
		}
		return nil
	}
	// Handle 0 deletes every filter at the priority, u32's hash table too.
	f := &netlink.U32{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: link.Attrs().Index, Parent: ingressHandle, Priority: filterPrio, Protocol: unix.ETH_P_ALL,
	}}
	if err := n.nl.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete tc filter of %s in %s: %w", name, n.path, err)
	}
	return nil
}
