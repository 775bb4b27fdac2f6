package drivers

import (
	"strings"
	"testing"

	"github.com/podvm/podvm/runtime/config"
	"github.com/podvm/podvm/runtime/hypervisor/cloudhypervisor"
)

func TestNewChoosesTheConfiguredDriver(t *testing.T) {
	for _, name := range []string{"qemu", cloudhypervisor.Name} {
		cfg := config.Default()
		cfg.Hypervisor.Driver = name
		d, err := New(cfg)
		if err != nil {
			t.Fatalf("driver %s: %v", name, err)
		}
		if d.Name() != name {
			t.Errorf("driver %s: got %s", name, d.Name())
		}
	}
	cfg := config.Default()
	cfg.Hypervisor.Driver = "firecracker"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "unknown driver") {
		t.Errorf("unknown driver: %v", err)
	}
}
