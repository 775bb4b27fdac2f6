package network

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// nsHandle is an open pod namespace: its file, to enter it, and a netlink
// handle whose sockets were created inside it, so that every netlink call
// through it acts on the namespace from any thread.
type nsHandle struct {
	path string
	ns   netns.NsHandle
	nl   *netlink.Handle
}

func openNS(path string) (*nsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink socket in network namespace %s: %w", path, err)
	}
	return &nsHandle{path: path, ns: ns, nl: h}, nil
}

func (n *nsHandle) Close() {
	n.nl.Close()
	n.ns.Close()
}

// run calls fn on a fresh OS thread that has joined the namespace, for the
// calls that act on the caller's namespace rather than a socket's (opening
// /dev/net/tun). The thread stays locked when its goroutine ends, which makes
// Go discard it instead of handing a thread in the wrong namespace to other
// goroutines; there is no "switch back" that could fail halfway. The cost is
// one thread creation, tens of microseconds.
func (n *nsHandle) run(fn func() error) error { return runIn(n.ns, n.path, fn) }

func runIn(ns netns.NsHandle, path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Do calls fn on a thread inside the network namespace at path, as run
// does: sockets fn creates belong to the namespace, and so do processes it
// starts (they are forked from that thread).
func Do(path string, fn func() error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	return runIn(ns, path, fn)
}

// dumpRetries bounds retries of netlink dumps that the kernel interrupted
// because the table changed meanwhile (ErrDumpInterrupted: the result may be
// incomplete). A pod namespace is quiet once CNI is done, so one retry is
// almost always enough.
const dumpRetries = 5

func dump[T any](f func() ([]T, error)) ([]T, error) {
	for i := 0; ; i++ {
		v, err := f()
		if err == nil || !errors.Is(err, netlink.ErrDumpInterrupted) || i == dumpRetries {
			return v, err
		}
	}
}
