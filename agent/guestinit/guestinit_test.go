package guestinit

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestEnableControllers(t *testing.T) {
	tests := []struct {
		name      string
		available string
		want      string
	}{
		{"all wanted", "cpuset cpu io memory hugetlb pids rdma misc\n", "+cpu\n+cpuset\n+io\n+memory\n+pids\n+hugetlb\n"},
		{"some missing", "memory pids\n", "+memory\n+pids\n"},
		{"none", "\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte(tt.available), 0o644); err != nil {
				t.Fatal(err)
			}
			control := filepath.Join(root, "cgroup.subtree_control")
			if err := os.WriteFile(control, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := enableControllers(root); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(control)
			if string(got) != tt.want {
				t.Errorf("subtree_control = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnableControllersWithoutCgroup2(t *testing.T) {
	if err := enableControllers(t.TempDir()); err == nil {
		t.Fatal("want an error when cgroup.controllers is missing")
	}
}

func TestBootTimeAdvances(t *testing.T) {
	a := BootTime()
	b := BootTime()
	if a <= 0 || b < a {
		t.Fatalf("BootTime went %d then %d", a, b)
	}
}

// TestLinkUp brings lo up in a fresh network namespace, where it starts down.
func TestLinkUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	done := make(chan error, 1)
	go func() {
		// The thread is left in the new namespace and locked: Go
		// discards it when the goroutine ends instead of reusing it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		if err := linkUp("lo"); err != nil {
			done <- err
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		ifr, _ := unix.NewIfreq("lo")
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			done <- err
			return
		}
		if ifr.Uint16()&unix.IFF_UP == 0 {
			t.Errorf("lo flags %#x lack IFF_UP", ifr.Uint16())
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLinkUpUnknownInterface(t *testing.T) {
	if err := linkUp("podvm-nope0"); err == nil {
		t.Fatal("want an error for a missing interface")
	}
}
