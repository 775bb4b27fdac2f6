package secret

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
)

// fakeSysfs points the package at an empty temporary sysfs.
func fakeSysfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	old := [3]string{FwCfgPath, DMIEntriesDir, FwCfgDriverDir}
	FwCfgPath = filepath.Join(root, "fw_cfg", "raw")
	DMIEntriesDir = filepath.Join(root, "dmi")
	FwCfgDriverDir = filepath.Join(root, "driver")
	t.Cleanup(func() { FwCfgPath, DMIEntriesDir, FwCfgDriverDir = old[0], old[1], old[2] })
	return root
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o400); err != nil {
		t.Fatal(err)
	}
}

// smbios11 builds a type 11 structure as the kernel shows it.
func smbios11(strs ...string) []byte {
	b := []byte{11, 5, 0x00, 0x01, byte(len(strs))}
	for _, s := range strs {
		b = append(append(b, s...), 0)
	}
	return append(b, 0)
}

func TestReadFwCfg(t *testing.T) {
	fakeSysfs(t)
	want, _ := contract.NewSecret()
	write(t, FwCfgPath, want)
	got, from, err := Read()
	if err != nil || !bytes.Equal(got, want) || from != "fw_cfg "+contract.FwCfgSecretName {
		t.Fatalf("Read = %x, %q, %v", got, from, err)
	}
	write(t, FwCfgPath, want[:20])
	if _, _, err := Read(); err == nil {
		t.Fatal("a 20-byte fw_cfg secret was accepted")
	}
}

func TestReadOEMString(t *testing.T) {
	fakeSysfs(t)
	if _, _, err := Read(); !errors.Is(err, ErrNone) {
		t.Fatalf("no secret: err = %v, want ErrNone", err)
	}
	want, _ := contract.NewSecret()
	write(t, filepath.Join(DMIEntriesDir, "1-0", "raw"), []byte{1, 4, 0, 0, 0, 0})
	write(t, filepath.Join(DMIEntriesDir, "11-0", "raw"), smbios11("vendor thing", contract.OEMStringPrefix+"zz"))
	write(t, filepath.Join(DMIEntriesDir, "11-1", "raw"), smbios11("x", contract.OEMString(want)))
	got, from, err := Read()
	if err != nil || !bytes.Equal(got, want) || from != "SMBIOS OEM string" {
		t.Fatalf("Read = %x, %q, %v", got, from, err)
	}
}

func TestOEMStringsMalformed(t *testing.T) {
	for _, raw := range [][]byte{nil, {11}, {11, 200, 0}} {
		if s := oemStrings(raw); s != nil {
			t.Errorf("oemStrings(%v) = %q", raw, s)
		}
	}
	if s := oemStrings(append(smbios11("a", "b"), "after the end\x00"...)); len(s) != 2 {
		t.Errorf("strings past the terminator were read: %q", s)
	}
}

func TestForgetUnbindsDevices(t *testing.T) {
	fakeSysfs(t)
	if err := Forget(); err != nil {
		t.Fatalf("no driver: %v", err)
	}
	write(t, filepath.Join(FwCfgDriverDir, "unbind"), nil)
	write(t, filepath.Join(FwCfgDriverDir, "uevent"), nil)
	if err := os.Symlink("/nowhere", filepath.Join(FwCfgDriverDir, "QEMU0002:00")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(FwCfgDriverDir, "unbind"), 0o600)
	if err := Forget(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(FwCfgDriverDir, "unbind"))
	if string(got) != "QEMU0002:00" {
		t.Fatalf("unbind got %q", got)
	}
}

func TestFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	want, _ := contract.NewSecret()
	write(t, path, want)
	if got, err := FromFile(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("FromFile = %x, %v", got, err)
	}
	short := filepath.Join(t.TempDir(), "short")
	write(t, short, want[:4])
	if _, err := FromFile(short); err == nil {
		t.Fatal("a 4-byte secret was accepted")
	}
	if _, err := FromFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file gave a secret")
	}
}
