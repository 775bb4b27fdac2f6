//go:build !amd64 && !arm64

package virtiofsd

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// hostSetidFilter: no syscall table for this architecture, so virtiofsd
// is not started rather than started without the filter.
func hostSetidFilter() ([]unix.SockFilter, error) {
	return nil, fmt.Errorf("set-id filter: no syscall table for %s", runtime.GOARCH)
}

// hostCapsetNoopFilter: no syscall table for this architecture.
func hostCapsetNoopFilter() ([]unix.SockFilter, error) {
	return nil, fmt.Errorf("capset filter: no syscall table for %s", runtime.GOARCH)
}
