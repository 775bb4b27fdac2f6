package manager

import (
	"context"
	"net"
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

// TestRemoveStaleSocket: `shim delete` removes the socket of a shim that
// was killed (nothing listens on it), and leaves a live one's.
func TestRemoveStaleSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "pvsock") // short: sun_path
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bundle := t.TempDir()
	write := func(sock string) {
		os.WriteFile(filepath.Join(bundle, "bootstrap.json"), []byte(`{"version":3,"address":"unix://`+sock+`","protocol":"ttrpc"}`), 0o644)
	}

	stale := filepath.Join(dir, "stale")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // a socket file nobody listens on: its shim was killed
	write(stale)
	removeStaleSocket(context.Background(), bundle)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the dead shim's socket is still there: %v", err)
	}

	live := filepath.Join(dir, "live")
	l, err = net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	write(live)
	removeStaleSocket(context.Background(), bundle)
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a live shim's socket was removed: %v", err)
	}
}
