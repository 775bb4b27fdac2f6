package secret

import (
	"bytes"
	"strings"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
)

// Reread takes the clone's secret; the same secret twice is refused and
// the key kept.
func TestKeyReread(t *testing.T) {
	fakeSysfs(t)
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
