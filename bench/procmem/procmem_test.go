package procmem

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// smapsSample is an abridged smaps of QEMU running a pod VM under TCG.
const smapsSample = `55ae53513000-55ae5391a000 r--p 00000000 fe:00 10166293                   /usr/bin/qemu-system-x86_64
Size:               4124 kB
KernelPageSize:        4 kB
Rss:                2100 kB
Pss:                2062 kB
VmFlags: rd mr mw me sd
55ae707c1000-55ae711b1000 rw-p 00000000 00:00 0                          [heap]
Size:              10176 kB
Rss:                4600 kB
Pss:                4596 kB
7fd59bfff000-7fd5cbfff000 rw-s 00000000 00:01 4678                       /memfd:memory-backend-memfd (deleted)
Size:             786432 kB
Rss:              200000 kB
Pss:              160438 kB
Anonymous:             0 kB
7fd5cc000000-7fd5cffff000 rwxp 00000000 00:00 0 
Size:              65532 kB
Rss:               65532 kB
Pss:               65532 kB
7fd5d5200000-7fd5d6278000 r--p 00000000 fe:00 9986083                    /opt/podvm/share/podvm/initramfs.cpio
Size:              16864 kB
Rss:               16864 kB
Pss:                8432 kB
7fd5d6400000-7fd5d74d5000 rw-p 00000000 fe:00 9986052                    /opt/podvm/share/podvm/vmlinux
Size:              17236 kB
Rss:               11988 kB
Pss:               11988 kB
Anonymous:           120 kB
7fd5d7000000-7fd5d7001000 ---p 00000000 00:00 0 
Size:                  4 kB
Rss:                   0 kB
Pss:                   0 kB
`

func TestParseSmaps(t *testing.T) {
	maps, err := ParseSmaps(strings.NewReader(smapsSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 7 {
		t.Fatalf("%d mappings, want 7: %+v", len(maps), maps)
	}
	want := Mapping{Start: 0x7fd59bfff000, End: 0x7fd5cbfff000, Perms: "rw-s", Inode: 4678,
		Path: "/memfd:memory-backend-memfd (deleted)", SizeKB: 786432, RssKB: 200000, PssKB: 160438}
	if maps[2] != want {
		t.Errorf("memfd mapping %+v, want %+v", maps[2], want)
	}
	if maps[5].AnonKB != 120 || maps[5].Inode != 9986052 {
		t.Errorf("vmlinux mapping %+v: want 120 KiB anonymous, inode 9986052", maps[5])
	}
	if !maps[3].Anonymous() || maps[3].Perms != "rwxp" || maps[1].Path != "[heap]" {
		t.Errorf("anonymous/heap mappings parsed as %+v %+v", maps[3], maps[1])
	}
}

func TestParseSmapsErrors(t *testing.T) {
	for name, text := range map[string]string{
		"no unit":    "7f00-7f01 rw-p 00000000 00:00 0\nPss: 12\n",
		"not number": "7f00-7f01 rw-p 00000000 00:00 0\nRss: x kB\n",
	} {
		if _, err := ParseSmaps(strings.NewReader(text)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestClassify(t *testing.T) {
	maps, err := ParseSmaps(strings.NewReader(smapsSample))
	if err != nil {
		t.Fatal(err)
	}
	images := []string{"/opt/podvm/share/podvm/vmlinux", "/opt/podvm/share/podvm/initramfs.cpio"}
	for _, tc := range []struct {
		name      string
		images    []string
		want      Breakdown
		wantOther uint64
	}{
		{"with images", images, Breakdown{RssKB: 301084, PssKB: 253048, GuestRAMKB: 160438, JITKB: 65532, ImagesKB: 20420}, 2062 + 4596},
		{"no images named", nil, Breakdown{RssKB: 301084, PssKB: 253048, GuestRAMKB: 160438, JITKB: 65532}, 2062 + 4596 + 8432 + 11988},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(maps, tc.images)
			if got != tc.want {
				t.Errorf("Classify = %+v, want %+v", got, tc.want)
			}
			if got.OtherKB() != tc.wantOther {
				t.Errorf("OtherKB = %d, want %d", got.OtherKB(), tc.wantOther)
			}
		})
	}
}

// TestClassifyTemplateRAM checks that a VM template clone's RAM file,
// mapped private, counts as guest RAM when its directory is named.
func TestClassifyTemplateRAM(t *testing.T) {
	maps := []Mapping{
		{Perms: "rw-p", Path: "/w/templates/abc/ram", PssKB: 3000},
		{Perms: "rw-p", Path: "/w/templates-other/ram", PssKB: 7},
		{Perms: "r--p", Path: "/usr/bin/qemu-system-x86_64", PssKB: 100},
	}
	if got := Classify(maps, nil, "/w/templates/"); got.GuestRAMKB != 3000 || got.PssKB != 3107 {
		t.Errorf("Classify = %+v, want guest RAM 3000 of 3107", got)
	}
	if got := Classify(maps, nil); got.GuestRAMKB != 0 {
		t.Errorf("without guest RAM dirs: %+v", got)
	}
}

// TestClassifyTemplateMemfd: a jailed clone maps the template holder's
// sealed memfd private; its PSS is the clone's guest RAM, while another
// private memfd mapping is not.
func TestClassifyTemplateMemfd(t *testing.T) {
	maps := []Mapping{
		{Perms: "rw-p", Path: "/memfd:podvm-template (deleted)", PssKB: 2500},
		{Perms: "rw-p", Path: "/memfd:something-else (deleted)", PssKB: 11},
		{Perms: "r--p", Path: "/usr/bin/qemu-system-x86_64", PssKB: 100},
	}
	if got := Classify(maps, nil); got.GuestRAMKB != 2500 || got.PssKB != 2611 {
		t.Errorf("Classify = %+v, want guest RAM 2500 of 2611", got)
	}
}

func TestBreakdownAdd(t *testing.T) {
	a := Breakdown{RssKB: 1, PssKB: 2, GuestRAMKB: 3, JITKB: 4, ImagesKB: 5}
	if got := a.Add(a); got != (Breakdown{RssKB: 2, PssKB: 4, GuestRAMKB: 6, JITKB: 8, ImagesKB: 10}) {
		t.Errorf("Add = %+v", got)
	}
}

func TestParsePPid(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want int
		ok   bool
	}{
		{"123 (bash) S 45 123 123 0", 45, true},
		{"7 (a b) c)) R 1 7 7", 1, true},
		{"garbage", 0, false},
		{"9 (x) S", 0, false},
	} {
		got, err := ParsePPid(tc.stat)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePPid(%q) = %d, %v", tc.stat, got, err)
		}
	}
}

func TestDescendants(t *testing.T) {
	procs := []Process{{Pid: 1}, {Pid: 10, PPid: 1}, {Pid: 11, PPid: 10}, {Pid: 12, PPid: 11}, {Pid: 20, PPid: 1}, {Pid: 13, PPid: 10}}
	if got := Descendants(procs, 10); !reflect.DeepEqual(got, []int{11, 12, 13}) {
		t.Errorf("Descendants(10) = %v", got)
	}
	if got := Descendants(procs, 12); got != nil {
		t.Errorf("Descendants(12) = %v", got)
	}
}

// TestReadSelf reads this test process: it has PSS and no memfd.
func TestReadSelf(t *testing.T) {
	b, err := Read(os.Getpid(), nil)
	if err != nil {
		t.Skipf("no smaps here: %v", err)
	}
	if b.PssKB == 0 || b.RssKB < b.PssKB {
		t.Errorf("own breakdown %+v", b)
	}
	if _, ok, err := MemfdAllocatedKB(os.Getpid()); err != nil || ok {
		t.Errorf("MemfdAllocatedKB(self) = %v, %v", ok, err)
	}
	if len(List()) == 0 {
		t.Error("List found no process")
	}
}

func TestParseCPUSeconds(t *testing.T) {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime stime ...
	stat := "4242 (qemu-system-x86) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 566 0 0 20 0 5 0"
	got, err := ParseCPUSeconds(stat)
	if err != nil || got != 18 {
		t.Errorf("ParseCPUSeconds = %v, %v; want 18", got, err)
	}
	for _, bad := range []string{"garbage", "1 (x) S 1 2 3", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 x 1"} {
		if _, err := ParseCPUSeconds(bad); err == nil {
			t.Errorf("ParseCPUSeconds(%q): no error", bad)
		}
	}
	if s, err := CPUSeconds(os.Getpid()); err != nil || s < 0 {
		t.Errorf("CPUSeconds(self) = %v, %v", s, err)
	}
}

func TestThreadCPUSeconds(t *testing.T) {
	// Burn a little CPU so that the process has some to split.
	for end := time.Now().Add(30 * time.Millisecond); time.Now().Before(end); {
	}
	all, err := ThreadCPUSeconds(os.Getpid(), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	whole, err := CPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Live threads only: never more than the process (every thread, the
	// ended ones too), read a moment later.
	if all < 0 || all > whole+0.02 {
		t.Errorf("threads %v s, process %v s", all, whole)
	}
	if none, err := ThreadCPUSeconds(os.Getpid(), func(string) bool { return false }); err != nil || none != 0 {
		t.Errorf("no thread matched: %v s, %v; want 0", none, err)
	}
	for name, want := range map[string]bool{"CPU 0/TCG": true, "CPU 1/KVM": true, "qemu-system-x86": false, "IO mon_iothread": false} {
		if got := IsVCPUThread(name); got != want {
			t.Errorf("IsVCPUThread(%q) = %v", name, got)
		}
	}
}
