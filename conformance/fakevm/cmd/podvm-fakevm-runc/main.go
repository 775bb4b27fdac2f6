// Command podvm-fakevm-runc is the fake-VM baseline's OCI runtime: containerd
// runs it in place of runc (the runc-fakevm handler's BinaryName). For
// create and run it dresses the bundle up as a VM (package fakevm); then,
// for every command, it becomes the real runc with the same arguments.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/conformance/fakevm"
)

func main() {
	if err := run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "podvm-fakevm-runc: %v\n", err)
		os.Exit(1)
	}
}

func run(argv []string) error {
	runc, err := realRunc()
	if err != nil {
		return err
	}
	cmd, bundle, err := fakevm.Command(argv[1:])
	if err != nil {
		return err
	}
	if bundle != "" {
		h, err := host()
		if err != nil {
			return err
		}
		if err := fakevm.EditBundle(bundle, h); err != nil {
			return fmt.Errorf("runc %s: %w", cmd, err)
		}
	}
	return syscall.Exec(runc, append([]string{"runc"}, argv[1:]...), os.Environ())
}

// realRunc is the runc to become: $PODVM_FAKEVM_RUNC, or the first runc on
// PATH that is not this program.
func realRunc() (string, error) {
	if p := os.Getenv(fakevm.RuncEnv); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("runc")
	if err != nil {
		return "", fmt.Errorf("find the real runc (set %s): %w", fakevm.RuncEnv, err)
	}
	self, _ := os.Executable()
	if same, _ := filepath.EvalSymlinks(p); same == self {
		return "", errors.New("the runc on PATH is this wrapper: set " + fakevm.RuncEnv)
	}
	return p, nil
}

// host reads the node's clocks for the time namespace.
func host() (fakevm.Host, error) {
	var boot, mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot); err != nil {
		return fakevm.Host{}, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return fakevm.Host{}, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	_, err := os.Stat("/proc/self/ns/time")
	return fakevm.Host{
		Now:            time.Now(),
		BootTime:       time.Duration(boot.Nano()),
		Monotonic:      time.Duration(mono.Nano()),
		TimeNamespaces: err == nil,
	}, nil
}
