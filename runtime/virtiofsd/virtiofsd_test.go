package virtiofsd

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startReal starts the host's virtiofsd or skips.
func startReal(t *testing.T) (*Daemon, Config) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("virtiofsd needs root (chroot sandbox)")
	}
	bin, err := FindBinary("")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: "virtiofsd for test", Binary: bin, SocketPath: filepath.Join(dir, "v.sock"),
		SharedDir: share, LogPath: filepath.Join(dir, "virtiofsd.log")}
	d, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	return d, cfg
}

// The socket must accept a connection the moment Start returns: that is what
// lets the VMM start without waiting for virtiofsd.
func TestSocketListeningAtOnceAndStopCleansUp(t *testing.T) {
	d, cfg := startReal(t)
	c, err := net.Dial("unix", cfg.SocketPath)
	if err != nil {
		t.Fatalf("dial right after Start: %v", err)
	}
	c.Close()
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.SocketPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if err := syscall.Kill(d.Pid(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("virtiofsd pid %d still exists: %v", d.Pid(), err)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestDeathIsReported(t *testing.T) {
	d, _ := startReal(t)
	time.Sleep(100 * time.Millisecond) // let it log its start line
	syscall.Kill(d.Pid(), syscall.SIGKILL)
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after SIGKILL")
	}
	msg := d.ExitReason().Error()
	if !strings.Contains(msg, "virtiofsd for test exited unexpectedly: signal: killed") {
		t.Errorf("ExitReason = %q", msg)
	}
}
