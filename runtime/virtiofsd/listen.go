package virtiofsd

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// listenUnix creates a listening unix socket at path and returns it as a
// blocking fd ready to hand to a child. net.Listen is avoided on purpose: its
// fd is non-blocking (virtiofsd's accept would fail with EAGAIN) and closing
// it would unlink the path the VMM is about to use.
func listenUnix(path string) (*os.File, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}
