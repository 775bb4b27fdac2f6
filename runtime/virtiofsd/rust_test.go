package virtiofsd

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rustBinary is a Rust virtiofsd for tests: $PODVM_VIRTIOFSD, else the one
// ci/install-tools.sh built into $PODVM_CACHE (default /var/cache/podvm).
func rustBinary(t *testing.T) string {
	if p := os.Getenv("PODVM_VIRTIOFSD"); p != "" {
		return p
	}
	cache := os.Getenv("PODVM_CACHE")
	if cache == "" {
		cache = "/var/cache/podvm"
	}
	found, _ := filepath.Glob(filepath.Join(cache, "tools", "virtiofsd-*", "bin", "virtiofsd"))
	if len(found) == 0 {
		t.Skip("no Rust virtiofsd (ci/install-tools.sh virtiofsd, or set PODVM_VIRTIOFSD)")
	}
	return found[len(found)-1]
}

// The real Rust daemon accepts RustHardening and keeps only chown,
// dac_override, fowner, setgid and setuid (0xcb), under seccomp and
// no_new_privs, chrooted into the share.
func TestRustDaemonHardened(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("virtiofsd needs root")
	}
	bin := rustBinary(t)
	if f, err := DetectFlavor(bin); err != nil || f != FlavorRust {
		t.Fatalf("%s: flavor %v, %v; want Rust", bin, f, err)
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
	pid := strconv.Itoa(d.Pid())
	var status string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			log, _ := os.ReadFile(cfg.LogPath)
			t.Fatalf("virtiofsd exited (flags refused?): %s", log)
		}
		status = string(b)
		// The set-id filter is on from exec: wait for the daemon's own
		// (a second filter) and its dropped capabilities.
		if strings.Contains(status, "Seccomp_filters:\t2") && strings.Contains(status, "CapBnd:\t0000000000000000") {
			break
		}
	}
	for _, want := range []string{"CapEff:\t00000000000000cb", "CapBnd:\t0000000000000000", "Seccomp:\t2", "Seccomp_filters:\t2", "NoNewPrivs:\t1"} {
		if !strings.Contains(status, want) {
			t.Errorf("virtiofsd status lacks %q:\n%s", want, status)
		}
	}
	if root, _ := os.Readlink("/proc/" + pid + "/root"); root != share {
		t.Errorf("virtiofsd's root is %q; want %s", root, share)
	}
}
