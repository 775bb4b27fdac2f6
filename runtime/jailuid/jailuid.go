// Package jailuid hands out host uids, one per live VM, from a reserved
// range, so that two pods' VMMs never run as the same user. A uid is taken
// by holding an exclusive flock on a file named after it; the kernel drops
// the lock when its holder exits, so a crashed shim frees its uids without
// any sweep.
package jailuid

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Defaults: 0x70000000 up, past systemd's container range (524288 to
// 1879048191) and below its foreign-uid range and 2^31, where signedness
// bugs start; no distribution hands these to users or nspawn containers.
const (
	DefaultBase  = 1879048192
	DefaultCount = 65536
	DefaultDir   = "/run/podvm/jail-uids"
)

// maxTries bounds the search for a free uid.
const maxTries = 256

// Range is where uids come from: [Base, Base+Count), lock files in Dir.
type Range struct {
	Base, Count uint32
	Dir         string
}

// Lease is one uid, held until Release. The gid is the same number.
type Lease struct {
	UID  uint32
	lock *os.File
	path string
}

// Acquire takes a free uid. The first candidate derives from key (the
// sandbox id), so a pod usually keeps its uid across restarts.
func (r Range) Acquire(key string) (*Lease, error) {
	if r.Count == 0 {
		return nil, errors.New("jail uid range is empty")
	}
	if uint64(r.Base)+uint64(r.Count) > 1<<31 {
		return nil, fmt.Errorf("jail uid range %d+%d reaches past 2^31", r.Base, r.Count)
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("jail uids: %w", err)
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	start := h.Sum32() % r.Count
	for i := uint32(0); i < maxTries && i < r.Count; i++ {
		uid := r.Base + (start+i)%r.Count
		l, err := r.try(uid)
		if err != nil || l != nil {
			return l, err
		}
	}
	return nil, fmt.Errorf("jail uids: no free uid in %d+%d after %d tries", r.Base, r.Count, maxTries)
}

// try locks uid's file: a lease, nil if another holder has it, or an error.
// Release unlinks the file under the lock, so a lock taken on a file
// that is no longer the one at its path (opened before a Release unlinked
// it) holds nothing: that counts as taken, and the next try makes a new
// file.
func (r Range) try(uid uint32) (*Lease, error) {
	path := filepath.Join(r.Dir, strconv.FormatUint(uint64(uid), 10))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("jail uids: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("jail uids: lock %s: %w", path, err)
	}
	if !samePathFile(f, path) {
		f.Close()
		return nil, nil
	}
	return &Lease{UID: uid, lock: f, path: path}, nil
}

// samePathFile reports whether f is still the file at path.
func samePathFile(f *os.File, path string) bool {
	var held, now unix.Stat_t
	if unix.Fstat(int(f.Fd()), &held) != nil || unix.Stat(path, &now) != nil {
		return false
	}
	return held.Dev == now.Dev && held.Ino == now.Ino
}

// Release gives the uid back; the caller must have ended every process
// running as it. Its file is removed, so the directory holds only the
// uids in use. Releasing twice is harmless.
func (l *Lease) Release() {
	if l != nil && l.lock != nil {
		os.Remove(l.path)
		l.lock.Close()
		l.lock = nil
	}
}
