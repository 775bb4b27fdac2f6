package network

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"

	"github.com/podvm/podvm/runtime/hypervisor"
)

// Network is a pod namespace's interfaces mirrored to taps by Setup.
type Network struct {
	nsPath  string
	desc    Description
	vnetHdr bool

	mu      sync.Mutex
	mirrors []mirror
}

// mirror is one pod interface and its tap.
type mirror struct {
	iface Interface
	tap   string
	file  *os.File
}

// Setup mirrors every pod interface of the network namespace at nsPath to
// a new tap in the same namespace (see the package doc) and returns the
// taps' fds for the VMM and the description for the agent. Taps and filters
// left by an earlier Setup on the namespace (a crashed shim) are removed
// first. A namespace without pod interfaces gives a Network without devices.
// On error nothing is left behind.
func Setup(nsPath string) (*Network, error) { return setup(nsPath, true) }

func setup(nsPath string, vnetHdr bool) (_ *Network, err error) {
	n, links, routes, err := openClean(nsPath)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	nw := &Network{nsPath: nsPath, desc: describe(links, routes), vnetHdr: vnetHdr}
	defer func() {
		if err != nil {
			if terr := nw.teardown(n); terr != nil {
				err = fmt.Errorf("%w (and undoing it: %w)", err, terr)
			}
		}
	}()
	for i, l := range links {
		m := mirror{iface: l.iface, tap: tapName(i)}
		m.file, err = openTap(n, m.tap, vnetHdr)
		if err != nil {
			return nil, err
		}
		nw.mirrors = append(nw.mirrors, m) // from here on teardown removes it
		if err := connect(n, l, m.tap); err != nil {
			return nil, err
		}
	}
	return nw, nil
}

// openClean opens the namespace at nsPath, removes what an earlier setup
// left there (a crashed shim) and reads its pod interfaces and routes.
func openClean(nsPath string) (*nsHandle, []podLink, []Route, error) {
	n, err := openNS(nsPath)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cleanup(n); err != nil {
		n.Close()
		return nil, nil, nil, fmt.Errorf("remove leftovers of an earlier setup: %w", err)
	}
	links, routes, err := inspect(n)
	if err != nil {
		n.Close()
		return nil, nil, nil, err
	}
	return n, links, routes, nil
}

// connect configures the new tap and joins it to the pod interface: frames
// from the bridge all go to the guest, frames from the guest only through
// the guard.
func connect(n *nsHandle, pod podLink, tapName string) error {
	veth := pod.link
	tap, err := n.nl.LinkByName(tapName)
	if err != nil {
		return fmt.Errorf("find tap %s in %s: %w", tapName, n.path, err)
	}
	a := veth.Attrs()
	// Same MTU on both sides, so that what tools show matches what the
	// guest is told; mirred itself does not check it.
	if err := n.nl.LinkSetMTU(tap, a.MTU); err != nil {
		return fmt.Errorf("set MTU %d on tap %s in %s: %w", a.MTU, tapName, n.path, err)
	}
	// No IPv6 link-local address, hence no DAD, router or MLD messages
	// from the namespace's stack into the guest.
	if err := n.nl.LinkSetIP6AddrGenMode(tap, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		return fmt.Errorf("turn off IPv6 address generation on tap %s in %s: %w", tapName, n.path, err)
	}
	// mirred drops frames redirected to a device that is down.
	if err := n.nl.LinkSetUp(tap); err != nil {
		return fmt.Errorf("set tap %s up in %s: %w", tapName, n.path, err)
	}
	for _, l := range []netlink.Link{tap, veth} {
		if err := addIngress(n, l); err != nil {
			return err
		}
	}
	// Guest to pod network first: by the time frames from the bridge
	// reach the guest, its answers can leave.
	if err := addGuard(n, tap, veth, pod.iface); err != nil {
		return err
	}
	return addRedirect(n, veth, tap)
}

// Description is what the agent must configure in the guest.
func (nw *Network) Description() Description { return nw.desc }

// Devices are the guest NICs for hypervisor.Config.Net, in the order of
// Description().Interfaces. The files stay owned by nw: Teardown closes
// them, after the VM stopped.
func (nw *Network) Devices() []hypervisor.NetDevice {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var ds []hypervisor.NetDevice
	for _, m := range nw.mirrors {
		if m.file == nil { // adopted: the VMM holds the tap (Adopt)
			continue
		}
		ds = append(ds, hypervisor.NetDevice{Tap: m.file, VnetHdr: nw.vnetHdr, MAC: m.iface.MAC.String(), MTU: m.iface.MTU})
	}
	return ds
}

// Teardown removes the tc filters and qdiscs and the taps Setup made and
// closes the tap fds, leaving the namespace as CNI configured it. Call it
// after the VM stopped. It is idempotent; a namespace that is already gone
// (CNI DEL, netns removed) took everything with it and is not an error.
func (nw *Network) Teardown() error {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var errs []error
	n, err := openNS(nw.nsPath)
	switch {
	case err == nil:
		errs = append(errs, nw.teardown(n))
		n.Close()
	case errors.Is(err, os.ErrNotExist):
	default:
		errs = append(errs, err)
	}
	for _, m := range nw.mirrors {
		if err := m.closeTap(); err != nil {
			errs = append(errs, fmt.Errorf("%w of %s", err, nw.nsPath))
		}
	}
	return errors.Join(errs...)
}

// teardown removes the filters, qdiscs and taps of nw.mirrors by name.
func (nw *Network) teardown(n *nsHandle) error {
	var errs []error
	for _, m := range nw.mirrors {
		if veth, err := n.nl.LinkByName(m.iface.Name); err == nil {
			errs = append(errs, removeRedirect(n, veth))
		} else if !isNotFound(err) {
			errs = append(errs, fmt.Errorf("find %s in %s: %w", m.iface.Name, n.path, err))
		}
		errs = append(errs, deleteTap(n, m.tap))
	}
	return errors.Join(errs...)
}
