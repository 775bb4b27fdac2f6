package childproc

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Jail is the unprivileged identity a child runs as.
type Jail struct {
	UID, GID uint32
	// Groups are the supplementary groups; empty clears root's.
	Groups []uint32
}

func (j *Jail) credential() *syscall.Credential {
	return &syscall.Credential{Uid: j.UID, Gid: j.GID, Groups: append([]uint32{}, j.Groups...)}
}

// The fork switches to the Jail's uid before exec (SysProcAttr.Credential),
// which empties the permitted and effective sets; the bounding set and
// no_new_privs are inherited from the forking thread and Go offers no hook
// between fork and exec to change them. So jailed children are forked from
// a second locked thread of their own, whose bounding set is empty and
// no_new_privs set: the thread keeps its effective capabilities (the
// fork still needs CAP_SETUID), but nothing it execs can ever gain one.
// Like the spawn thread it never exits, for Pdeathsig's sake (spawn.go).

var (
	jailOnce sync.Once
	jailReqs chan func()
	jailErr  error
)

func startOnJailThread(cmd *exec.Cmd) error {
	jailOnce.Do(func() {
		jailReqs = make(chan func())
		ready := make(chan error)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread's privileges differ from the others'
			ready <- dropThreadPrivileges()
			for f := range jailReqs {
				f()
			}
		}()
		jailErr = <-ready
	})
	if jailErr != nil {
		return jailErr
	}
	errc := make(chan error, 1)
	jailReqs <- func() { errc <- cmd.Start() }
	return <-errc
}

// dropThreadPrivileges empties the calling thread's capability bounding set
// and sets no_new_privs on it.
func dropThreadPrivileges() error {
	// 0..63 covers every capability a kernel can have; dropping one this
	// kernel does not know fails with EINVAL, which is skipped.
	for c := 0; c < 64; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("jail: drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("jail: set no_new_privs: %w", err)
	}
	return nil
}
