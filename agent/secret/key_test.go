package secret

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
)

// Reread binds the unbound fw_cfg device, takes the clone's secret and
// unbinds again; the same secret twice is refused and the key kept.
func TestKeyReread(t *testing.T) {
	root := fakeSysfs(t)
	old := PlatformDevicesDir
	PlatformDevicesDir = filepath.Join(root, "devices")
	t.Cleanup(func() { PlatformDevicesDir = old })
	if err := os.MkdirAll(filepath.Join(PlatformDevicesDir, "QEMU0002:00"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(PlatformDevicesDir, "serial8250", "x"), nil) // not fw_cfg: left alone
	if err := os.MkdirAll(FwCfgDriverDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tpl := bytes.Repeat([]byte{1}, contract.SecretSize)
	clone := bytes.Repeat([]byte{2}, contract.SecretSize)
	key, err := NewKey(tpl)
	if err != nil {
		t.Fatal(err)
	}
	write(t, FwCfgPath, clone)
	if err := key.Reread(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key.Bytes(), clone) {
		t.Errorf("key = %x, want the clone's %x", key.Bytes(), clone)
	}
	if bound, err := os.ReadFile(filepath.Join(FwCfgDriverDir, "bind")); err != nil || string(bound) != "QEMU0002:00" {
		t.Errorf("bind got %q (%v), want QEMU0002:00", bound, err)
	}
	if err := key.Reread(); err == nil || !strings.Contains(err.Error(), "same secret") {
		t.Errorf("Reread of an unchanged secret: %v", err)
	}
	if !bytes.Equal(key.Bytes(), clone) {
		t.Errorf("a refused Reread changed the key")
	}
}

func TestNewKeyRejectsShortSecret(t *testing.T) {
	if _, err := NewKey(make([]byte, 8)); err == nil {
		t.Error("NewKey accepted 8 bytes")
	}
}
