package vmsecret

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
)

func TestCreate(t *testing.T) {
	dir := t.TempDir()
	s1, path, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, FileName) || len(s1) != contract.SecretSize {
		t.Fatalf("Create = %d bytes at %s", len(s1), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %#o, want 0600", fi.Mode().Perm())
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, s1) {
		t.Error("file does not hold the secret")
	}
	// A restart makes a new one in place of the old.
	s2, _, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); bytes.Equal(s1, s2) || !bytes.Equal(got, s2) {
		t.Error("a second Create did not replace the secret")
	}
}

func TestCreateRefusesSharedDir(t *testing.T) {
	for _, mode := range []os.FileMode{0o720, 0o703, 0o777} {
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, mode)
		if _, _, err := Create(dir); err == nil {
			t.Errorf("mode %#o: accepted", mode)
		}
	}
	if _, _, err := Create(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory was accepted")
	}
}

func TestCreateDoesNotFollowLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "elsewhere")
	os.WriteFile(target, []byte("keep"), 0o600)
	if err := os.Symlink(target, filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Create(dir); err != nil {
		t.Fatal(err) // the link is removed, not followed
	}
	if got, _ := os.ReadFile(target); string(got) != "keep" {
		t.Errorf("the link's target was written: %q", got)
	}
}
