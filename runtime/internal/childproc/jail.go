package childproc

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// Jail is the unprivileged identity a child runs as, and the files it may
// reach.
type Jail struct {
	UID, GID uint32
	// Groups are the supplementary groups; empty clears root's.
	Groups []uint32
	// ReadOnly and ReadWrite, when either is set, confine the child's
	// file access with Landlock to what lies beneath these paths (files
	// or directories): ReadOnly may be read and executed, ReadWrite also
	// written, created and removed. Where the kernel has no Landlock the
	// child runs without this second wall (LandlockABI says).
	ReadOnly, ReadWrite []string
	// Namespaces puts the child in new PID, network, IPC and UTS
	// namespaces (jailNamespaces): it sees and signals no process but its
	// own, reaches no network but through the fds it is handed, and shares
	// no System V IPC with the host. Unix sockets by path still work.
	Namespaces bool
	// OwnRoot also gives the child a mount namespace whose root holds only
	// ReadOnly, ReadWrite and a few devices (jailroot.go); implies
	// Namespaces.
	OwnRoot bool
}

// jailNamespaces are the namespaces a Jail with Namespaces gets. No mount
// namespace: Landlock already confines which files the child reaches, and
// without a pivot_root a mount namespace would hide nothing more.
const jailNamespaces = syscall.CLONE_NEWPID | syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS

func (j *Jail) credential() *syscall.Credential {
	return &syscall.Credential{Uid: j.UID, Gid: j.GID, Groups: append([]uint32{}, j.Groups...)}
}

// The fork switches to the Jail's uid before exec (SysProcAttr.Credential),
// which empties the permitted and effective sets. The bounding set,
// no_new_privs and a Landlock domain are properties of the forking thread
// that the child inherits, and Go offers no hook between fork and exec to
// set them in the child. So each jailed child is forked from a locked
// thread of its own that first drops them: the thread keeps its effective
// capabilities (the fork still needs CAP_SETUID), but nothing it execs can
// gain one. The thread lives until the child is reaped, since Pdeathsig
// fires when the forking thread exits (spawn.go), and then exits with its
// goroutine (never unlocked), taking its reduced privileges along.
func startOnJailThread(cmd *exec.Cmd, j *Jail, confine func() error, reaped <-chan struct{}) error {
	if cmd.Stdin == nil {
		// exec.Cmd would open /dev/null on the confined thread, which
		// Landlock may not allow.
		null, err := os.Open(os.DevNull)
		if err != nil {
			return fmt.Errorf("jail: %w", err)
		}
		defer null.Close()
		cmd.Stdin = null
	}
	return startOnConfinedThread(cmd, func() error {
		if err := confineThread(j); err != nil {
			return err
		}
		if confine != nil {
			return confine()
		}
		return nil
	}, reaped)
}

// startOnConfinedThread forks cmd from a locked thread of its own after
// confine has restricted that thread; the thread lives until the child is
// reaped and then exits with its goroutine (see startOnJailThread).
func startOnConfinedThread(cmd *exec.Cmd, confine func() error, reaped <-chan struct{}) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := confine(); err != nil {
			errc <- err
			return
		}
		err := cmd.Start()
		errc <- err
		if err == nil {
			<-reaped
		}
	}()
	return <-errc
}

// confineThread empties the calling thread's capability bounding set, sets
// no_new_privs and applies the Jail's Landlock rules to it.
func confineThread(j *Jail) error {
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
	if len(j.ReadOnly)+len(j.ReadWrite) == 0 {
		return nil
	}
	return landlockThread(j.ReadOnly, j.ReadWrite)
}
