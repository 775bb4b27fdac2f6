package qemu

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
)

// A template boots with RAM in its file, shared; a clone maps the held
// copy (a memfd it inherits) private, reaches its share only through the
// 9p proxy helper, and waits to be given its state (over QMP).
func TestTemplateArgs(t *testing.T) {
	l := launch{MemPath: "/tpl/ram"}
	l.MemoryMiB = 256
	save := strings.Join(qemuArgs(l), " ")
	for _, want := range []string{
		"memory-backend-file,id=mem,size=256M,mem-path=/tpl/ram,share=on",
	} {
		if !strings.Contains(save, want) {
			t.Errorf("template command line lacks %q: %s", want, save)
		}
	}
	if strings.Contains(save, "-incoming") || strings.Contains(save, "memory-backend-memfd") {
		t.Errorf("template command line: %s", save)
	}
	l = launch{MemPath: "/proc/self/fd/9", MemPrivate: true, IncomingFD: 8, Proxy9p: true, Proxy9pFD: 10,
		SharedFS: contract.SharedFS9p, SharedDir: "/pod/share"}
	l.MemoryMiB = 256
	clone := qemuArgs(l)
	if !slices.Contains(clone, "memory-backend-file,id=mem,size=256M,mem-path=/proc/self/fd/9,share=off") {
		t.Errorf("clone does not map the held RAM private: %q", clone)
	}
	if !slices.Contains(clone, "proxy,id=fs9p,sock_fd=10") || strings.Contains(strings.Join(clone, " "), "/pod/share") {
		t.Errorf("clone does not share through the 9p proxy helper: %q", clone)
	}
	if i := slices.Index(clone, "-incoming"); i < 0 || clone[i+1] != "defer" {
		t.Errorf("clone does not wait for its state: %q", clone)
	}
	l = launch{}
	l.MemoryMiB = 256
	if args := strings.Join(qemuArgs(l), " "); strings.Contains(args, "-incoming") || !strings.Contains(args, "memory-backend-memfd") {
		t.Errorf("a booted VM changed: %s", args)
	}
}

// What a template cannot carry is refused with the way out; what it
// chooses for itself (serial, 9p) is filled in.
func TestTemplateLaunch(t *testing.T) {
	cfg, err := templateLaunch(hypervisor.Config{})
	if err != nil || cfg.Transport != contract.TransportSerial || cfg.SharedFS != contract.SharedFS9p {
		t.Errorf("templateLaunch({}) = %+v, %v", cfg, err)
	}
	if _, err := templateLaunch(hypervisor.Config{Net: []hypervisor.NetDevice{{}}}); err != nil {
		t.Errorf("templateLaunch with one NIC: %v", err)
	}
	for _, bad := range []hypervisor.Config{
		{Net: []hypervisor.NetDevice{{}, {}}},
		{Transport: contract.TransportVsock},
		{SharedFS: contract.SharedFSVirtiofs},
	} {
		if _, err := templateLaunch(bad); err == nil {
			t.Errorf("templateLaunch(%+v) accepted", bad)
		}
	}
}

// A clone of a missing or partial template fails in Create, naming it.
func TestCreateCloneOfMissingTemplate(t *testing.T) {
	dir := t.TempDir()
	cfg := hypervisor.Config{ID: "c", StateDir: filepath.Join(dir, "state"), KernelPath: "/k", InitrdPath: "/i",
		VCPUs: 1, MemoryMiB: 256, SharedDir: dir, Template: filepath.Join(dir, "tpl")}
	if _, err := New(Options{QEMUPath: "/bin/true"}).Create(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "save one first") {
		t.Errorf("Create with a missing template: %v", err)
	}
	must(t, os.Mkdir(cfg.Template, 0o700))
	must(t, os.WriteFile(filepath.Join(cfg.Template, templateMetaName), []byte(`{"vcpus":1}`), 0o400))
	must(t, os.WriteFile(filepath.Join(cfg.Template, templateSecretName), make([]byte, contract.SecretSize), 0o400))
	if _, err := New(Options{QEMUPath: "/bin/true"}).Create(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("Create with a template lacking RAM and state: %v", err)
	}
}

// A template's NIC has a hub port for backend and the template's MAC; a
// clone's is the pod's tap, or a hub port again for a pod without network,
// and its guest keeps the template's MAC (Info.NICMACs).
func TestTemplateNIC(t *testing.T) {
	save := &templateRole{dir: "/tpl", save: true}
	var l launch
	var info hypervisor.Info
	save.apply(&l, &info)
	args := strings.Join(qemuArgs(l), " ")
	if !strings.Contains(args, "-netdev hubport,id=net0,hubid=0 -device virtio-net-device,netdev=net0,mac="+templateNICMAC) {
		t.Errorf("template NIC: %s", args)
	}
	if metaOf(l).NICMAC != templateNICMAC || !slices.Equal(info.NICMACs, []string{templateNICMAC}) {
		t.Errorf("template meta %+v, info %v", metaOf(l), info.NICMACs)
	}
	clone := &templateRole{dir: "/tpl", meta: templateMeta{NICMAC: "02:00:00:00:00:09"}}
	l, info = launch{Net: []netLaunch{{FD: 5, MAC: "0a:58:0a:d5:00:05"}}}, hypervisor.Info{}
	clone.apply(&l, &info)
	args = strings.Join(qemuArgs(l), " ")
	if !strings.Contains(args, "-netdev tap,id=net0,fd=5 -device virtio-net-device,netdev=net0,mac=0a:58:0a:d5:00:05") {
		t.Errorf("clone with a pod tap: %s", args)
	}
	if !slices.Equal(info.NICMACs, []string{"02:00:00:00:00:09"}) {
		t.Errorf("clone's guest NIC MACs %v, want the template's", info.NICMACs)
	}
	l = launch{}
	clone.apply(&l, &info)
	if args := strings.Join(qemuArgs(l), " "); !strings.Contains(args, "-netdev hubport,id=net0,hubid=0") {
		t.Errorf("clone without a pod network: %s", args)
	}
}

// The template key follows the guest image, the size and the kernel
// parameters, and nothing else of the pod.
func TestTemplateKey(t *testing.T) {
	dir := t.TempDir()
	kernel, initrd := filepath.Join(dir, "vmlinux"), filepath.Join(dir, "initrd")
	must(t, os.WriteFile(kernel, []byte("k"), 0o644))
	must(t, os.WriteFile(initrd, []byte("i"), 0o644))
	d := New(Options{QEMUPath: "/bin/true", Accelerator: hypervisor.AccelTCG})
	base := hypervisor.Config{ID: "a", StateDir: "/s/a", KernelPath: kernel, InitrdPath: initrd, VCPUs: 1, MemoryMiB: 256, SharedDir: "/s/a/share"}
	key := func(cfg hypervisor.Config) string {
		t.Helper()
		k, err := d.TemplateKey(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := key(base)
	other := base
	other.ID, other.StateDir, other.SharedDir = "b", "/s/b", "/s/b/share"
	if key(other) != k0 || len(k0) != 16 {
		t.Errorf("key %q depends on the pod's id or dirs", k0)
	}
	bigger := base
	bigger.MemoryMiB = 512
	params := base
	params.KernelParams = []string{"x=1"}
	for name, cfg := range map[string]hypervisor.Config{"memory": bigger, "kernel params": params} {
		if key(cfg) == k0 {
			t.Errorf("key does not change with the %s", name)
		}
	}
	must(t, os.WriteFile(initrd, []byte("rebuilt"), 0o644))
	if key(base) == k0 {
		t.Error("key does not change with a rebuilt initramfs")
	}
}
