package deploy

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// staticBinary is a statically linked program of this host, standing in
// for podvm's binaries.
func staticBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil && CheckStatic(p) == nil {
			return p
		}
	}
	t.Skip("needs a static busybox (apt-get install busybox-static)")
	return ""
}

func imageSources(t *testing.T, bin string) ImageSources {
	t.Helper()
	s := ImageSources{BinDir: t.TempDir(), GuestDir: t.TempDir(), Version: "v-test"}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"containerd-shim-podvm-v2", "podvm", "podvm-agent"} {
		if err := os.WriteFile(filepath.Join(s.BinDir, b), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"vmlinux", "initramfs.cpio", "kernel.release"} {
		if err := os.WriteFile(filepath.Join(s.GuestDir, g), []byte(g), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestBuildImage(t *testing.T) {
	s := imageSources(t, staticBinary(t))
	img, err := BuildImage(s)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers %d, %v", len(layers), err)
	}
	files := map[string]int64{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 {
				t.Errorf("%s: uid %d gid %d mtime %v, want root's and fixed", h.Name, h.Uid, h.Gid, h.ModTime)
			}
			files[h.Name] = h.Mode
		}
		rc.Close()
	}
	for name, mode := range map[string]int64{
		"podvm/bin/podvm": 0o755, "podvm/bin/containerd-shim-podvm-v2": 0o755, "podvm/bin/podvm-agent": 0o755,
		"podvm/share/podvm/vmlinux": 0o644, "podvm/share/podvm/initramfs.cpio": 0o644,
		"podvm/share/podvm/kernel.release": 0o644, "podvm/share/podvm/config.toml": 0o644,
	} {
		if got, ok := files[name]; !ok || got != mode {
			t.Errorf("%s: in image %v, mode %o, want %o", name, ok, got, mode)
		}
	}
	if _, ok := files["podvm/share/podvm/runc-features.json"]; ok {
		t.Errorf("optional runc-features.json in the image though absent")
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/podvm/bin/podvm"}) || cf.OS != "linux" || cf.Config.Labels["org.opencontainers.image.version"] != "v-test" {
		t.Errorf("config %+v", cf.Config)
	}

	// Same inputs, same image.
	again, err := BuildImage(s)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("digests differ between two builds: %s %s", d1, d2)
	}
}

func TestBuildImageRefusesDynamicBinaries(t *testing.T) {
	dyn := ""
	for _, p := range []string{"/bin/ls", "/usr/bin/ls"} {
		if _, err := os.Stat(p); err == nil && CheckStatic(p) != nil {
			dyn = p
		}
	}
	if dyn == "" {
		t.Skip("no dynamically linked ls on this host")
	}
	s := imageSources(t, dyn)
	_, err := BuildImage(s)
	if err == nil || !strings.Contains(err.Error(), "is dynamically linked") || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("err = %v", err)
	}
}

func TestBuildImageNamesMissingFiles(t *testing.T) {
	s := imageSources(t, staticBinary(t))
	os.Remove(filepath.Join(s.GuestDir, "vmlinux"))
	_, err := BuildImage(s)
	if err == nil || !strings.Contains(err.Error(), "vmlinux") {
		t.Errorf("err = %v", err)
	}
}
