// Package childproc runs the long-lived helper processes of a pod VM (the VMM,
// virtiofsd): each with its own log file, in its own process group, killed by
// the kernel if the shim dies, and reaped by a goroutine that reports its
// death at once. A child may be jailed: run as an unprivileged uid with no
// capabilities and, where the kernel has Landlock, only the files it needs
// (jail.go).
package childproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/podvm/podvm/runtime/internal/caplog"
)

// logDrainWait bounds how long the reaping of a child waits for the copy
// of its log to reach the end of what it wrote.
const logDrainWait = time.Second

// Spec describes one process to start.
type Spec struct {
	// Name is used in errors, e.g. "qemu for sandbox abc".
	Name string
	Path string
	Args []string
	// LogPath receives stdout and stderr; it is truncated at start. What
	// the child writes goes through a pipe the shim copies into the file,
	// capped at LogMaxBytes (0: caplog.DefaultMaxBytes) with one rotation,
	// LogPath.1: a guest can make its VMM or virtiofsd log (a warning per
	// bad request), and the file is on the node's /run.
	LogPath     string
	LogMaxBytes int64
	// ExtraFiles become fds 3, 4, ... in the child, as in exec.Cmd.
	ExtraFiles []*os.File
	// Cgroup, when set, receives the child right after it is spawned,
	// before it can have allocated much: the pod's host cgroup.
	Cgroup Cgroup
	// Jail, when set, runs the child as an unprivileged user with no
	// capabilities at all (see jail.go).
	Jail *Jail
	// Confine, when set, runs on the thread that forks the child, just
	// before the fork: what it sets on that thread (a seccomp filter) the
	// child inherits and cannot undo.
	Confine func() error
}

// Cgroup is a host cgroup a child is moved into.
type Cgroup interface {
	// Add moves process pid, with its threads, into the cgroup.
	Add(pid int) error
}

// Process is a started child.
type Process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // set before done is closed
}

// outliveParent is SetOutliveParent's setting.
var outliveParent atomic.Bool

// SetOutliveParent makes the children this process starts from now on
// outlive it (on: no parent-death signal) or die with it (off, the
// default). Only the VM cache's daemon turns it on: a VM it booted may
// run a pod, which must not die with the daemon; the daemon's next start
// ends the VMs still its own (docs/factory.md section 8).
func SetOutliveParent(on bool) { outliveParent.Store(on) }

// Start launches the process. Unless SetOutliveParent is on, the child
// gets SIGKILL from the kernel if the shim process dies (see spawn.go for why that is reliable in Go), and runs
// in its own process group so a terminal's ^C reaches only the shim, which
// then stops its VMs in order.
func Start(spec Spec) (*Process, error) {
	logFile, err := caplog.Open(spec.LogPath, spec.LogMaxBytes, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", spec.Name, err)
	}
	// The command line heads the log: the first thing wanted when a VM
	// misbehaves.
	fmt.Fprintf(logFile, "+ %s\n", shellQuote(append([]string{spec.Path}, spec.Args...)))
	logPipe, logCopy, err := caplog.Pipe(logFile)
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("log for %s: %w", spec.Name, err)
	}
	// The child holds its own copy of the pipe; ours would keep the copy
	// going after the child exited.
	defer logPipe.Close()

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = logPipe
	cmd.Stderr = logPipe
	cmd.ExtraFiles = spec.ExtraFiles
	// LIBC_FATAL_STDERR_: glibc writes its fatal errors (a fortify check,
	// heap corruption) before it aborts to the terminal, which helpers have
	// none of; with it they reach the helper's log.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LIBC_FATAL_STDERR_=1"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !outliveParent.Load() {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	done := make(chan struct{})
	start := startOnSpawnThread
	switch {
	case spec.Jail != nil && spec.Jail.OwnRoot:
		// The jailer, still root, builds the root, then drops privileges
		// and sets the parent-death signal again (jailroot.go). It runs no
		// Confine: that is a function of this process.
		if spec.Confine != nil {
			return nil, fmt.Errorf("start %s: a jail with a root of its own takes no Confine", spec.Name)
		}
		if err := jailerCommand(cmd, spec.Jail); err != nil {
			return nil, err
		}
	case spec.Jail != nil:
		// The child changes uid before it sets Pdeathsig, so the change
		// (which clears the parent-death signal) does not undo it.
		cmd.SysProcAttr.Credential = spec.Jail.credential()
		if spec.Jail.Namespaces {
			cmd.SysProcAttr.Cloneflags = jailNamespaces
		}
		start = func(cmd *exec.Cmd) error { return startOnJailThread(cmd, spec.Jail, spec.Confine, done) }
	case spec.Confine != nil:
		start = func(cmd *exec.Cmd) error { return startOnConfinedThread(cmd, spec.Confine, done) }
	}
	if err := start(cmd); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", spec.Name, spec.Path, err)
	}
	// exec has happened when Start returns: the child is in its dynamic
	// loader, with its memory still to be allocated. (cgroup v1 cannot
	// spawn a child straight into a cgroup; moving it at once is as close.)
	if spec.Cgroup != nil {
		if err := spec.Cgroup.Add(cmd.Process.Pid); err != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			close(done)
			return nil, fmt.Errorf("start %s: %w", spec.Name, err)
		}
	}
	p := &Process{name: spec.Name, logPath: spec.LogPath, cmd: cmd, done: done}
	go func() {
		p.waitErr = cmd.Wait()
		// The exit reason quotes the log's last lines: let the copy
		// reach them (bounded: a grandchild may hold the pipe).
		logCopy.Wait(logDrainWait)
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Name is the name given in the Spec.
func (p *Process) Name() string { return p.name }

// LogPath is where the child's output goes.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed once the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether Done is closed.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitStatus describes how the child ended, e.g. "signal: killed" or "exit
// status 1". Valid only after Done is closed.
func (p *Process) WaitStatus() string {
	if p.waitErr == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ProcessState.String()
	}
	return p.waitErr.Error()
}

// Signal sends sig to the child's whole process group, so that any helper
// it forked goes too. Signalling an exited child is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	err := syscall.Kill(-p.Pid(), sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to %s (pid %d): %w", sig, p.name, p.Pid(), err)
	}
	return nil
}

// Kill sends SIGKILL to the group and waits until the child is reaped.
func (p *Process) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}

var errNotExited = errors.New("process has not exited")

// ExitReason builds the message for an unexpected death: "<name> exited
// unexpectedly: signal: killed (<notes>); last lines of <log>: ...".
func (p *Process) ExitReason(tailLines int, notes ...string) error {
	if !p.Exited() {
		return errNotExited
	}
	msg := fmt.Sprintf("%s exited unexpectedly: %s", p.name, p.WaitStatus())
	if len(notes) > 0 {
		msg += " (" + strings.Join(notes, "; ") + ")"
	}
	if tail := TailLines(p.logPath, tailLines); tail != "" {
		msg += fmt.Sprintf("; last lines of %s: %s", p.logPath, tail)
	}
	return errors.New(msg)
}

// Terminate asks the child to exit with SIGTERM and kills it if it has not
// gone within grace (or when ctx ends first). It returns once the child is
// reaped.
func (p *Process) Terminate(ctx context.Context, grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.Kill()
	case <-ctx.Done():
		p.Kill()
	}
}

// shellQuote renders argv so that it can be pasted into a shell.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+,./:@") == "" {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
