package hold

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// holderEnv carries a holder's Spec (as JSON) into the re-executed program;
// init (holder.go) runs the holder when it is set.
const holderEnv = "_PODVM_TEMPLATE_HOLD"

// holderArg0 is the holder's argv[0]; its argv[1] is the template
// directory, so that ps names what it holds.
const holderArg0 = "podvm-template-hold"

// readyFD is the holder's fd of the pipe it reports on: "ok" once the
// memfd is sealed and the pid file written, or why it failed.
const readyFD = 3

// startTimeout bounds the holder's start: reading a RAM file of a few
// hundred MiB into memory.
const startTimeout = 60 * time.Second

// Ensure returns the template's memfd (Take), starting its holder first
// if none runs: the shim that saved the template, or the first that finds
// its holder gone (a crash, a reboot of the node keeps no /run).
func Ensure(s Spec, size int64) (*os.File, error) {
	f, err := Take(s.Dir, size)
	if !errors.Is(err, ErrNoHolder) {
		return f, err
	}
	if err := Start(s); err != nil {
		return nil, err
	}
	// Start also succeeds when another shim's holder had the lock first;
	// that one may still be loading the RAM.
	lock := filepath.Join(s.Dir, LockName)
	for deadline := time.Now().Add(startTimeout); ; time.Sleep(20 * time.Millisecond) {
		f, err := Take(s.Dir, size)
		if !errors.Is(err, ErrNoHolder) || !locked(lock) || time.Now().After(deadline) {
			return f, err
		}
	}
}

// Start launches the template's holder and returns once its memfd is
// sealed and its pid file written. A holder that finds another one
// running ends at once, and Start succeeds: the other holds the template.
func Start(s Spec) error {
	spec, err := json.Marshal(s)
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("start VM template holder: %w", err)
	}
	defer r.Close()
	logf, err := os.OpenFile(filepath.Join(s.Dir, LogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		w.Close()
		return fmt.Errorf("start VM template holder: %w", err)
	}
	defer logf.Close()
	// /proc/self/exe: this program, even if an upgrade replaced its file.
	cmd := exec.Command("/proc/self/exe", s.Dir)
	cmd.Args[0] = holderArg0
	cmd.Env = []string{holderEnv + "=" + string(spec), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Dir = "/"
	// A session of its own and no parent-death signal: it outlives the
	// shim, as the template outlives the pod.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start VM template holder: %w", err)
	}
	// Reaped here if it ends while this process lives; by init after.
	go cmd.Wait()
	return readReady(r, cmd.Process.Pid)
}

// readReady waits for the holder's report on its ready pipe.
func readReady(r *os.File, pid int) error {
	r.SetReadDeadline(time.Now().Add(startTimeout))
	line, err := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ok":
		return nil
	case line != "":
		return fmt.Errorf("VM template holder (pid %d): %s", pid, line)
	}
	return fmt.Errorf("VM template holder (pid %d) ended without a word (see %s): %v", pid, LogName, err)
}
