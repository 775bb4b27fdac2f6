package virtiofsd

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/internal/childproc"
)

// underSetidFilter runs f on a thread of its own under the set-id filter;
// the thread exits afterwards, taking the filter with it.
func underSetidFilter(t *testing.T, f func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the filtered thread ends with this goroutine
		if err := installSetidFilter(); err != nil {
			done <- err
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// What the filter refuses and what it lets through, syscall by syscall, as
// virtiofsd issues them.
func TestSetidFilter(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	var got []string
	try := func(what string, err error) { got = append(got, what+": "+errName(err)) }
	underSetidFilter(t, func() {
		try("chmod 4755", unix.Chmod(file, 0o4755))
		try("chmod 2755", unix.Chmod(file, 0o2755))
		try("chmod 1777", unix.Chmod(file, 0o1777))
		try("fchmod 6755", unix.Fchmod(int(f.Fd()), 0o6755))
		try("fchmod 755", unix.Fchmod(int(f.Fd()), 0o755))
		try("fchmodat 4755", unix.Fchmodat(dfd, "f", 0o4755, 0))
		try("fchmodat 644", unix.Fchmodat(dfd, "f", 0o644, 0))
		try("openat O_CREAT 4755", openClose(dfd, "c1", unix.O_CREAT|unix.O_WRONLY, 0o4755))
		try("openat O_CREAT 755", openClose(dfd, "c2", unix.O_CREAT|unix.O_WRONLY, 0o755))
		try("openat O_TMPFILE 2755", openClose(dfd, ".", unix.O_TMPFILE|unix.O_WRONLY, 0o2755))
		// Without O_CREAT the mode register holds whatever was there.
		try("openat read, stray mode", openClose(dfd, "f", unix.O_RDONLY, 0o6777))
		try("mknodat fifo", unix.Mknodat(dfd, "p", unix.S_IFIFO|0o644, 0))
		try("mknodat file 4755", unix.Mknodat(dfd, "r", unix.S_IFREG|0o4755, 0))
		try("openat2", openat2(dfd, "f"))
	})
	want := []string{
		"chmod 4755: EPERM", "chmod 2755: EPERM", "chmod 1777: ok", "fchmod 6755: EPERM", "fchmod 755: ok",
		"fchmodat 4755: EPERM", "fchmodat 644: ok", "openat O_CREAT 4755: EPERM", "openat O_CREAT 755: ok",
		"openat O_TMPFILE 2755: EPERM", "openat read, stray mode: ok", "mknodat fifo: ok",
		"mknodat file 4755: EPERM", "openat2: ENOSYS",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("under the filter:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
		t.Errorf("the file after the filter: %v %v", fi.Mode(), err)
	}
}

// A child started with the filter as its Confine runs under it, exec and
// all, and the shim's other threads do not.
func TestSetidFilterReachesTheChild(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := childproc.Start(childproc.Spec{
		Name: "chmod", Path: "/bin/sh", Args: []string{"-c", "chmod 4755 " + file},
		LogPath: filepath.Join(dir, "log"), Confine: installSetidFilter,
	})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	log, _ := os.ReadFile(filepath.Join(dir, "log"))
	if !strings.Contains(string(log), "Operation not permitted") {
		t.Errorf("chmod 4755 in the child was not refused: %s", log)
	}
	if err := unix.Chmod(file, 0o4755); err != nil {
		t.Errorf("the test's own thread is filtered too: %v", err)
	}
}

func openClose(dfd int, name string, flags int, mode uint32) error {
	fd, err := unix.Openat(dfd, name, flags|unix.O_CLOEXEC, mode)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func openat2(dfd int, name string) error {
	p, _ := unix.BytePtrFromString(name)
	how := unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC}
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT2, uintptr(dfd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&how)), unsafe.Sizeof(how), 0, 0)
	if errno != 0 {
		return errno
	}
	unix.Close(int(fd))
	return nil
}

func errName(err error) string {
	var errno unix.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// The filter is on unless the operator turned it off.
func TestSetidFilterIsTheDefault(t *testing.T) {
	if (Config{}).confine() == nil {
		t.Error("a default Config starts virtiofsd without the set-id filter")
	}
	if (Config{AllowSetID: true}).confine() != nil {
		t.Error("AllowSetID still installs the set-id filter")
	}
}
