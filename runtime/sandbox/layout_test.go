package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/guestspec"
)

// needRoot skips tests that mount.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts need root")
	}
}

// newLayout makes a state directory with the share set up, removed with
// everything mounted below it when the test ends.
func newLayout(t *testing.T) (state, host, shared string) {
	t.Helper()
	needRoot(t)
	state = t.TempDir()
	host, shared = filepath.Join(state, mountsDirName), filepath.Join(state, sharedDirName)
	t.Cleanup(func() { unmountAll(state) })
	if err := setUpShare(host, shared); err != nil {
		t.Fatal(err)
	}
	return state, host, shared
}

// TestShareIsReadOnlyForTheGuest: what the shim mounts under mounts/
// appears in shared/, read-write or read-only as mounted, while shared/
// itself takes no new file, directory or symlink.
func TestShareIsReadOnlyForTheGuest(t *testing.T) {
	state, host, shared := newLayout(t)
	s := &Sandbox{ID: "layout", StateDir: state, HostDir: host, SharedDir: shared, rootfs: map[string]bool{}}
	rootfs := filepath.Join(host, guestspec.RootfsDir("c1"))
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	s.rootfs["c1"] = true
	if err := unix.Mount("tmpfs", rootfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "keep"), []byte("host data\n"), 0o644)
	if err := s.ShareMounts(context.Background(), "c1", []guestspec.SharedMount{
		{HostSource: vol, ShareRel: "c1/mounts/0", Destination: "/ro", ReadOnly: true},
		{HostSource: vol, ShareRel: "c1/mounts/1", Destination: "/rw"},
	}); err != nil {
		t.Fatal(err)
	}

	view := func(rel string) string { return filepath.Join(shared, rel) }
	if err := os.WriteFile(view("c1/rootfs/written"), []byte("x"), 0o644); err != nil {
		t.Errorf("the guest cannot write its rootfs through the share: %v", err)
	}
	if err := os.WriteFile(view("c1/mounts/1/written"), []byte("x"), 0o644); err != nil {
		t.Errorf("the guest cannot write a read-write volume: %v", err)
	}
	for what, err := range map[string]error{
		"a file at the top":              os.WriteFile(view("planted"), nil, 0o644),
		"a symlink at the top":           os.Symlink("/", view("next")),
		"a directory in a container dir": os.Mkdir(view("c1/planted"), 0o755),
		"a symlink for a mount point":    os.Symlink("/etc", view("c1/mounts/2")),
		"a file in a read-only volume":   os.WriteFile(view("c1/mounts/0/planted"), nil, 0o644),
	} {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("the guest's view takes %s: %v", what, err)
		}
	}

	if err := removeUnmounted(filepath.Join(host, "c1")); err == nil || !strings.Contains(err.Error(), "still mounted") {
		t.Errorf("removing a directory with mounts below it: %v", err)
	}
	if err := s.UnmountRootfs("c1"); err != nil {
		t.Fatal(err)
	}
	if left := mountsUnder(filepath.Join(host, "c1")); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
	for _, d := range []string{filepath.Join(host, "c1"), view("c1")} {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s outlived the container: %v", d, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(vol, "keep")); err != nil || string(b) != "host data\n" {
		t.Errorf("the volume's host data: %q, %v", b, err)
	}
}

// TestSweepStale: a state directory whose lock no one holds and which is
// old is cleaned up (its mounts too); one a live shim holds, a young one,
// and one without a lock file (a shim older than the lock) are left.
func TestSweepStale(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	mk := func(name string, lock bool) string {
		d := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(d, "mounts", "c", "rootfs"), 0o700); err != nil {
			t.Fatal(err)
		}
		if lock {
			os.WriteFile(filepath.Join(d, lockFileName), nil, 0o600)
		}
		return d
	}
	old := time.Now().Add(-time.Hour)
	stale := mk("stale", true)
	os.Chtimes(filepath.Join(stale, lockFileName), old, old)
	mnt := filepath.Join(stale, "mounts", "c", "rootfs")
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	live := mk("live", true)
	os.Chtimes(filepath.Join(live, lockFileName), old, old)
	held, err := tryLock(live, false)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	young := mk("young", true)
	legacy := mk("legacy", false)

	swept := SweepStale(context.Background(), root)
	if len(swept) != 1 || swept[0] != stale {
		t.Errorf("swept %v, want only %s", swept, stale)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale directory is still there: %v", err)
	}
	if left := mountsUnder(stale); len(left) > 0 {
		t.Errorf("the stale directory's mounts are still there: %v", left)
	}
	for _, d := range []string{live, young, legacy} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was swept: %v", d, err)
		}
	}

	// The same id is claimed at once, whatever its age; a held one is not.
	if err := claimStateDir(context.Background(), young); err != nil {
		t.Errorf("claim a crashed sandbox's directory: %v", err)
	}
	if _, err := os.Stat(young); !os.IsNotExist(err) {
		t.Errorf("the claimed directory was not cleaned: %v", err)
	}
	if err := claimStateDir(context.Background(), live); err == nil || !errors.Is(err, errLocked) {
		t.Errorf("claim a live sandbox's directory: %v", err)
	}
}
