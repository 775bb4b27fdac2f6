package cache

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"
)

// TestClaimSkipsVMsOfADeadDaemon: a ready VM whose VMM is no longer the
// child of the daemon that booted it (the daemon died; its VMs outlive
// it) is not claimed, and the pod is told why; one whose daemon lives is.
func TestClaimSkipsVMsOfADeadDaemon(t *testing.T) {
	vmm := exec.Command("sleep", "60")
	if err := vmm.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { vmm.Process.Kill(); vmm.Wait() }()
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	id := publish(t, p, 1, small)[0]
	e, err := ReadEntry(p.VMDir(id))
	if err != nil {
		t.Fatal(err)
	}
	e.Pids, e.Keeper = []int{vmm.Process.Pid}, os.Getpid()+100000 // not its parent: its daemon is gone
	if err := p.Publish(e); err != nil {
		t.Fatal(err)
	}
	_, err = p.Claim(small, filepath.Join(root, "pod"))
	var no *ErrNoVM
	if !errors.As(err, &no) || !strings.Contains(no.Reason, "the daemon that booted them is gone") {
		t.Fatalf("claim of an orphaned VM: %v, want ErrNoVM saying its daemon is gone", err)
	}
	e.Keeper = os.Getpid() // the VMM's parent: its daemon lives
	if err := p.Publish(e); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Claim(small, filepath.Join(root, "pod")); err != nil || got.ID != id {
		t.Fatalf("claim of a VM whose daemon lives: %v, %v", got.ID, err)
	}
}

func TestVMOfCmdline(t *testing.T) {
	pool := "/run/podvm/cache"
	for cmdline, want := range map[string]string{
		"qemu\x00-chardev\x00socket,path=/run/podvm/cache/0123456789abcdef/agent.sock": "0123456789abcdef",
		"virtiofsd\x00--socket-path=/run/podvm/cache/retired/fedcba9876543210/fs.sock": "fedcba9876543210",
		"qemu\x00/run/podvm/cache/retired/x":                                           "",
		"qemu\x00/run/podvm/cache-other/0123456789abcdef/agent.sock":                   "",
		"sleep\x0060": "",
	} {
		if got := vmOfCmdline(cmdline, pool); got != want {
			t.Errorf("vmOfCmdline(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

// TestKillStrays: at a daemon's start, processes naming a VM of the pool
// that no sandbox holds and the pool no longer lists are killed (an
// interrupted boot, a claimed VM whose shim died while no daemon ran);
// those of a VM a sandbox holds, or still listed in the pool, are left.
func TestKillStrays(t *testing.T) {
	root := t.TempDir()
	p := Pool{Dir: filepath.Join(root, "cache")}
	listed := publish(t, p, 1, small)[0]
	held, stray := "00000000000000aa", "00000000000000bb"
	sandbox := filepath.Join(root, "sandboxes", "s1", ClaimedName)
	if err := os.MkdirAll(sandbox, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sandbox, EntryName), []byte(`{"id":"`+held+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	procs := map[string]*exec.Cmd{}
	for _, id := range []string{listed, held, stray} {
		// $0 names the VM's directory, as QEMU's sockets do.
		cmd := exec.Command("sh", "-c", "sleep 60", filepath.Join(p.Dir, id, "qmp.sock"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		procs[id] = cmd
	}
	killStrays(p.Dir, filepath.Join(root, "sandboxes", "*", ClaimedName), log.L)
	for id, cmd := range procs {
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		select {
		case <-exited:
			if id != stray {
				t.Errorf("VM %s's process was killed", id)
			}
		case <-time.After(500 * time.Millisecond):
			if id == stray {
				t.Errorf("the stray VM's process lives on")
			}
		}
	}
}

// TestCleanEndsWhatADeadDaemonLeft: `podvm factory clean` (Clean) kills
// the VMs of the pool a dead daemon left and removes the pool; while a
// daemon holds the pool's lock it refuses, and so does a second daemon.
func TestCleanEndsWhatADeadDaemonLeft(t *testing.T) {
	stateDir := t.TempDir()
	p := Pool{Dir: PoolDir(stateDir)}
	id := publish(t, p, 1, small)[0]
	vmm := exec.Command("sh", "-c", "sleep 60", filepath.Join(p.VMDir(id), "qmp.sock"))
	if err := vmm.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { vmm.Wait(); close(exited) }()
	defer vmm.Process.Kill()
	e, _ := ReadEntry(p.VMDir(id))
	e.Pids, e.Keeper = []int{vmm.Process.Pid}, os.Getpid()+100000
	if err := p.Publish(e); err != nil {
		t.Fatal(err)
	}

	lock, err := lockPool(stateDir) // a daemon runs
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockPool(stateDir); !errors.Is(err, ErrServing) {
		t.Errorf("a second daemon's lock: %v, want ErrServing", err)
	}
	if err := Clean(stateDir, log.L); !errors.Is(err, ErrServing) {
		t.Errorf("Clean while a daemon runs: %v, want ErrServing", err)
	}
	lock.Close() // the daemon died

	if err := Clean(stateDir, log.L); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the left VM's process lives on after Clean")
	}
	if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
		t.Errorf("the pool is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, lockName)); !os.IsNotExist(err) {
		t.Errorf("the pool's lock file is still there: %v", err)
	}
}

// TestDaemonEndLeavesNoPool: what a daemon's end does to its pool: an
// empty pool (its retired area too) and the lock file are removed; a pool
// that still holds a VM stays.
func TestDaemonEndLeavesNoPool(t *testing.T) {
	stateDir := t.TempDir()
	p := Pool{Dir: PoolDir(stateDir)}
	if err := os.MkdirAll(filepath.Join(p.Dir, retiredName), 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := lockPool(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	removeEmptyPool(p.Dir)
	unlockPool(lock)
	for _, left := range []string{p.Dir, filepath.Join(stateDir, lockName)} {
		if _, err := os.Stat(left); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", left, err)
		}
	}
	id := publish(t, p, 1, small)[0]
	removeEmptyPool(p.Dir)
	if _, err := os.Stat(p.VMDir(id)); err != nil {
		t.Errorf("a pool holding a VM was removed: %v", err)
	}
}

// TestKeeperWatchesClaimedVMsOfAnEarlierDaemon: a keeper that starts
// while a sandbox holds a VM an earlier daemon booted watches it as its
// own released ones: left while the sandbox holds it, stopped once the
// sandbox's directory is gone (its shim died).
func TestKeeperWatchesClaimedVMsOfAnEarlierDaemon(t *testing.T) {
	root := t.TempDir()
	id := "00000000000000cc"
	sandbox := filepath.Join(root, "sandboxes", "s1")
	if err := os.MkdirAll(filepath.Join(sandbox, ClaimedName), 0o700); err != nil {
		t.Fatal(err)
	}
	vmm := exec.Command("sh", "-c", "sleep 60", filepath.Join(root, "cache", id, "qmp.sock"))
	if err := vmm.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { vmm.Wait(); close(exited) }()
	defer vmm.Process.Kill()
	waitFor(t, "the exec of the VM's process", func() bool { return namesVM(vmm.Process.Pid, id) })
	e := []byte(`{"id":"` + id + `","pids":[` + strconv.Itoa(vmm.Process.Pid) + `]}`)
	if err := os.WriteFile(filepath.Join(sandbox, ClaimedName, EntryName), e, 0o600); err != nil {
		t.Fatal(err)
	}
	runKeeper(t, &Keeper{Pool: Pool{Dir: filepath.Join(root, "cache")}, Claimed: filepath.Join(root, "sandboxes", "*", ClaimedName),
		Inherit: inherit, Poll: 5 * time.Millisecond})
	select {
	case <-exited:
		t.Fatal("the keeper stopped a claimed VM its sandbox holds")
	case <-time.After(200 * time.Millisecond):
	}
	if err := os.RemoveAll(sandbox); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the keeper did not stop a claimed VM whose sandbox is gone")
	}
}
