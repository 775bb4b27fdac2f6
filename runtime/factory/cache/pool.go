// Package cache keeps pod VMs booted ahead of their pods (factory.mode =
// "cache", docs/factory.md section 8): nothing is shared between pods,
// each cached VM goes to exactly one pod.
//
// The pool is a directory. Each cached VM has a directory of its own in
// it, named by a random id; the VM's state (sockets, logs, share) lives
// there, and the entry file (EntryName) written last says the VM is ready
// and what it is. A VM leaves the pool only by a rename of its directory
// (renameat2 with RENAME_NOREPLACE): into a pod's sandbox state directory
// (Claim) or into the pool's retired area (Keeper, when it stops a VM).
// The kernel lets exactly one rename of a directory succeed, so the rename
// is the claim: a VM can never reach two pods, and a holder or shim that
// dies at any point leaves each directory in exactly one place.
//
// The Keeper (keeper.go) boots VMs into the pool and stops what is still
// its own; the boot itself is the caller's (a hypervisor driver's), so the
// package's logic is tested without VMs.
package cache

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// EntryName is the file in a cached VM's directory that says it is ready.
const EntryName = "cache.json"

// retiredName is the pool's area for VMs the Keeper took back to stop
// them; it is not a VM id (ids are hex).
const retiredName = "retired"

// Entry describes a ready cached VM.
type Entry struct {
	// ID is the VM's directory name in the pool.
	ID string `json:"id"`
	// Key names what the VM was booted from: the driver's key of its
	// configuration without anything of a pod (guest image, VMM, kernel
	// command line, accelerator, transport, shared filesystem). A pod
	// takes only a VM of its own key.
	Key       string `json:"key"`
	VCPUs     uint32 `json:"vcpus"`
	MemoryMiB uint32 `json:"memory_mib"`
	// Pids are the VM's host processes, VMM first.
	Pids   []int     `json:"pids"`
	Booted time.Time `json:"booted"`
	// Keeper is the pid of the process that booted the VM (its VMM's
	// parent, holding the jail uid's lock).
	Keeper      int    `json:"keeper"`
	Driver      string `json:"driver"`
	Accelerator string `json:"accelerator"`
	// AgentSocket and Console are the agent's virtio-serial socket and the
	// guest console log, relative to the VM's directory.
	AgentSocket string `json:"agent_socket"`
	Console     string `json:"console"`
	// MAC is the guest NIC's address; Tap its tap in the holding network
	// namespace HoldNS, until a claim moves it into a pod's.
	MAC    string `json:"mac"`
	Tap    string `json:"tap"`
	HoldNS string `json:"hold_ns"`
}

// Want is the VM a pod needs.
type Want struct {
	Key       string
	VCPUs     uint32
	MemoryMiB uint32
}

func (w Want) String() string { return fmt.Sprintf("%dx%d MiB, key %s", w.VCPUs, w.MemoryMiB, w.Key) }

// fits says whether e can run a pod that wants w: the same key and
// exactly the pod's size (the guest's size is fixed at boot: microvm has
// no hot-plug in QEMU 7.2, and a bigger VM would charge the pod for
// memory it did not ask for).
func (w Want) fits(e Entry) bool {
	return e.Key == w.Key && e.VCPUs == w.VCPUs && e.MemoryMiB == w.MemoryMiB
}

// ErrNoVM says the pool had no ready VM the pod could take; its message
// says why (empty, or what the ready VMs are), for the log line of the
// pod that boots instead.
type ErrNoVM struct{ Reason string }

func (e *ErrNoVM) Error() string { return "no cached VM for this pod: " + e.Reason }

// Pool is the directory of cached VMs.
type Pool struct {
	Dir string
}

// NewDir makes the directory of a VM about to boot and returns its id.
func (p Pool) NewDir() (id string, err error) {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return "", fmt.Errorf("VM cache: %w", err)
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("VM cache: id: %w", err)
	}
	id = hex.EncodeToString(b)
	if err := os.Mkdir(filepath.Join(p.Dir, id), 0o700); err != nil {
		return "", fmt.Errorf("VM cache: %w", err)
	}
	return id, nil
}

// VMDir is the directory of VM id while it is in the pool.
func (p Pool) VMDir(id string) string { return filepath.Join(p.Dir, id) }

// Publish marks VM e.ID ready: its entry file, written atomically, last.
func (p Pool) Publish(e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	dir := p.VMDir(e.ID)
	tmp := filepath.Join(dir, EntryName+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("VM cache: publish %s: %w", e.ID, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, EntryName)); err != nil {
		return fmt.Errorf("VM cache: publish %s: %w", e.ID, err)
	}
	return nil
}

// Ready lists the ready VMs in the pool, oldest first, and how many
// directories are not ready (VMs booting).
func (p Pool) Ready() (ready []Entry, booting int, err error) {
	ents, err := os.ReadDir(p.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("VM cache: %w", err)
	}
	for _, d := range ents {
		if !d.IsDir() || d.Name() == retiredName {
			continue
		}
		e, err := ReadEntry(p.VMDir(d.Name()))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			booting++ // or claimed meanwhile: either way not ready
		case err != nil:
			return nil, 0, err
		case e.ID == d.Name():
			ready = append(ready, e)
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].Booted.Before(ready[j].Booted) })
	return ready, booting, nil
}

// ReadEntry reads the entry file of the VM directory dir, in the pool or
// wherever a claim moved it.
func ReadEntry(dir string) (Entry, error) {
	var e Entry
	b, err := os.ReadFile(filepath.Join(dir, EntryName))
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("VM cache: %s: %w", filepath.Join(dir, EntryName), err)
	}
	return e, nil
}

// Claim moves the oldest ready VM that fits w to dest, which must not
// exist and must be on the pool's filesystem, and returns its entry. The
// rename is the claim: of two claims of one VM exactly one succeeds, and
// the other goes on to the next VM. *ErrNoVM when none fits.
func (p Pool) Claim(w Want, dest string) (Entry, error) {
	ready, booting, err := p.Ready()
	if err != nil {
		return Entry{}, err
	}
	var others []string
	orphans := 0
	for _, e := range ready {
		if !w.fits(e) {
			others = append(others, fmt.Sprintf("%dx%d MiB, key %s", e.VCPUs, e.MemoryMiB, e.Key))
			continue
		}
		if orphaned(e) {
			orphans++ // the next daemon's start ends it
			continue
		}
		err := unix.Renameat2(unix.AT_FDCWD, p.VMDir(e.ID), unix.AT_FDCWD, dest, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.ENOENT) {
			continue // another pod (or the keeper) took it first
		}
		if err != nil {
			return Entry{}, fmt.Errorf("VM cache: claim %s into %s: %w", e.ID, dest, err)
		}
		return e, nil
	}
	reason := fmt.Sprintf("none ready (%d booting)", booting)
	if orphans > 0 {
		reason = fmt.Sprintf("%d ready, but the daemon that booted them is gone (their next daemon ends them)", orphans)
	}
	if len(others) > 0 {
		reason = fmt.Sprintf("the pod needs %s; ready: %s", w, strings.Join(others, "; "))
	}
	return Entry{}, &ErrNoVM{Reason: reason}
}

// retire takes VM id out of the pool into the retired area and returns
// its directory there; false if it was claimed first.
func (p Pool) retire(id string) (string, bool, error) {
	area := filepath.Join(p.Dir, retiredName)
	if err := os.MkdirAll(area, 0o700); err != nil {
		return "", false, fmt.Errorf("VM cache: %w", err)
	}
	dest := filepath.Join(area, id)
	err := unix.Renameat2(unix.AT_FDCWD, p.VMDir(id), unix.AT_FDCWD, dest, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.ENOENT) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("VM cache: retire %s: %w", id, err)
	}
	return dest, true, nil
}

// orphaned says whether e's VM outlived the daemon that booted it: its
// VMM's parent is no longer e.Keeper (the kernel reparented it) or it is
// gone. Such a VM is not claimed: nobody holds its jail uid's lock for
// the shim to copy (Adopt), and the next daemon's start ends it. An
// entry without a keeper (tests' fakes) is never orphaned.
func orphaned(e Entry) bool {
	if e.Keeper == 0 || len(e.Pids) == 0 {
		return false
	}
	ppid, err := parentPID(e.Pids[0])
	return err != nil || ppid != e.Keeper
}

// parentPID is process pid's parent, from /proc/<pid>/stat.
func parentPID(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 2 {
		return 0, fmt.Errorf("VM cache: /proc/%d/stat: unexpected %q", pid, b)
	}
	return strconv.Atoi(f[1])
}
