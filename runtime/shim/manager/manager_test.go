package manager

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"

	"github.com/podvm/podvm/runtime/config"
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
	if e := f.Linux.MountExtensions.IDMap.Enabled; e == nil || !*e {
		t.Error("idmapped mounts must be reported as the guest runc has them: the shim idmaps on the host")
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

// TestInfoAcceptsRuncOptions: containerd 2.4 passes runc's options (the
// stdio owner) to `shim -info` for a user namespace container of a handler
// without options; they are read and ignored, not an error.
func TestInfoAcceptsRuncOptions(t *testing.T) {
	t.Setenv(config.EnvPath, filepath.Join(t.TempDir(), "absent.toml"))
	for _, tc := range []struct {
		name string
		opts proto.Message
	}{
		{"runc options", &runcoptions.Options{IoUid: 1000, IoGid: 1000}},
		{"no options", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in []byte
			if tc.opts != nil {
				a, err := typeurl.MarshalAnyToProto(tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				if in, err = proto.Marshal(a); err != nil {
					t.Fatal(err)
				}
			}
			_, err := manager{name: "io.containerd.podvm.v2"}.Info(context.Background(), bytes.NewReader(in))
			// The named config file is absent: the error must be about
			// it, not about the options.
			if err == nil || !strings.Contains(err.Error(), "absent.toml") {
				t.Fatalf("Info: %v; want only the missing config reported", err)
			}
		})
	}
}
