package hold

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/hostcgroup"
)

// pollEvery is how often the holder looks whether its template is gone or
// stale.
const pollEvery = 10 * time.Second

func init() {
	spec := os.Getenv(holderEnv)
	if spec == "" {
		return
	}
	os.Unsetenv(holderEnv)
	log.SetPrefix("podvm template holder " + strconv.Itoa(os.Getpid()) + ": ")
	ready := os.NewFile(readyFD, "ready")
	err := runHolder(spec, ready)
	if err != nil {
		fmt.Fprintf(ready, "%v\n", err)
		log.Printf("%v", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runHolder is the holder's life: lock, memfd, seal, pid file, report
// ready, then wait for the end.
func runHolder(specJSON string, ready *os.File) error {
	var s Spec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		return fmt.Errorf("instructions: %w", err)
	}
	if s.Cgroup != "" {
		cg, err := hostcgroup.Create(s.Cgroup)
		if err != nil {
			return err
		}
		if err := cg.Add(os.Getpid()); err != nil {
			return err
		}
	}
	lock, err := os.OpenFile(filepath.Join(s.Dir, LockName), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			fmt.Fprintln(ready, "ok") // another holder has it
			log.Printf("another holder runs for %s", s.Dir)
			return nil
		}
		return fmt.Errorf("lock %s: %w", LockName, err)
	}
	inputs, err := identify(s.Inputs)
	if err != nil {
		return err
	}
	mem, err := load(filepath.Join(s.Dir, s.RAM))
	if err != nil {
		return err
	}
	pid := strconv.Itoa(os.Getpid()) + " " + strconv.Itoa(int(mem.Fd())) + "\n"
	if err := writeAtomic(filepath.Join(s.Dir, PidName), pid); err != nil {
		return err
	}
	fmt.Fprintln(ready, "ok")
	ready.Close()
	log.Printf("holding %s (%d bytes) as fd %d", filepath.Join(s.Dir, s.RAM), size(mem), mem.Fd())
	why := wait(s, inputs)
	log.Printf("ending: %s", why)
	os.Remove(filepath.Join(s.Dir, PidName))
	return nil
}

// wait returns why the holder ends: SIGTERM, the template removed, or an
// input changed (then the stale template is removed here).
func wait(s Spec, inputs []string) string {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	if s.Poll == 0 {
		s.Poll = pollEvery
	}
	tick := time.NewTicker(s.Poll)
	defer tick.Stop()
	for {
		select {
		case sig := <-term:
			return "signal " + sig.String()
		case <-tick.C:
		}
		if _, err := os.Stat(filepath.Join(s.Dir, s.Mark)); errors.Is(err, fs.ErrNotExist) {
			return "the template was removed"
		}
		now, err := identify(s.Inputs)
		if err == nil && slices.Equal(now, inputs) {
			continue
		}
		if err := RemoveTemplate(s.Dir); err != nil {
			return fmt.Sprintf("an input of the template changed or went; removing the stale template failed: %v", err)
		}
		return "an input of the template changed or went: stale template removed"
	}
}

// identify is each input's path, size and mtime.
func identify(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("template input: %w", err)
		}
		out = append(out, fmt.Sprintf("%s %d %d", p, st.Size(), st.ModTime().UnixNano()))
	}
	return out, nil
}

// RemoveTemplate removes a template directory, whose tree a template
// makes read-only (files 0400, directories 0500).
func RemoveTemplate(dir string) error {
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func size(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		return -1
	}
	return st.Size()
}
