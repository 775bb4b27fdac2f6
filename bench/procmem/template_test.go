package procmem

import (
	"bufio"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/factory/hold"
)

const (
	page          = 4096
	templatePages = 64 // the memfd's size
	// The "holder" writes pages [0, 8) and [32, 48): 24 allocated. A
	// read fault maps the pages around it that are in memory (fault
	// around, 64 KiB), so the clones' reads of page 0 or 1 map [0, 8) and
	// leave [32, 48) mapped by nobody.
	writtenPages   = 24
	childMapEnv    = "PROCMEM_TEST_MAP_TEMPLATE"
	childReadyLine = "mapped"
)

// sink keeps mapTemplate's read from being optimised away.
var sink byte

// mapTemplate maps fd private as a clone's QEMU does, reads page read
// and writes page write (copy on write).
func mapTemplate(t testing.TB, fd int, read, write int) []byte {
	b, err := unix.Mmap(fd, 0, templatePages*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	sink += b[read*page]
	b[write*page] = 0xee
	return b
}

// TestTemplateChargeHelper is the second clone of
// TestTemplateChargeCountsHolderOnce: it maps the memfd it inherits as
// fd 3, says so and waits for stdin to close.
func TestTemplateChargeHelper(t *testing.T) {
	if os.Getenv(childMapEnv) == "" {
		t.Skip("helper process only")
	}
	mapTemplate(t, 3, 0, 3)
	os.Stdout.WriteString(childReadyLine + "\n")
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// TestTemplateChargeCountsHolderOnce: a "holder" writes 24 pages into a
// template memfd and never maps it; two "clones" map it private, each
// reading a page and writing one. PSS alone would count 40 KiB for the
// pair (the 8 pages they map and their 2 written ones; the holder's 16
// other pages nowhere); the charge is the holder's 96 KiB, split between
// the two, plus each clone's written page.
func TestTemplateChargeCountsHolderOnce(t *testing.T) {
	fd, err := unix.MemfdCreate(hold.MemfdName, unix.MFD_CLOEXEC)
	if err != nil {
		t.Skipf("memfd_create: %v", err)
	}
	mem := os.NewFile(uintptr(fd), "template")
	defer mem.Close()
	if err := mem.Truncate(templatePages * page); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, page)
	for i := range data {
		data[i] = 0x5a
	}
	for p := 0; p < 48; p++ {
		if p >= 8 && p < 32 {
			continue
		}
		if _, err := mem.WriteAt(data, int64(p*page)); err != nil {
			t.Fatal(err)
		}
	}
	own := mapTemplate(t, fd, 1, 2)
	defer unix.Munmap(own)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^TestTemplateChargeHelper$")
	child.Env = append(os.Environ(), childMapEnv+"=1")
	child.ExtraFiles = []*os.File{mem}
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); child.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != childReadyLine+"\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	var sum uint64
	for _, pid := range []int{os.Getpid(), child.Process.Pid} {
		b, err := Read(pid, nil)
		if err != nil {
			t.Fatalf("Read(%d): %v", pid, err)
		}
		if want := uint64(writtenPages*page/2+page) / 1024; b.GuestRAMKB != want {
			t.Errorf("process %d: guest RAM %d KiB, want %d (half the holder's %d KiB and its own written page)",
				pid, b.GuestRAMKB, want, writtenPages*page/1024)
		}
		if b.PssKB < b.GuestRAMKB {
			t.Errorf("process %d: PSS %d KiB below its guest RAM %d KiB", pid, b.PssKB, b.GuestRAMKB)
		}
		sum += b.GuestRAMKB
	}
	if want := uint64(writtenPages*page+2*page) / 1024; sum != want {
		t.Errorf("the two clones' guest RAM add up to %d KiB, want %d: the holder's pages once and each clone's own", sum, want)
	}
}
