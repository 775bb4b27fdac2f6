package share

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/guestspec"
	"github.com/podvm/podvm/runtime/internal/vmtest"
)

// newLayout makes a state directory with the share set up, removed with
// everything mounted below it when the test ends.
func newLayout(t *testing.T) Share {
	t.Helper()
	vmtest.NeedRoot(t)
	state := t.TempDir()
	s := At(state)
	t.Cleanup(func() { unmountAll(state) })
	if err := s.SetUp(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestShareIsReadOnlyForTheGuest: what the shim mounts under mounts/
// appears in shared/, read-write or read-only as mounted, while shared/
// itself takes no new file, directory or symlink.
func TestShareIsReadOnlyForTheGuest(t *testing.T) {
	s := newLayout(t)
	host, shared := s.HostDir, s.SharedDir
	rootfs := filepath.Join(host, guestspec.RootfsDir("c1"))
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", rootfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "keep"), []byte("host data\n"), 0o644)
	if err := s.ShareMounts("c1", []guestspec.SharedMount{
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
	if err := s.UnmountContainer("c1"); err != nil {
		t.Fatal(err)
	}
	if left := MountsUnder(filepath.Join(host, "c1")); len(left) > 0 {
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

func TestUnescapeMountPath(t *testing.T) {
	if got := unescapeMountPath(`/run/a\040b`); got != "/run/a b" {
		t.Fatalf("got %q", got)
	}
}
