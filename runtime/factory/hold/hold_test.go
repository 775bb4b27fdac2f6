package hold

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// template makes a template dir with a sparse RAM file of 4 MiB holding
// data at two places, its mark and an input; it returns the spec and the
// RAM's content.
func template(t *testing.T) (Spec, []byte) {
	t.Helper()
	dir := t.TempDir()
	ram := make([]byte, 4<<20)
	copy(ram[8192:], "guest kernel text")
	copy(ram[3<<20+100:], bytes.Repeat([]byte{0xab}, 5000))
	f, err := os.Create(filepath.Join(dir, "ram"))
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{8192, 3 << 20} {
		if _, err := f.WriteAt(ram[off:off+3*pageSize], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(int64(len(ram))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	input := filepath.Join(dir, "kernel")
	for _, p := range []string{filepath.Join(dir, "template.json"), input} {
		if err := os.WriteFile(p, []byte("{}"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	s := Spec{Dir: dir, RAM: "ram", Mark: "template.json", Inputs: []string{input}, Poll: 50 * time.Millisecond}
	t.Cleanup(func() { Stop(dir) })
	return s, ram
}

// attack is what a VMM escaped into by its guest would try on the fd of
// the template's RAM it holds: write it, map it shared and writable, open
// it again read-write through /proc and write, shrink it. nil: every
// attempt was refused.
func attack(f *os.File) error {
	var errs []error
	if _, err := f.WriteAt([]byte("poison"), 8192); err == nil {
		errs = append(errs, errors.New("write(2) succeeded"))
	}
	if m, err := unix.Mmap(int(f.Fd()), 0, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		unix.Munmap(m)
		errs = append(errs, errors.New("mmap MAP_SHARED PROT_WRITE succeeded"))
	}
	if g, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), os.O_RDWR, 0); err == nil {
		if _, err := g.WriteAt([]byte("poison"), 8192); err == nil {
			errs = append(errs, errors.New("write(2) through /proc/self/fd succeeded"))
		}
		g.Close()
	}
	if err := f.Truncate(pageSize); err == nil {
		errs = append(errs, errors.New("ftruncate succeeded"))
	}
	return errors.Join(errs...)
}

func TestHeldRAMRefusesWrites(t *testing.T) {
	s, ram := template(t)
	// The control: the attack succeeds against the RAM file opened
	// read-write, as QEMU opened it before the holder (stage 2).
	old, err := os.OpenFile(filepath.Join(s.Dir, "ram"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := attack(old); err == nil {
		t.Fatal("the attack failed against the RAM file itself: it tests nothing")
	}
	old.Close()
	// attack wrote "poison" and shrank the file: make it again.
	s, ram = template(t)

	f, err := Ensure(s, int64(len(ram)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := attack(f); err != nil {
		t.Errorf("the held memfd let the attacker in: %v", err)
	}
	got := make([]byte, len(ram))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ram) {
		t.Error("the memfd does not hold the RAM file's content")
	}
	// What a clone's VMM does: map it private and write its own copy.
	m, err := unix.Mmap(int(f.Fd()), 0, len(ram), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("private mapping refused: %v", err)
	}
	copy(m[8192:], "mine")
	unix.Munmap(m)
	if _, err := f.ReadAt(got[:4], 8192); err != nil || string(got[:4]) != "gues" {
		t.Errorf("a private write reached the memfd: %q, %v", got[:4], err)
	}

	pid := Running(s.Dir)
	if pid == 0 {
		t.Fatal("no holder running after Ensure")
	}
	g, err := Ensure(s, int64(len(ram)))
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if again := Running(s.Dir); again != pid {
		t.Errorf("a second Ensure started holder %d beside %d", again, pid)
	}
	if _, err := Take(s.Dir, int64(len(ram))+1); err == nil {
		t.Error("Take accepted a memfd of the wrong size")
	}
	if err := Stop(s.Dir); err != nil {
		t.Fatal(err)
	}
	if Running(s.Dir) != 0 {
		t.Error("holder still running after Stop")
	}
	if _, err := Take(s.Dir, int64(len(ram))); !errors.Is(err, ErrNoHolder) {
		t.Errorf("Take after Stop: %v, want ErrNoHolder", err)
	}
}

func TestHolderEnds(t *testing.T) {
	s, ram := template(t)
	if err := Start(s); err != nil {
		t.Fatal(err)
	}
	if Running(s.Dir) == 0 {
		t.Fatal("no holder")
	}
	// A new guest image: the template is stale, its holder removes it.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(s.Inputs[0], later, later); err != nil {
		t.Fatal(err)
	}
	waitGone(t, s.Dir, func() bool { _, err := os.Stat(s.Dir); return errors.Is(err, os.ErrNotExist) })

	// The template removed: its holder ends.
	s, ram = template(t)
	if _, err := Ensure(s, int64(len(ram))); err != nil {
		t.Fatal(err)
	}
	pid := Running(s.Dir)
	if err := os.Remove(filepath.Join(s.Dir, s.Mark)); err != nil {
		t.Fatal(err)
	}
	waitGone(t, s.Dir, func() bool { return unix.Kill(pid, 0) != nil })
}

func waitGone(t *testing.T, dir string, gone func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if gone() {
			return
		}
	}
	log, _ := os.ReadFile(filepath.Join(dir, LogName))
	t.Fatalf("holder of %s did not end; its log: %s", dir, log)
}

// Two shims that find no holder at once both get the memfd of one holder.
func TestEnsureAtOnce(t *testing.T) {
	s, ram := template(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			f, err := Ensure(s, int64(len(ram)))
			if err == nil {
				f.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if Running(s.Dir) == 0 {
		t.Error("no holder runs")
	}
}
