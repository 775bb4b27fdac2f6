package cloudhypervisor

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
)

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLaunch is a plain VM: 1 vCPU, 256 MiB, no hot-plug room, no NIC.
func testLaunch(dir string) launch {
	return launch{
		Guest: vmm.Guest{ID: "sb", StateDir: dir, Kernel: "/k/vmlinux", Initrd: "/k/initramfs.cpio",
			Cmdline: "console=ttyS0", VCPUs: 1, MemoryMiB: 256},
		MaxVCPUs: 1, Seccomp: true,
		Secret: []byte(strings.Repeat("\x5a", contract.SecretSize)),
	}
}

func TestVMMArgs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*launch)
		want   []string
	}{
		{"default", func(*launch) {},
			[]string{"--api-socket", "path=/s/api.sock", "--event-monitor", "fd=3", "-v"}},
		{"debug", func(l *launch) { l.Debug = true },
			[]string{"--api-socket", "path=/s/api.sock", "--event-monitor", "fd=3", "-vv"}},
		{"no seccomp", func(l *launch) { l.Seccomp = false },
			[]string{"--api-socket", "path=/s/api.sock", "--event-monitor", "fd=3", "--seccomp", "false", "-v"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLaunch("/s")
			tt.mutate(&l)
			if got := vmmArgs(l); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("vmmArgs =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

// Every VmConfig the driver can build passes the v53.0 schema (strict), and
// carries what the design needs: shared memory, the share, hybrid vsock,
// the console file.
func TestVMConfigMatchesSchema(t *testing.T) {
	spec := loadSpec(t)
	tests := []struct {
		name   string
		mutate func(*launch)
		check  func(t *testing.T, c vmConfig)
	}{
		{"minimal", func(*launch) {}, func(t *testing.T, c vmConfig) {
			if c.Cpus != (cpusConfig{BootVCPUs: 1, MaxVCPUs: 1}) {
				t.Errorf("cpus = %+v", c.Cpus)
			}
			if c.Memory != (memoryConfig{Size: 256 << 20, Shared: true}) {
				t.Errorf("memory = %+v", c.Memory)
			}
		}},
		{"hot-plug room", func(l *launch) { l.VCPUs, l.MaxVCPUs, l.MemoryMiB, l.HotplugMiB = 2, 8, 512, 1024 },
			func(t *testing.T, c vmConfig) {
				if c.Cpus != (cpusConfig{BootVCPUs: 2, MaxVCPUs: 8}) {
					t.Errorf("cpus = %+v", c.Cpus)
				}
				if c.Memory.Size != 512<<20 || c.Memory.HotplugSize != 1024<<20 || !c.Memory.Shared {
					t.Errorf("memory = %+v", c.Memory)
				}
			}},
		{"max below boot is no hot-plug", func(l *launch) { l.VCPUs, l.MaxVCPUs = 4, 2 }, func(t *testing.T, c vmConfig) {
			if c.Cpus.MaxVCPUs != 4 {
				t.Errorf("max_vcpus = %d, want 4", c.Cpus.MaxVCPUs)
			}
		}},
		{"files in the state dir", func(*launch) {}, func(t *testing.T, c vmConfig) {
			want := []fsConfig{{Tag: contract.SharedFSTag, Socket: "/run/podvm/sb/virtiofsd.sock", NumQueues: 1, QueueSize: 1024, ID: "podvm-fs"}}
			if !reflect.DeepEqual(c.Fs, want) {
				t.Errorf("fs = %+v", c.Fs)
			}
			if c.Vsock == nil || *c.Vsock != (vsockConfig{CID: 3, Socket: "/run/podvm/sb/vsock.sock", ID: "podvm-vsock"}) {
				t.Errorf("vsock = %+v", c.Vsock)
			}
			if c.Serial == nil || *c.Serial != (consoleConfig{Mode: "File", File: "/proc/self/fd/4"}) {
				t.Errorf("serial = %+v", c.Serial)
			}
			if c.Console == nil || c.Console.Mode != "Off" {
				t.Errorf("console = %+v", c.Console)
			}
			if c.Payload != (payloadConfig{Kernel: "/k/vmlinux", Initramfs: "/k/initramfs.cpio", Cmdline: "console=ttyS0"}) {
				t.Errorf("payload = %+v", c.Payload)
			}
			// The agent secret, as the guest's SMBIOS OEM string.
			if c.Platform == nil || len(c.Platform.OEMStrings) != 1 ||
				c.Platform.OEMStrings[0] != contract.OEMStringPrefix+strings.Repeat("5a", contract.SecretSize) {
				t.Errorf("platform = %+v", c.Platform)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLaunch("/run/podvm/sb")
			tt.mutate(&l)
			c := vmConfigFor(l)
			if err := spec.validateBody(t, http.MethodPut, "vm.create", mustMarshal(t, c)); err != nil {
				t.Errorf("schema: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestNetConfigMatchesSchema(t *testing.T) {
	spec := loadSpec(t)
	for i, mac := range []string{"02:42:ac:11:00:02", "0a:58:0a:f4:00:07"} {
		n := netConfigFor(i, netLaunch{MAC: mac})
		body := mustMarshal(t, n)
		if err := spec.validateBody(t, http.MethodPut, "vm.add-net", body); err != nil {
			t.Errorf("schema: %v", err)
		}
		// Taps come as fds; a name, address or MTU would make the VMM
		// configure an interface in its own network namespace.
		for _, field := range []string{`"tap"`, `"ip"`, `"mask"`, `"mtu"`, `"fds"`} {
			if strings.Contains(string(body), field) {
				t.Errorf("vm.add-net body %s has %s", body, field)
			}
		}
		if n.MAC != mac || n.NumQueues != 2 {
			t.Errorf("netConfig = %+v", n)
		}
	}
}

func TestKernelCmdline(t *testing.T) {
	tests := []struct {
		name   string
		debug  bool
		extra  []string
		want   string
		errSub string
	}{
		{"quiet", false, nil, "console=ttyS0 reboot=k panic=-1 printk.devkmsg=on quiet loglevel=4", ""},
		{"debug", true, nil, "console=ttyS0 reboot=k panic=-1 printk.devkmsg=on loglevel=8", ""},
		{"extra params last, so they override", false, []string{"loglevel=7", "podvm.x=1"},
			"console=ttyS0 reboot=k panic=-1 printk.devkmsg=on quiet loglevel=4 loglevel=7 podvm.x=1", ""},
		{"too long", false, []string{strings.Repeat("x", 2100)}, "", "the limit is 2047"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := kernelCmdline(tt.debug, tt.extra)
			if tt.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSub) {
					t.Errorf("err = %v, want %q", err, tt.errSub)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("kernelCmdline = %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
}

// resizeRequest only sends what changes and refuses what the VM has no
// room for, before asking the VMM; its bodies pass the schema.
func TestResizeRequest(t *testing.T) {
	spec := loadSpec(t)
	l := testLaunch("/s")
	l.VCPUs, l.MaxVCPUs, l.MemoryMiB, l.HotplugMiB = 1, 4, 256, 512
	cur := hypervisor.Info{VCPUs: 1, MemoryMiB: 256}
	u32 := func(v uint32) *uint32 { return &v }
	i64 := func(v int64) *int64 { return &v }
	tests := []struct {
		name          string
		vcpus, memMiB uint32
		want          vmResize
		errSub        string
		notSupported  bool
	}{
		{"nothing changes", 1, 256, vmResize{}, "", false},
		{"vcpus only", 3, 256, vmResize{DesiredVCPUs: u32(3)}, "", false},
		{"memory only", 1, 768, vmResize{DesiredRAM: i64(768 << 20)}, "", false},
		{"both", 4, 512, vmResize{DesiredVCPUs: u32(4), DesiredRAM: i64(512 << 20)}, "", false},
		{"beyond max vcpus", 5, 256, vmResize{}, "room for 4 vCPUs", true},
		{"zero vcpus", 0, 256, vmResize{}, "at least 1 vCPU", false},
		{"beyond hot-plug memory", 1, 1024, vmResize{}, "room for 768 MiB", true},
		{"below boot memory", 1, 128, vmResize{}, "cannot shrink below the 256 MiB", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resizeRequest(l, cur, tt.vcpus, tt.memMiB)
			if tt.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSub) {
					t.Fatalf("err = %v, want %q", err, tt.errSub)
				}
				if got := errorsIsNotSupported(err); got != tt.notSupported {
					t.Errorf("errors.Is(err, ErrNotSupported) = %v, want %v", got, tt.notSupported)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("resizeRequest = %s, want %s", mustMarshal(t, got), mustMarshal(t, tt.want))
			}
			if got.DesiredVCPUs != nil || got.DesiredRAM != nil {
				if err := spec.validateBody(t, http.MethodPut, "vm.resize", mustMarshal(t, got)); err != nil {
					t.Errorf("schema: %v", err)
				}
			}
		})
	}
}

func errorsIsNotSupported(err error) bool { return errors.Is(err, hypervisor.ErrNotSupported) }
