package integration

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// BusyboxImageName is the reference ImportBusybox gives the image.
const BusyboxImageName = "localhost/podvm-test/busybox:latest"

// busyboxApplets are linked to /bin/busybox in the image.
var busyboxApplets = []string{
	"sh", "cat", "echo", "sleep", "uname", "true", "false", "ls", "id", "env", "ps",
	"mount", "grep", "head", "tail", "wc", "dd", "yes", "hostname", "kill", "date", "stat",
}

// WriteBusyboxImage writes an OCI image archive (for `ctr images import`)
// of a single layer: busybox-static and its applet links. Nothing is pulled.
func WriteBusyboxImage(busybox, dst string) error {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return fmt.Errorf("read %s: %w", busybox, err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	epoch := time.Unix(0, 0)
	dirs := []string{"bin", "dev", "etc", "proc", "sys", "tmp", "root"}
	sort.Strings(dirs)
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: mode, ModTime: epoch})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin)), ModTime: epoch})
	tw.Write(bin)
	for _, a := range busyboxApplets {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: epoch})
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
	tw.WriteHeader(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(passwd)), ModTime: epoch})
	tw.Write(passwd)
	if err := tw.Close(); err != nil {
		return err
	}

	blobs := map[string][]byte{}
	add := func(b []byte) (string, int) {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[hex.EncodeToString(sum[:])] = b
		return d, len(b)
	}
	layerDigest, layerSize := add(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	configDigest, configSize := add(config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configSize},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	})
	manifestDigest, manifestSize := add(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest, "size": manifestSize,
			"platform":    map[string]string{"architecture": "amd64", "os": "linux"},
			"annotations": map[string]string{"io.containerd.image.name": BusyboxImageName, "org.opencontainers.image.ref.name": "latest"},
		}},
	})

	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	out := tar.NewWriter(f)
	put := func(name string, b []byte) {
		out.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: epoch})
		out.Write(b)
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	put("index.json", index)
	names := make([]string, 0, len(blobs))
	for h := range blobs {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		put("blobs/sha256/"+h, blobs[h])
	}
	return out.Close()
}

// ImportBusybox builds the busybox image and imports it into c.
func (c *testContainerd) ImportBusybox(t testing.TB) string {
	t.Helper()
	path := filepath.Join(c.Dir, "busybox-oci.tar")
	if err := WriteBusyboxImage(c.env.BusyboxPath, path); err != nil {
		t.Fatalf("build busybox image: %v", err)
	}
	c.MustCtr(t, "images", "import", "--local", path)
	return BusyboxImageName
}
