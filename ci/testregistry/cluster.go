package testregistry

import (
	"errors"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Names under which the local conformance cluster serves its images. The
// isolation specs default to SpecBusybox, a name a real cluster can pull
// too; the upstream e2e suite of Kubernetes v1.37 names the others
// (test/utils/image/manifest.go).
const (
	SpecBusybox = "docker.io/library/busybox:1.37"
	e2eBusybox  = e2eImages + "busybox:1.37.0-2"
	e2eAgnhost  = e2eImages + "agnhost:2.66.1"
)

// ClusterImages builds the images of the local conformance cluster:
// busybox (busybox-static), the sandbox pause image (testbin), and agnhost
// (the upstream e2e utility, run as /agnhost on the busybox base, whose
// nsenter applet the e2e node-exec pods use).
func ClusterImages(busybox, testbin, agnhost string) ([]Image, error) {
	base, err := busyboxLayer(busybox)
	if err != nil {
		return nil, err
	}
	var out []Image
	var errs []error
	add := func(id string, refs []string, cfg v1.Config, base v1.Layer, layers ...*layerBuilder) {
		img, err := buildImage(id, cfg, base, layers)
		if err != nil {
			errs = append(errs, fmt.Errorf("image %s: %w", id, err))
			return
		}
		out = append(out, Image{Refs: refs, Image: img})
	}
	fileLayer := func(src, dst string) *layerBuilder {
		b, err := os.ReadFile(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", src, err))
			return newLayer()
		}
		l := newLayer()
		l.file(dst, 0o755, b)
		return l
	}
	add("busybox", []string{SpecBusybox, e2eBusybox}, v1.Config{Cmd: []string{"sh"}}, base)
	add("pause", []string{SandboxImage}, v1.Config{Entrypoint: []string{"/pause"}}, nil, fileLayer(testbin, "pause"))
	add("agnhost", []string{e2eAgnhost}, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}, base, fileLayer(agnhost, "agnhost"))
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("build cluster images: %w", err)
	}
	return out, nil
}
