package share

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/guestspec"
)

// submountVolume makes a volume the guest may write with a tmpfs mounted
// at a/b (holding a file "inside"), and beside it a directory standing for
// the host's /etc, whose b/ holds a file "canary": a share of a/b that
// holds the canary has left the volume.
func submountVolume(t *testing.T) (vol, hostEtc string) {
	t.Helper()
	base := t.TempDir()
	vol, hostEtc = filepath.Join(base, "vol"), filepath.Join(base, "etc")
	for _, d := range []string{filepath.Join(vol, "a/b"), filepath.Join(hostEtc, "b")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tmpfs := filepath.Join(vol, "a/b")
	if err := unix.Mount("none", tmpfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountAll(base) })
	for _, f := range []string{filepath.Join(tmpfs, "inside"), filepath.Join(hostEtc, "b/canary")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return vol, hostEtc
}

func submountShare(vol, containerID string) guestspec.SharedMount {
	return guestspec.SharedMount{HostSource: filepath.Join(vol, "a/b"), Under: vol, Alone: true,
		ShareRel: containerID + "/mounts/0", Destination: "/mnt/a/b"}
}

// TestSubmountThroughSymlinkRefused: a symlink the guest left on the path
// from a volume to its submount is refused, with the path and the reason.
func TestSubmountThroughSymlinkRefused(t *testing.T) {
	s := newLayout(t)
	vol, hostEtc := submountVolume(t)
	if err := os.Rename(filepath.Join(vol, "a"), filepath.Join(vol, "a.real")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hostEtc, filepath.Join(vol, "a")); err != nil {
		t.Fatal(err)
	}
	err := s.ShareMounts("c1", []guestspec.SharedMount{submountShare(vol, "c1")})
	if !errors.Is(err, unix.ELOOP) || !strings.Contains(err.Error(), "a/b below the volume "+vol) || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("share through a symlink: %v, want ELOOP naming a/b, the volume and the symlink", err)
	}
	if _, err := os.Stat(filepath.Join(s.SharedDir, "c1/mounts/0/canary")); err == nil {
		t.Error("the host directory behind the symlink is shared")
	}
	if err := s.UnmountContainer("c1"); err != nil {
		t.Fatal(err)
	}
}

// TestSubmountSymlinkRace: a guest flips a directory on the path to a
// submount between itself and a symlink to the host's /etc as fast as it
// can, while the shim shares that submount again and again. Each share
// either holds the volume's submount or fails; none ever reaches /etc.
func TestSubmountSymlinkRace(t *testing.T) {
	s := newLayout(t)
	vol, hostEtc := submountVolume(t)
	var tmpfsDev unix.Stat_t
	if err := unix.Stat(filepath.Join(vol, "a/b"), &tmpfsDev); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() { // the guest, through its read-write volume
		defer close(done)
		a, real := filepath.Join(vol, "a"), filepath.Join(vol, "a.real")
		for !stop.Load() {
			os.Rename(a, real)
			os.Symlink(hostEtc, a)
			os.Remove(a)
			os.Rename(real, a)
			runtime.Gosched() // leave the shim a chance at the real path too
		}
	}()
	const n = 300
	var shared, refused int
	var escaped []string
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		err := s.ShareMounts(id, []guestspec.SharedMount{submountShare(vol, id)})
		if err != nil {
			refused++
		} else {
			shared++
			view := filepath.Join(s.SharedDir, id, "mounts/0")
			var st unix.Stat_t
			statErr := unix.Stat(view, &st)
			_, canary := os.Stat(filepath.Join(view, "canary"))
			if statErr != nil || st.Dev != tmpfsDev.Dev || canary == nil {
				escaped = append(escaped, id)
			}
		}
		if err := s.UnmountContainer(id); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	<-done
	t.Logf("%d shares: %d of the submount, %d refused", n, shared, refused)
	if len(escaped) > 0 {
		t.Errorf("%d shares reached outside the volume (the guest's symlink to %s was followed): %v", len(escaped), hostEtc, escaped[:min(5, len(escaped))])
	}
	// Once the guest stops, the submount is shared as it always was.
	if err := s.ShareMounts("after", []guestspec.SharedMount{submountShare(vol, "after")}); err != nil {
		t.Fatalf("share the submount of a quiet volume: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.SharedDir, "after/mounts/0/inside")); err != nil {
		t.Errorf("the share of the quiet volume's submount: %v", err)
	}
}

// TestSealRootfs: a sealed rootfs (root.readonly) takes no write through
// the host's mounts/ nor through the view virtiofsd serves, and keeps its
// other mount flags.
func TestSealRootfs(t *testing.T) {
	s := newLayout(t)
	rootfs := filepath.Join(s.HostDir, guestspec.RootfsDir("c1"))
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", rootfs, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m"); err != nil {
		t.Fatal(err)
	}
	sealAndCheck(t, s, "c1", []string{"nosuid", "nodev"})
}

// TestSealIdmappedRootfs: a user namespace pod's rootfs, an idmapped mount
// on the host, is sealed too.
func TestSealIdmappedRootfs(t *testing.T) {
	s := newLayout(t)
	rootfs := filepath.Join(s.HostDir, guestspec.RootfsDir("c1"))
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	// An identity mapping: root may write it until it is sealed.
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
	sh := guestspec.SharedMount{HostSource: t.TempDir(), UIDMappings: maps, GIDMappings: maps}
	src, err := openSource(sh)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(src)
	if err := idmappedBind(sh, src, rootfs); err != nil {
		if strings.Contains(err.Error(), "must support idmapped mounts") {
			t.Skipf("cannot idmap here: %v", err)
		}
		t.Fatal(err)
	}
	sealAndCheck(t, s, "c1", []string{"idmapped"})
}

func sealAndCheck(t *testing.T, s Share, id string, keep []string) {
	t.Helper()
	host := filepath.Join(s.HostDir, guestspec.RootfsDir(id))
	view := filepath.Join(s.SharedDir, guestspec.RootfsDir(id))
	for _, dir := range []string{host, view} {
		if err := os.WriteFile(filepath.Join(dir, "before"), nil, 0o644); err != nil {
			t.Fatalf("a rootfs not sealed yet takes no write through %s: %v", dir, err)
		}
	}
	if err := s.SealRootfs(id); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{host, view} {
		for what, err := range map[string]error{
			"a new file":       os.WriteFile(filepath.Join(dir, "after"), nil, 0o644),
			"an existing file": os.WriteFile(filepath.Join(dir, "before"), []byte("x"), 0o644),
			"a directory":      os.Mkdir(filepath.Join(dir, "d"), 0o755),
			"a removal":        os.Remove(filepath.Join(dir, "before")),
		} {
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("the sealed rootfs takes %s through %s: %v", what, dir, err)
			}
		}
	}
	for _, m := range mountInfoUnder(host) {
		for _, o := range keep {
			if !slices.Contains(m.options, o) {
				t.Errorf("sealing dropped %s from %s: %v", o, m.point, m.options)
			}
		}
	}
	if err := s.UnmountContainer(id); err != nil {
		t.Fatal(err)
	}
}
