package benchhost

import (
	"reflect"
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
	for _, mode := range DefaultFactoryModes {
		out, err := withFactory(installed, mode, "/w/templates")
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
			if want.Hypervisor.AgentTransport == "vsock" {
				want.Hypervisor.AgentTransport = "serial"
			}
		}
		if !reflect.DeepEqual(*cfg, want) {
			t.Errorf("%s: got\n%+v\nwant\n%+v", mode, *cfg, want)
		}
	}
	if _, err := withFactory([]byte("not toml ["), config.FactoryTemplate, "/t"); err == nil {
		t.Error("no error for a broken config")
	}
}

func TestFactoryModes(t *testing.T) {
	for _, ok := range [][]string{{"none", "template"}, {"template"}, {"none"}} {
		if err := checkFactoryModes(ok); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][]string{nil, {"cache"}, {"none", "none"}, {"templates"}} {
		if err := checkFactoryModes(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	for handler, mode := range map[string]string{"podvm": "none", "podvm-template": "template", "runc": "", "runsc": ""} {
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
