package network

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// deleteTap removes a tap now, even while QEMU still holds an fd of it;
// its qdisc and filters go with it.
func deleteTap(n *nsHandle, name string) error {
	tap, err := n.nl.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("find tap %s in %s: %w", name, n.path, err)
	}
	if !isOurTap(tap) {
		return fmt.Errorf("%s in %s is a %s, not our tap: left alone", name, n.path, tap.Type())
	}
	if err := n.nl.LinkDel(tap); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete tap %s in %s: %w", name, n.path, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// Cleanup removes every tap and tc filter this package may have left in the
// network namespace at nsPath, without any state: for `shim delete` after a
// crashed shim. A namespace that is gone is not an error.
func Cleanup(nsPath string) error {
	n, err := openNS(nsPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer n.Close()
	return cleanup(n)
}

func cleanup(n *nsHandle) error {
	links, err := dump(n.nl.LinkList)
	if err != nil {
		return fmt.Errorf("list links in %s: %w", n.path, err)
	}
	var errs []error
	for _, l := range links {
		if isOurTap(l) {
			errs = append(errs, deleteTap(n, l.Attrs().Name))
		} else {
			errs = append(errs, removeRedirect(n, l))
		}
	}
	return errors.Join(errs...)
}
