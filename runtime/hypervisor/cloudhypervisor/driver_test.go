package cloudhypervisor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/accel"
)

func validConfig(t *testing.T) hypervisor.Config {
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initramfs"} {
		must(t, os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644))
	}
	must(t, os.Mkdir(filepath.Join(dir, "shared"), 0o755))
	return hypervisor.Config{
		ID: "sb", StateDir: filepath.Join(dir, "state"),
		KernelPath: filepath.Join(dir, "vmlinux"), InitrdPath: filepath.Join(dir, "initramfs"),
		VCPUs: 1, MemoryMiB: 256, SharedDir: filepath.Join(dir, "shared"),
	}
}

func tapDevice(t *testing.T, mac string, vnetHdr bool) hypervisor.NetDevice {
	f, err := os.Open("/dev/null")
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return hypervisor.NetDevice{Tap: f, VnetHdr: vnetHdr, MAC: mac, MTU: 1500}
}

func TestCreateValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*hypervisor.Config)
		facts  func() accel.Facts
		opts   Options
		want   string
	}{
		{"missing kernel", func(c *hypervisor.Config) { c.KernelPath = "/nonexistent/vmlinux" }, kvmFacts, Options{},
			"guest kernel /nonexistent/vmlinux: stat /nonexistent/vmlinux: no such file or directory: run `podvm image build`"},
		{"missing initrd", func(c *hypervisor.Config) { c.InitrdPath = "" }, kvmFacts, Options{}, "run `podvm image build`"},
		{"zero vcpus", func(c *hypervisor.Config) { c.VCPUs = 0 }, kvmFacts, Options{}, "vcpus 0: want 1 to 255"},
		{"tiny memory", func(c *hypervisor.Config) { c.MemoryMiB = 16 }, kvmFacts, Options{}, "memory 16 MiB"},
		{"9p", func(c *hypervisor.Config) { c.SharedFS = "9p" }, kvmFacts, Options{}, "Cloud Hypervisor has no virtio-9p device"},
		{"unknown shared fs", func(c *hypervisor.Config) { c.SharedFS = "nfs" }, kvmFacts, Options{}, `shared_fs "nfs"`},
		{"no shared dir", func(c *hypervisor.Config) { c.SharedDir = "/nonexistent" }, kvmFacts, Options{}, "shared directory /nonexistent"},
		{"relative state dir", func(c *hypervisor.Config) { c.StateDir = "state" }, kvmFacts, Options{}, "absolute path"},
		{"long state dir", func(c *hypervisor.Config) { c.StateDir = "/run/" + strings.Repeat("d", 100) }, kvmFacts, Options{}, "too long for unix sockets"},
		{"serial transport", func(c *hypervisor.Config) { c.Transport = contract.TransportSerial }, kvmFacts, Options{},
			`has no named virtio-serial ports; its hybrid vsock needs no /dev/vhost-vsock, so use agent_transport = "vsock"`},
		{"unknown transport", func(c *hypervisor.Config) { c.Transport = "tcp" }, kvmFacts, Options{}, `transport "tcp"`},
		{"bad accelerator", func(c *hypervisor.Config) { c.Accelerator = "hvf" }, kvmFacts, Options{}, `accelerator "hvf"`},
		{"tcg forced by the VM", func(c *hypervisor.Config) { c.Accelerator = hypervisor.AccelTCG }, kvmFacts, Options{},
			`no software emulation; use hypervisor.driver = "qemu"`},
		{"tcg forced by the driver", func(*hypervisor.Config) {}, kvmFacts, Options{Accelerator: "tcg"}, "no software emulation"},
		{"kvm_pvm host", func(*hypervisor.Config) {}, pvmFacts, Options{},
			`needs hardware KVM and this host has none usable (/dev/kvm is kvm_pvm (software), no vmx/svm): use hypervisor.driver = "qemu"`},
		{"no /dev/kvm", func(*hypervisor.Config) {}, func() accel.Facts { return accel.Facts{OpenErr: os.ErrNotExist} }, Options{},
			"cannot open /dev/kvm"},
		{"tap without vnet header", func(c *hypervisor.Config) { c.Net = []hypervisor.NetDevice{tapDevice(t, "02:00:00:00:00:01", false)} },
			kvmFacts, Options{}, "network device 0: the tap was opened without IFF_VNET_HDR"},
		{"no tap", func(c *hypervisor.Config) { c.Net = []hypervisor.NetDevice{{MAC: "02:00:00:00:00:01", VnetHdr: true}} },
			kvmFacts, Options{}, "network device 0: no tap"},
		{"bad MAC", func(c *hypervisor.Config) { c.Net = []hypervisor.NetDevice{tapDevice(t, "zz", true)} }, kvmFacts, Options{}, `MAC "zz"`},
		{"multicast MAC", func(c *hypervisor.Config) { c.Net = []hypervisor.NetDevice{tapDevice(t, "01:00:5e:00:00:01", true)} },
			kvmFacts, Options{}, "multicast"},
		{"missing binary", func(*hypervisor.Config) {}, kvmFacts, Options{Path: "/nonexistent/cloud-hypervisor"},
			"[hypervisor.cloud_hypervisor] path"},
		{"binary is a directory", func(*hypervisor.Config) {}, kvmFacts, Options{Path: "/tmp"}, "not an executable file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig(t)
			tt.mutate(&cfg)
			opts := tt.opts
			if opts.Path == "" {
				opts.Path = "/bin/true"
			}
			_, err := newTestDriver(opts, tt.facts()).Create(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCreateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*hypervisor.Config)
		opts   Options
		reason string
	}{
		{"defaults", func(*hypervisor.Config) {}, Options{}, "/dev/kvm API 12, VM created, kvm_intel, vmx"},
		{"kvm forced", func(c *hypervisor.Config) { c.Accelerator = hypervisor.AccelKVM }, Options{}, "forced by configuration"},
		{"vsock and virtiofs named", func(c *hypervisor.Config) { c.Transport, c.SharedFS = contract.TransportVsock, "virtiofs" }, Options{}, "vmx"},
		{"two NICs", func(c *hypervisor.Config) {
			c.Net = []hypervisor.NetDevice{tapDevice(t, "02:00:00:00:00:01", true), tapDevice(t, "02:00:00:00:00:02", true)}
		}, Options{}, "vmx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig(t)
			tt.mutate(&cfg)
			opts := tt.opts
			opts.Path = "/bin/true"
			vm, err := newTestDriver(opts, kvmFacts()).Create(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := vm.(*VM); got.accel != hypervisor.AccelKVM || !strings.Contains(got.accelWhy, tt.reason) {
				t.Errorf("decision = %s, %q; want kvm with %q", got.accel, got.accelWhy, tt.reason)
			}
		})
	}
}

// The probe creates a KVM VM: once per driver is enough.
func TestAcceleratorProbedOnce(t *testing.T) {
	calls := 0
	d := New(Options{Path: "/bin/true"})
	d.probe = func() accel.Facts { calls++; return kvmFacts() }
	for i := 0; i < 3; i++ {
		if _, err := d.Create(context.Background(), validConfig(t)); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Errorf("probed %d times", calls)
	}
}

func TestUnstartedVM(t *testing.T) {
	vm, err := newTestDriver(Options{Path: "/bin/true"}, kvmFacts()).Create(context.Background(), validConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vm.DialAgent(context.Background()); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("DialAgent before Start: %v", err)
	}
	if err := vm.Resize(context.Background(), 2, 512); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("Resize before Start: %v", err)
	}
	if _, err := vm.(*VM).State(context.Background()); err == nil {
		t.Error("State before Start succeeded")
	}
	for i := 0; i < 2; i++ {
		if err := vm.Stop(context.Background()); err != nil {
			t.Errorf("Stop #%d: %v", i, err)
		}
	}
	select {
	case <-vm.Done():
	default:
		t.Error("Done open after Stop")
	}
	if vm.ExitError() != nil || len(vm.Pids()) != 0 || vm.Info().Driver != "" {
		t.Errorf("ExitError %v, Pids %v, Info %+v", vm.ExitError(), vm.Pids(), vm.Info())
	}
	if err := vm.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "Start called twice or after Stop") {
		t.Errorf("Start after Stop: %v", err)
	}
}

// fakeVersionBinary is a cloud-hypervisor that only knows --version.
func fakeVersionBinary(t *testing.T, output string, code int) string {
	p := filepath.Join(t.TempDir(), "cloud-hypervisor")
	script := "#!/bin/sh\necho '" + output + "'\nexit " + strconv.Itoa(code) + "\n"
	must(t, os.WriteFile(p, []byte(script), 0o755))
	return p
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		version string
		code    int
		facts   func() accel.Facts
		want    map[string]string // check name -> "ok", "optional" or "fail"
	}{
		{"v53 on a KVM host", "cloud-hypervisor v53.0", 0, kvmFacts,
			map[string]string{"cloud-hypervisor version": "ok", "hardware KVM": "ok", "agent channel": "ok", "memfd": "ok"}},
		{"newer release", "cloud-hypervisor v54.1-dirty", 0, kvmFacts,
			map[string]string{"cloud-hypervisor version": "ok"}},
		{"older release", "cloud-hypervisor v41.0", 0, kvmFacts,
			map[string]string{"cloud-hypervisor version": "optional"}},
		{"unrecognized version", "hello", 0, kvmFacts,
			map[string]string{"cloud-hypervisor version": "fail"}},
		{"version fails", "boom", 3, kvmFacts,
			map[string]string{"cloud-hypervisor version": "fail"}},
		{"kvm_pvm host: no fallback", "cloud-hypervisor v53.0", 0, pvmFacts,
			map[string]string{"hardware KVM": "fail"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newTestDriver(Options{Path: fakeVersionBinary(t, tt.version, tt.code)}, tt.facts())
			got := map[string]hypervisor.CheckResult{}
			for _, r := range d.Check(context.Background()) {
				got[r.Name] = r
				if !r.OK && r.Fix == "" {
					t.Errorf("%s failed without a fix: %+v", r.Name, r)
				}
			}
			for name, want := range tt.want {
				r, ok := got[name]
				if !ok {
					t.Errorf("no %q check", name)
					continue
				}
				state := "fail"
				switch {
				case r.OK:
					state = "ok"
				case r.Optional:
					state = "optional"
				}
				if state != want {
					t.Errorf("%s = %s (%+v), want %s", name, state, r, want)
				}
			}
		})
	}
	// A missing binary is one failing check, with the fix.
	d := newTestDriver(Options{Path: "/nonexistent/ch"}, kvmFacts())
	res := d.Check(context.Background())
	if len(res) == 0 || res[0].Name != "cloud-hypervisor binary" || res[0].OK || !strings.Contains(res[0].Fix, "not packaged in Debian bookworm") {
		t.Errorf("missing binary: %+v", res)
	}
}

// On this host (whatever it is) every failing check says what to do; the
// log shows what `podvm check` would print.
func TestCheckThisHost(t *testing.T) {
	for _, r := range New(Options{}).Check(context.Background()) {
		t.Logf("%-24s ok=%-5v optional=%-5v %s %s", r.Name, r.OK, r.Optional, r.Detail, r.Fix)
		if !r.OK && r.Fix == "" {
			t.Errorf("%s failed without a fix", r.Name)
		}
	}
}
