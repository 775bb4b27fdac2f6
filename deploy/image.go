package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/podvm/podvm/runtime/config"
)

// ImageSources are the local files the installer image is built from.
type ImageSources struct {
	// BinDir holds containerd-shim-podvm-v2, podvm and podvm-agent, each
	// statically linked: the image has no libc, and the shim must run on
	// any node whatever its libc.
	BinDir string
	// GuestDir holds the guest image: vmlinux, initramfs.cpio,
	// kernel.release and, if the build made it, runc-features.json
	// (`podvm image build --out`).
	GuestDir string
	// Version is recorded in the image's labels.
	Version string
}

// imageFile is one file of the image, under PayloadDir.
type imageFile struct {
	src, rel string
	mode     int64
	optional bool
}

func (s ImageSources) files() (guest, bins []imageFile) {
	guest = []imageFile{
		{filepath.Join(s.GuestDir, "vmlinux"), "share/podvm/vmlinux", 0o644, false},
		{filepath.Join(s.GuestDir, "initramfs.cpio"), "share/podvm/initramfs.cpio", 0o644, false},
		{filepath.Join(s.GuestDir, "kernel.release"), "share/podvm/kernel.release", 0o644, false},
		{filepath.Join(s.GuestDir, "runc-features.json"), "share/podvm/runc-features.json", 0o644, true},
	}
	for _, b := range []string{"containerd-shim-podvm-v2", "podvm", "podvm-agent"} {
		bins = append(bins, imageFile{filepath.Join(s.BinDir, b), "bin/" + b, 0o755, false})
	}
	return guest, bins
}

// BuildImage builds the installer image: no base image, two layers (the
// guest image, which changes rarely, then podvm's binaries), the default
// configuration, and `podvm` as the entrypoint. The same inputs give the
// same digest.
func BuildImage(s ImageSources) (v1.Image, error) {
	guest, bins := s.files()
	for _, f := range bins {
		if err := CheckStatic(f.src); err != nil {
			return nil, err
		}
	}
	guestLayer, err := layerOf(guest, map[string][]byte{"share/podvm/config.toml": config.DefaultTOML()})
	if err != nil {
		return nil, fmt.Errorf("installer image, guest layer: %w", err)
	}
	binLayer, err := layerOf(bins, nil)
	if err != nil {
		return nil, fmt.Errorf("installer image, binaries layer: %w", err)
	}
	return OCIImage([]v1.Layer{guestLayer, binLayer}, v1.Config{
		Entrypoint: []string{PayloadDir + "/bin/podvm"},
		Cmd:        []string{"deploy", "node", "--help"},
		Env:        []string{"PATH=" + PayloadDir + "/bin"},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":       "podvm-installer",
			"org.opencontainers.image.description": "Installs podvm (VM-isolated pods) on Kubernetes nodes: podvm deploy",
			"org.opencontainers.image.version":     s.Version,
		},
	})
}

// OCIImage is an OCI image of layers, with no base, for linux on this
// architecture, created at the epoch (so the same inputs give the same
// digest), running as cfg says.
func OCIImage(layers []v1.Layer, cfg v1.Config) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// layerOf is a gzip layer holding files (read from disk) and extra
// (generated) under PayloadDir, every entry root's with a fixed time.
func layerOf(files []imageFile, extra map[string][]byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var addDir func(string) error
	addDir = func(dir string) error {
		if dir == "/" || dir == "." || dirs[dir] {
			return nil
		}
		if err := addDir(filepath.Dir(dir)); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{Name: dir[1:] + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)})
	}
	add := func(rel string, mode int64, data []byte) error {
		path := filepath.Join(PayloadDir, rel)
		if err := addDir(filepath.Dir(path)); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: path[1:], Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if errors.Is(err, os.ErrNotExist) && f.optional {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w (`make deploy-image` builds everything the image needs)", f.src, err)
		}
		if err := add(f.rel, f.mode, data); err != nil {
			return nil, err
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(extra)) {
		if err := add(rel, 0o644, extra[rel]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
}

// CheckStatic fails for a dynamically linked executable, naming the fix.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w (`make deploy-image` builds static binaries for the image)", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: the installer image has no libc and nodes differ in theirs; "+
				"build it with CGO_ENABLED=0 (`make deploy-image` does)", path)
		}
	}
	return nil
}

// PushImage pushes img to ref. A registry on a loopback address is
// reached over plain HTTP, and never through a proxy.
func PushImage(ref string, img v1.Image, insecure bool) error {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if err := remote.Write(r, img, remote.WithTransport(tr)); err != nil {
		return fmt.Errorf("push the installer image to %s: %w", ref, err)
	}
	return nil
}

// WriteImageTarball writes img as a `docker save` style tarball tagged
// ref, which `kind load image-archive` and `ctr images import` read.
func WriteImageTarball(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image tag %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
