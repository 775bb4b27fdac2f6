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

// A template boots with RAM in its file, shared; a clone maps the same
// file private and waits to be given its state (over QMP).
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
	l = launch{MemPath: "/tpl/ram", MemPrivate: true, IncomingFD: 8}
	l.MemoryMiB = 256
	clone := qemuArgs(l)
	if !slices.Contains(clone, "memory-backend-file,id=mem,size=256M,mem-path=/tpl/ram,share=off") {
		t.Errorf("clone does not map the RAM file private: %q", clone)
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
	for _, bad := range []hypervisor.Config{
		{Net: []hypervisor.NetDevice{{}}},
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
