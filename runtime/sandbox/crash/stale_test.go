package crash

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/internal/vmtest"
	"github.com/podvm/podvm/runtime/sandbox/share"
)

// TestSweepStale: a state directory whose lock no one holds and which is
// old is cleaned up (its mounts too); one a live shim holds, a young one,
// and one without a lock file (a shim older than the lock) are left.
func TestSweepStale(t *testing.T) {
	vmtest.NeedRoot(t)
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

	swept := Sweep(context.Background(), root)
	if len(swept) != 1 || swept[0] != stale {
		t.Errorf("swept %v, want only %s", swept, stale)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale directory is still there: %v", err)
	}
	if left := share.MountsUnder(stale); len(left) > 0 {
		t.Errorf("the stale directory's mounts are still there: %v", left)
	}
	for _, d := range []string{live, young, legacy} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was swept: %v", d, err)
		}
	}

	// The same id is claimed at once, whatever its age; a held one is not.
	if err := Claim(context.Background(), young); err != nil {
		t.Errorf("claim a crashed sandbox's directory: %v", err)
	}
	if _, err := os.Stat(young); !os.IsNotExist(err) {
		t.Errorf("the claimed directory was not cleaned: %v", err)
	}
	if err := Claim(context.Background(), live); err == nil || !errors.Is(err, errLocked) {
		t.Errorf("claim a live sandbox's directory: %v", err)
	}
}

// TestCleanupContainerOfCachedVM: a dead shim's container is unmounted from
// whichever share it was mounted in, a cached VM's (under the claimed vm/
// directory) as well as a booted VM's.
func TestCleanupContainerOfCachedVM(t *testing.T) {
	vmtest.NeedRoot(t)
	for _, shareDir := range []string{"", "vm"} {
		stateDir := t.TempDir()
		mnt := filepath.Join(stateDir, shareDir, "mounts", "c1", "rootfs")
		if err := os.MkdirAll(mnt, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
		if err := Cleanup(Record{StateDir: stateDir, ContainerID: "c1"}); err != nil {
			t.Errorf("share %q: %v", shareDir, err)
		}
		if left := share.MountsUnder(stateDir); len(left) > 0 {
			t.Errorf("share %q: the container's mounts are still there: %v", shareDir, left)
		}
	}
}
