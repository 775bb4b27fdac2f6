// Package vmsecret makes the per-VM secret the shim proves to podvm-agent
// before any call (contract.HostAuth). It is 32 random bytes written 0600
// in the sandbox's own state directory, which only the shim's user may
// change: the VMM reads it from there (QEMU's -fw_cfg file=, never the
// secret itself on a command line), and nothing else on the node can.
package vmsecret

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/podvm/podvm/agent/api/contract"
)

// FileName is the secret's file in the VM's state directory.
const FileName = "agent.secret"

// Create makes a fresh secret for a VM whose state directory is dir,
// replacing one left by an earlier start, and returns it with its file's
// path.
func Create(dir string) ([]byte, string, error) {
	if err := checkPrivate(dir); err != nil {
		return nil, "", err
	}
	secret, err := contract.NewSecret()
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, FileName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("agent secret: remove the old one: %w", err)
	}
	// O_EXCL|O_NOFOLLOW: a file or link planted in its place is an error,
	// not something to write through.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("agent secret: %w", err)
	}
	_, werr := f.Write(secret)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(path)
		return nil, "", fmt.Errorf("agent secret: write %s: %w", path, err)
	}
	return secret, path, nil
}

// checkPrivate refuses a state directory that another user could change:
// they could swap the file between our write and the VMM's read. Reading
// the directory is harmless, the file itself being 0600.
func checkPrivate(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("agent secret: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("agent secret: %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("agent secret: state directory %s has mode %#o, want it writable by its owner only", dir, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("agent secret: state directory %s is owned by uid %d, not by us (%d)", dir, st.Uid, os.Geteuid())
	}
	return nil
}
