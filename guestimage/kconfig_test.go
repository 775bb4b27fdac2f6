package guestimage

import (
	"slices"
	"strings"
	"testing"
)

func TestParseKconfig(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []kconfigOption
		wantErr string
	}{
		{
			name: "fragment forms",
			text: "# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=n\nCONFIG_D=\"-podvm\"\n  CONFIG_E=4\n",
			want: []kconfigOption{
				{"CONFIG_A", "y", 3}, {"CONFIG_B", "n", 4}, {"CONFIG_C", "n", 5},
				{"CONFIG_D", `"-podvm"`, 6}, {"CONFIG_E", "4", 7},
			},
		},
		{name: "garbage", text: "CONFIG_A=y\nFOO=y\n", wantErr: "line 2: not a Kconfig assignment"},
		{name: "duplicate", text: "CONFIG_A=y\n# CONFIG_A is not set\n", wantErr: "line 2: CONFIG_A is already set on line 1"},
		{name: "empty value", text: "CONFIG_A=\n", wantErr: "line 1: CONFIG_A has no value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKconfig([]byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

// sampleConfig is the shape of a real .config: comments, headings, unset
// symbols and values.
const sampleConfig = `#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.192 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc (Debian 12.2.0-14) 12.2.0"
CONFIG_LOCALVERSION="-podvm"
# CONFIG_LOCALVERSION_AUTO is not set
CONFIG_KEYS=y
# CONFIG_BPF_SYSCALL is not set
CONFIG_SERIAL_8250_NR_UARTS=4
CONFIG_SWAP=y

#
# Namespaces
#
CONFIG_USER_NS=y
`

func TestVerifyConfig(t *testing.T) {
	final, err := parseKconfig([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		fragment string
		bad      []string // names of the mismatches, in fragment order
	}{
		{"all kept", "CONFIG_KEYS=y\nCONFIG_USER_NS=y\nCONFIG_LOCALVERSION=\"-podvm\"\n# CONFIG_LOCALVERSION_AUTO is not set\n", nil},
		{"=y dropped to not set", "CONFIG_KEYS=y\nCONFIG_BPF_SYSCALL=y\n", []string{"CONFIG_BPF_SYSCALL"}},
		{"=y absent entirely", "CONFIG_CGROUP_BPF=y\n", []string{"CONFIG_CGROUP_BPF"}},
		{"number changed", "CONFIG_SERIAL_8250_NR_UARTS=1\n", []string{"CONFIG_SERIAL_8250_NR_UARTS"}},
		{"string changed", "CONFIG_LOCALVERSION=\"-other\"\n", []string{"CONFIG_LOCALVERSION"}},
		{"=n selected back on", "CONFIG_SWAP=n\n", []string{"CONFIG_SWAP"}},
		{"=n kept or absent", "CONFIG_BPF_SYSCALL=n\nCONFIG_NOT_THERE=n\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frag, err := parseKconfig([]byte(tt.fragment))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range verifyConfig(frag, final) {
				got = append(got, m.Want.Name)
			}
			if !slices.Equal(got, tt.bad) {
				t.Errorf("mismatches %q, want %q", got, tt.bad)
			}
		})
	}
}

func TestConfigErrorMessage(t *testing.T) {
	e := &configError{
		Fragment:  "guestimage/kernel.fragment",
		DepsKnown: true,
		Mismatches: []configMismatch{
			{Want: kconfigOption{"CONFIG_CGROUP_BPF", "y", 12}, Got: "", Defined: true, Deps: []string{"depends on BPF_SYSCALL"}},
			{Want: kconfigOption{"CONFIG_KEYS", "y", 13}, Got: "n", Defined: true, Deps: []string{}},
			{Want: kconfigOption{"CONFIG_DEVPTS_FS", "y", 14}, Got: ""},
			{Want: kconfigOption{"CONFIG_SWAP", "n", 15}, Got: "y"},
		},
	}
	msg := e.Error()
	for _, want := range []string{
		"Kconfig changed 4 option(s) of guestimage/kernel.fragment",
		"CONFIG_CGROUP_BPF=y (line 12): absent from .config; probably a missing dependency: depends on BPF_SYSCALL",
		"CONFIG_KEYS=y (line 13): is not set; probably a missing dependency (a block in a parent Kconfig file, or a choice); look it up with make menuconfig, /KEYS",
		"CONFIG_DEVPTS_FS=y (line 14): absent from .config; no Kconfig entry defines it in this kernel",
		"CONFIG_SWAP=n (line 15): is y: an enabled option selects it",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	// Without the Kconfig lookup, an absent symbol is not called unknown.
	e.DepsKnown = false
	if strings.Contains(e.Error(), "no Kconfig entry") {
		t.Errorf("claims the symbol is unknown without having looked:\n%s", e.Error())
	}
}

func TestScanKconfigDeps(t *testing.T) {
	const kconfig = `
menuconfig CGROUPS
	bool "Control Group support"

if CGROUPS

menu "BPF things"
	depends on BPF

config CGROUP_BPF
	bool "Support for eBPF programs attached to cgroups"
	depends on BPF_SYSCALL
	select SOCK_CGROUP_DATA
	depends on NET

config MEMCG
	bool "Memory controller"
	select PAGE_COUNTER

endmenu

endif # CGROUPS

config KEYS
	bool "Enable access key retention support"
	help
	  depends on words in help text are not dependencies
`
	deps := map[string][]string{}
	scanKconfigDeps([]byte(kconfig), map[string]bool{"CGROUP_BPF": true, "KEYS": true, "NOPE": true}, deps)
	got := slices.Sorted(slices.Values(deps["CGROUP_BPF"]))
	if want := []string{"depends on BPF_SYSCALL", "depends on NET", "inside `if CGROUPS`", "menu depends on BPF"}; !slices.Equal(got, want) {
		t.Errorf("CGROUP_BPF deps %q, want %q", got, want)
	}
	if got, ok := deps["KEYS"]; !ok || len(got) != 0 {
		t.Errorf("KEYS: %q, %v; want defined with no deps", got, ok)
	}
	if _, ok := deps["NOPE"]; ok {
		t.Error("NOPE is reported as defined")
	}
	if _, ok := deps["MEMCG"]; ok {
		t.Error("MEMCG was not asked for")
	}
}

// TestFragmentHasRequiredOptions pins what the guest needs, so trimming the
// fragment for boot time cannot silently drop something runc or the agent
// relies on.
func TestFragmentHasRequiredOptions(t *testing.T) {
	opts, err := parseKconfig(kernelFragment)
	if err != nil {
		t.Fatalf("kernel.fragment: %v", err)
	}
	got := map[string]string{}
	for _, o := range opts {
		got[o.Name] = o.Value
	}
	required := []string{
		// boot and console
		"PVH", "KVM_GUEST", "PARAVIRT", "BLK_DEV_INITRD", "SERIAL_8250", "SERIAL_8250_CONSOLE", "PRINTK", "ACPI",
		// virtio and agent channels
		"VIRTIO_MMIO", "VIRTIO_PCI", "VIRTIO_CONSOLE", "VSOCKETS", "VIRTIO_VSOCKETS", "HW_RANDOM_VIRTIO", "VIRTIO_NET", "VIRTIO_BLK",
		// filesystems
		"FUSE_FS", "VIRTIO_FS", "NET_9P", "NET_9P_VIRTIO", "9P_FS", "OVERLAY_FS", "DEVTMPFS", "TMPFS", "PROC_FS", "PROC_SYSCTL", "SYSFS",
		// cgroup v2 controllers
		"CGROUPS", "MEMCG", "CGROUP_PIDS", "CGROUP_SCHED", "FAIR_GROUP_SCHED", "CFS_BANDWIDTH", "CPUSETS", "BLK_CGROUP",
		"CGROUP_FREEZER", "CGROUP_DEVICE", "CGROUP_HUGETLB", "BPF_SYSCALL", "CGROUP_BPF",
		// namespaces, seccomp, keys
		"NAMESPACES", "UTS_NS", "IPC_NS", "PID_NS", "NET_NS", "USER_NS", "SECCOMP", "SECCOMP_FILTER", "KEYS", "MULTIUSER",
		// process API
		"POSIX_MQUEUE", "UNIX98_PTYS", "EPOLL", "SIGNALFD", "TIMERFD", "EVENTFD", "FUTEX", "AIO", "FHANDLE", "FILE_LOCKING", "INOTIFY_USER",
		// networking
		"NET", "INET", "IPV6", "UNIX", "PACKET", "VETH", "TUN", "BRIDGE",
		"MAGIC_SYSRQ",
	}
	for _, name := range required {
		if v := got["CONFIG_"+name]; v != "y" {
			t.Errorf("CONFIG_%s is %q in kernel.fragment, want y", name, v)
		}
	}
	for _, name := range []string{"MODULES", "PANIC_ON_OOPS"} {
		if v, ok := got["CONFIG_"+name]; ok && v != "n" {
			t.Errorf("CONFIG_%s=%s: the guest kernel must not have it", name, v)
		}
	}
	if got["CONFIG_LOCALVERSION"] != `"-podvm"` {
		t.Errorf("CONFIG_LOCALVERSION = %s, want \"-podvm\"", got["CONFIG_LOCALVERSION"])
	}
}
