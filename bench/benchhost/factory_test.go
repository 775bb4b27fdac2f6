package benchhost

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/podvm/podvm/runtime/config"
)

// TestWithFactory checks that each mode's configuration differs from the
// installed one only in what the mode needs.
func TestWithFactory(t *testing.T) {
	installed, err := config.WithStateDir(config.DefaultTOML(), StateDir)
	if err != nil {
		t.Fatal(err)
	}
	def, _ := config.Parse(installed, "default")
	for _, mode := range AllFactoryModes {
		out, err := withFactory(installed, mode, "/w/templates", 7)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		cfg, err := config.Parse(out, mode)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		want := *def
		want.Factory.Mode = mode
		if mode == config.FactoryTemplate {
			want.Factory.TemplateDir = "/w/templates"
			want.Hypervisor.SharedFS = "9p"
		}
		if mode == config.FactoryCache {
			want.Factory.CacheSize = 7
		}
		if mode != config.FactoryNone && want.Hypervisor.AgentTransport == "vsock" {
			want.Hypervisor.AgentTransport = "serial"
		}
		if !reflect.DeepEqual(*cfg, want) {
			t.Errorf("%s: got\n%+v\nwant\n%+v", mode, *cfg, want)
		}
	}
	if _, err := withFactory([]byte("not toml ["), config.FactoryTemplate, "/t", 0); err == nil {
		t.Error("no error for a broken config")
	}
}

func TestFactoryModes(t *testing.T) {
	for _, ok := range [][]string{{"none", "template"}, {"template"}, {"none"}, {"none", "template", "cache"}, {"cache"}} {
		if err := checkFactoryModes(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][]string{nil, {"none", "none"}, {"templates"}, {"cache", "none", "cache"}} {
		if err := checkFactoryModes(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	for handler, mode := range map[string]string{"podvm": "none", "podvm-template": "template", "podvm-cache": "cache", "runc": "", "runsc": ""} {
		if got := FactoryMode(handler); got != mode {
			t.Errorf("FactoryMode(%s) = %q, want %q", handler, got, mode)
		}
		if IsPodvm(handler) != (mode != "") {
			t.Errorf("IsPodvm(%s) = %v", handler, IsPodvm(handler))
		}
		if mode != "" && PodvmHandler(mode) != handler {
			t.Errorf("PodvmHandler(%s) = %q", mode, PodvmHandler(mode))
		}
	}
}

// TestPoolLeftovers: an empty retired area is no leftover, a VM's
// directory is; an empty pool is removed.
func TestPoolLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	if err := os.MkdirAll(filepath.Join(dir, "retired"), 0o700); err != nil {
		t.Fatal(err)
	}
	if left := poolLeftovers(dir); len(left) != 0 {
		t.Errorf("an empty pool: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the empty pool was not removed: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "retired", "0123456789abcdef"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "fedcba9876543210"), 0o700); err != nil {
		t.Fatal(err)
	}
	if left := poolLeftovers(dir); len(left) != 1 || !strings.Contains(left[0], "fedcba9876543210, retired") {
		t.Errorf("a pool with a VM and a retired one: %v", left)
	}
}
