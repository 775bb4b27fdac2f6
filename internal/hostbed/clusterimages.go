package hostbed

import (
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
	// The node conformance specs also pull the previous agnhost (the pod
	// lifecycle spec changes a pod's image from it to the current one) and
	// kitten, which the image volume spec mounts and reads two files of.
	e2eAgnhostPrev = e2eImages + "agnhost:2.55"
	e2eKitten      = e2eImages + "kitten:1.8"
)

// ClusterImages builds the images of the local conformance cluster:
// busybox (busybox-static), the sandbox pause image (testbin), and agnhost
// (the upstream e2e utility, run as /agnhost on the busybox base, whose
// nsenter applet the e2e node-exec pods use), and stand-ins for the other
// images the upstream node conformance specs pull.
func ClusterImages(busybox, testbin, agnhost string) ([]Image, error) {
	base, err := busyboxLayer(busybox)
	if err != nil {
		return nil, err
	}
	var s imageSet
	program := func(src, dst string) *layerBuilder {
		b, err := os.ReadFile(src)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("read %s: %w", src, err))
		}
		return fileLayer(dst, 0o755, b)
	}
	s.add("busybox", []string{SpecBusybox, e2eBusybox}, v1.Config{Cmd: []string{"sh"}}, base)
	s.add("pause", []string{SandboxImage}, v1.Config{Entrypoint: []string{"/pause"}}, nil, program(testbin, "pause"))
	agnhostCfg := v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}
	s.add("agnhost", []string{e2eAgnhost}, agnhostCfg, base, program(agnhost, "agnhost"))
	s.add("agnhost-prev", []string{e2eAgnhostPrev}, agnhostCfg, base, program(agnhost, "agnhost"))
	kitten := newLayer()
	kitten.file("data.json", 0o644, []byte(`{"image": "kitten.jpg"}`+"\n"))
	kitten.file("etc/os-release", 0o644, []byte(`NAME="Alpine Linux"`+"\n"))
	s.add("kitten", []string{e2eKitten}, v1.Config{Cmd: []string{"sh"}}, base, kitten)
	return s.result("build cluster images")
}
