package hvsock

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// socketPath returns a socket path in a fresh short directory.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "pvhv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "vsock.sock")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkNoLeaks fails the test if, once its other cleanups ran, a goroutine
// of this package is left (after up to 3 s). Call it first in a test:
// cleanups run last-registered first.
func checkNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		var left []string
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			left = left[:0]
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "hvsock.Dialer") {
					left = append(left, g)
				}
			}
			if len(left) == 0 {
				return
			}
		}
		t.Errorf("%d goroutine(s) left behind:\n%s", len(left), strings.Join(left, "\n\n"))
	})
}
