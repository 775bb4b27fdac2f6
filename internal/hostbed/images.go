package hostbed

import (
	"errors"
	"fmt"
	"github.com/podvm/podvm/deploy"
	"os"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ProbeImage is busybox with testbin as /usr/local/bin/probe (see
// testbin's probe), for podvm's boundary tests.
const ProbeImage = "registry.k8s.io/e2e-test-images/podvm-probe:1"

// SandboxImage is the pause image the CRI containerd runs pod sandboxes
// from: containerd 2.4's default, so a config without pinned_images works
// too.
const SandboxImage = "registry.k8s.io/pause:3.10.2"

// Image is one image and every reference it is pushed under; all of them
// name the same image (the same ID).
type Image struct {
	Refs  []string
	Image v1.Image
}

// Where critest v1.37.0 pulls from (sigs.k8s.io/cri-tools pkg/validate,
// pkg/framework).
const (
	e2eImages   = "registry.k8s.io/e2e-test-images/"
	criStaging  = "gcr.io/k8s-staging-cri-tools/"
	labelTestID = "io.podvm.test-image"
	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// CritestImages builds every image critest v1.37.0 pulls except the one it
// names by a digest of upstream content (test-image-digest@sha256:...),
// which no local build can match. busybox is busybox-static; testbin is
// the testbin program built for the host (BuildTestbin).
//
// Each image carries a label with its own name: images critest expects to
// be distinct must have distinct IDs (it removes images by ID, which
// removes every tag of that ID), and only the ones it expects to share an
// ID (test-image-tags:1..3, pause:3.9 from two registries) do.
func CritestImages(busybox, testbin string) ([]Image, error) {
	base, err := busyboxLayer(busybox)
	if err != nil {
		return nil, err
	}
	prog, err := os.ReadFile(testbin)
	if err != nil {
		return nil, fmt.Errorf("read testbin: %w", err)
	}
	var s imageSet
	addProgramImages(&s, base, prog)
	addImageManagementImages(&s, base)
	// Pause images: just /pause, like the real ones. pause:3.9 is one
	// image under two registries; the sandbox image is a different one, so
	// that removing pause:3.9 by ID never removes the sandbox image.
	pause := v1.Config{Entrypoint: []string{"/pause"}}
	s.add("pause:3.9", []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"}, pause, nil, fileLayer("pause", 0o755, prog))
	s.add("pause:3.10.2", []string{SandboxImage}, pause, nil, fileLayer("pause", 0o755, prog))
	return s.result("build critest images")
}

// addProgramImages adds the images whose behaviour testbin stands in for,
// each on the busybox base.
func addProgramImages(s *imageSet, base v1.Layer, prog []byte) {
	shell := v1.Config{Cmd: []string{"sh"}}
	// The default container image of nearly every spec.
	s.add("busybox:1.29-2", []string{e2eImages + "busybox:1.29-2"}, shell, base)

	// Web servers: port 80 for port mapping and port forwarding; 12003 in
	// the host network namespace.
	s.add("nginx:1.14-2", []string{e2eImages + "nginx:1.14-2"},
		v1.Config{Cmd: []string{"/usr/sbin/nginx", "-listen=:80"}, ExposedPorts: tcp(80)}, base, fileLayer("usr/sbin/nginx", 0o755, prog))
	s.add("hostnet-nginx", []string{criStaging + "hostnet-nginx-" + runtime.GOARCH + ":latest"},
		v1.Config{Cmd: []string{"/usr/sbin/nginx", "-listen=:12003"}, ExposedPorts: tcp(12003)}, base, fileLayer("usr/sbin/nginx", 0o755, prog))
	s.add("httpd:2.4.39-4", []string{e2eImages + "httpd:2.4.39-4"},
		v1.Config{Cmd: []string{"/usr/local/bin/httpd", "-listen=:80"}, ExposedPorts: tcp(80)}, base, fileLayer("usr/local/bin/httpd", 0o755, prog))

	// Setuid root: prints "Effective uid: 0" unless no_new_privs is set.
	s.add("nonewprivs:1.3", []string{e2eImages + "nonewprivs:1.3"},
		v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}}, base, fileLayer("usr/local/bin/nnp", 0o4755, prog))

	// podvm's own tests: busybox with testbin as /usr/local/bin/probe,
	// which tries to connect to host sockets from inside the pod.
	s.add("podvm-probe", []string{ProbeImage}, shell, base, fileLayer("usr/local/bin/probe", 0o755, prog))
}

// addImageManagementImages adds the images of critest's image specs:
// distinct images, one image under three tags, and images whose USER is
// set.
func addImageManagementImages(s *imageSet, base v1.Layer) {
	shell := v1.Config{Cmd: []string{"sh"}}
	// marker is a layer with one empty file, as cri-tools' image-test
	// Dockerfile does (ADD ${TEST} ${TEST}), to make an image unique.
	marker := func(file string) *layerBuilder { return fileLayer(file, 0o644, nil) }
	for _, n := range []string{"test-image-1:latest", "test-image-2:latest", "test-image-3:latest",
		"test-image-latest:latest", "test-image-tag:test", "test-image-tag:all"} {
		s.add(n, []string{criStaging + n}, shell, base, marker(n))
	}
	s.add("test-image-tags", []string{criStaging + "test-image-tags:1", criStaging + "test-image-tags:2",
		criStaging + "test-image-tags:3"}, shell, base, marker("same-image"))

	// The image's USER, as cri-tools' image-user builds set it.
	for n, user := range map[string]string{
		"test-image-user-uid":            "1002",
		"test-image-user-username":       "www-data",
		"test-image-user-uid-group":      "1003:1004",
		"test-image-user-username-group": "www-data:1004",
	} {
		s.add(n, []string{criStaging + n + ":latest"}, v1.Config{Cmd: []string{"sh"}, User: user}, base)
	}

	// A user (1000) whose supplementary group (50000) exists only in the
	// image's /etc/group.
	groups := newLayer()
	groups.file("etc/passwd", 0o644, []byte(basePasswd+"default-user:x:1000:1000::/home/default-user:/bin/sh\n"))
	groups.file("etc/group", 0o644, []byte(baseGroup+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"))
	groups.dir("home/default-user", 0o755)
	s.add("test-image-predefined-group", []string{criStaging + "test-image-predefined-group:latest"},
		v1.Config{Cmd: []string{"sh"}, User: "1000"}, base, groups)
}

// imageSet collects built images and the errors of those that failed.
type imageSet struct {
	out  []Image
	errs []error
}

// add builds image id of base (nil for none) and layers, pushed under refs.
func (s *imageSet) add(id string, refs []string, cfg v1.Config, base v1.Layer, layers ...*layerBuilder) {
	img, err := buildImage(id, cfg, base, layers)
	if err != nil {
		s.errs = append(s.errs, fmt.Errorf("image %s: %w", id, err))
		return
	}
	s.out = append(s.out, Image{Refs: refs, Image: img})
}

// result is every image, or what failed with context what.
func (s *imageSet) result(what string) ([]Image, error) {
	if err := errors.Join(s.errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return s.out, nil
}

// fileLayer is a layer holding one file at path with data.
func fileLayer(path string, mode int64, data []byte) *layerBuilder {
	l := newLayer()
	l.file(path, mode, data)
	return l
}

func tcp(port int) map[string]struct{} {
	return map[string]struct{}{fmt.Sprintf("%d/tcp", port): {}}
}

// buildImage is an OCI image of base (if any) and layers, with cfg, the
// default PATH when cfg has none, and a label naming the image.
func buildImage(id string, cfg v1.Config, base v1.Layer, layers []*layerBuilder) (v1.Image, error) {
	var all []v1.Layer
	if base != nil {
		all = append(all, base)
	}
	for _, lb := range layers {
		l, err := lb.layer()
		if err != nil {
			return nil, err
		}
		all = append(all, l)
	}
	if cfg.Env == nil {
		cfg.Env = []string{defaultPath}
	}
	cfg.Labels = map[string]string{labelTestID: id}
	return deploy.OCIImage(all, cfg)
}

// PushAll pushes every image under each of its references.
func (r *Registry) PushAll(images []Image) error {
	for _, img := range images {
		for _, ref := range img.Refs {
			if err := r.Push(ref, img.Image); err != nil {
				return err
			}
		}
	}
	return nil
}

// ImageRefs lists every reference of images.
func ImageRefs(images []Image) []string {
	var out []string
	for _, img := range images {
		out = append(out, img.Refs...)
	}
	return out
}
