package guestinit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A short seed is refused before anything is opened; a file that is not
// the random device refuses the ioctl, and Reseed says which step failed.
func TestReseedChecks(t *testing.T) {
	old := RandomDevice
	t.Cleanup(func() { RandomDevice = old })
	RandomDevice = filepath.Join(t.TempDir(), "not-random")
	if err := Reseed(make([]byte, 8)); err == nil {
		t.Error("Reseed accepted 8 bytes of seed")
	}
	if err := os.WriteFile(RandomDevice, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Reseed(make([]byte, 64)); !errors.Is(err, unix.ENOTTY) {
		t.Errorf("Reseed on a plain file: %v, want ENOTTY", err)
	}
}
