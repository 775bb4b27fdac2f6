package virtiofsd

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReceivesPropagation(t *testing.T) {
	dir := t.TempDir()
	if ok, err := receivesPropagation(dir); err != nil || ok {
		t.Errorf("a plain directory: %v, %v; want false", ok, err)
	}
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	share := filepath.Join(dir, "with space")
	if err := os.Mkdir(share, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(share, share, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(share, unix.MNT_DETACH) })
	if err := unix.Mount("", share, "", unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := receivesPropagation(share); err != nil || ok {
		t.Errorf("a private mount: %v, %v; want false", ok, err)
	}
	if err := unix.Mount("", share, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := receivesPropagation(share); err != nil || !ok {
		t.Errorf("a shared mount (path with a space): %v, %v; want true", ok, err)
	}
}

func TestCandidatesStartWithTheInstallsOwn(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	c := Candidates()
	want := filepath.Join(filepath.Dir(filepath.Dir(exe)), "libexec/podvm/virtiofsd")
	if len(c) != len(DefaultPaths)+1 || c[0] != want {
		t.Fatalf("Candidates = %v; want %s first, then %v", c, want, DefaultPaths)
	}
	if c[len(c)-1] != "/usr/lib/qemu/virtiofsd" {
		t.Errorf("the C daemon is not the last resort: %v", c)
	}
}
