package network

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netns"
)

// HoldTap creates tap name in the network namespace at nsPath (a holding
// namespace of the VM cache, docs/factory.md section 8) and returns its
// fd, for a VM booted before its pod exists. Adopt later moves it into the
// pod's namespace.
func HoldTap(nsPath, name string) (*os.File, error) {
	n, err := openNS(nsPath)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	return openTap(n, name, true)
}

// Adopt mirrors the single pod interface of the namespace at nsPath to
// tap heldTap, which a running VMM already holds, in the namespace at
// holdNS: the tap is moved into the pod's namespace, named as Setup names
// its taps and joined to the pod interface as Setup joins them. The
// Network it returns has no tap fds (Devices is empty: the VMM has its
// own); Teardown removes the tap by name. On error the tap is left where
// it is, and the pod's namespace as it was.
func Adopt(nsPath, holdNS, heldTap string) (_ *Network, err error) {
	n, links, routes, err := openClean(nsPath)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	if len(links) != 1 {
		return nil, fmt.Errorf("network namespace %s has %d pod interfaces; a VM taken from the cache has one NIC", nsPath, len(links))
	}
	if err := moveTap(holdNS, heldTap, n.ns); err != nil {
		return nil, err
	}
	m := mirror{iface: links[0].iface, tap: tapName(0)}
	nw := &Network{nsPath: nsPath, desc: describe(links, routes), vnetHdr: true, mirrors: []mirror{m}}
	defer func() {
		if err != nil {
			if terr := nw.teardown(n); terr != nil {
				err = fmt.Errorf("%w (and undoing it: %w)", err, terr)
			}
		}
	}()
	tap, err := n.nl.LinkByName(heldTap)
	if err != nil {
		return nil, fmt.Errorf("find the moved tap %s in %s: %w", heldTap, nsPath, err)
	}
	if err := n.nl.LinkSetName(tap, m.tap); err != nil {
		n.nl.LinkDel(tap) // the name is not ours yet, so teardown would miss it
		return nil, fmt.Errorf("name tap %s %s in %s: %w", heldTap, m.tap, nsPath, err)
	}
	return nw, connect(n, links[0], m.tap)
}

// moveTap moves tap name from the namespace at holdNS into ns.
func moveTap(holdNS, name string, ns netns.NsHandle) error {
	h, err := openNS(holdNS)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find held tap %s in %s: %w", name, holdNS, err)
	}
	if l.Type() != "tuntap" {
		return fmt.Errorf("held link %s in %s is a %s, not a tap", name, holdNS, l.Type())
	}
	if err := h.nl.LinkSetNsFd(l, int(ns)); err != nil {
		return fmt.Errorf("move tap %s from %s: %w", name, holdNS, err)
	}
	return nil
}

// closeTap closes the fd of m's tap, if the Network holds one.
func (m mirror) closeTap() error {
	if m.file == nil {
		return nil
	}
	if err := m.file.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close tap %s: %w", m.tap, err)
	}
	return nil
}

// NSPath is the pod's network namespace nw mirrors.
func (nw *Network) NSPath() string { return nw.nsPath }
