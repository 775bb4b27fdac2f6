package manager

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGuestFeatures(t *testing.T) {
	dir := t.TempDir()
	if f, err := guestFeatures(filepath.Join(dir, "absent.json")); f != nil || err != nil {
		t.Fatalf("absent file: got %v, %v; want no features and no error", f, err)
	}
	p := filepath.Join(dir, "features.json")
	doc := `{"ociVersionMin":"1.0.0","mountOptions":["ro","rro"],
		"linux":{"namespaces":["user","pid"],"mountExtensions":{"idmap":{"enabled":true}}}}`
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := guestFeatures(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.MountOptions) != 2 || f.MountOptions[1] != "rro" {
		t.Errorf("mount options %v: the guest runc's list must pass through", f.MountOptions)
	}
	if e := f.Linux.MountExtensions.IDMap.Enabled; e == nil || *e {
		t.Error("idmapped mounts must be reported off: virtio-fs on the guest kernel cannot idmap")
	}
	if err := os.WriteFile(p, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := guestFeatures(p); err == nil {
		t.Error("a corrupt features file must be an error naming it")
	}
}
