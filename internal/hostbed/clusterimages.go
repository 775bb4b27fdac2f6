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
	// The generation spec changes a pod's image to nginx; the
	// privilege-escalation spec runs nonewprivs' setuid-root nnp.
	e2eNginx      = e2eImages + "nginx:1.27.0-2"
	e2eNonewprivs = e2eImages + "nonewprivs:1.4"
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
	program := func(src, dst string, mode int64) *layerBuilder {
		b, err := os.ReadFile(src)
		if err != nil {
			s.errs = append(s.errs, fmt.Errorf("read %s: %w", src, err))
		}
		return fileLayer(dst, mode, b)
	}
	s.add("busybox", []string{SpecBusybox, e2eBusybox}, v1.Config{Cmd: []string{"sh"}}, base)
	s.add("pause", []string{SandboxImage}, v1.Config{Entrypoint: []string{"/pause"}}, nil, program(testbin, "pause", 0o755))
	agnhostCfg := v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}
	// The entrypoint spec runs the same program as /agnhost-2, as in the
	// real image; the exec hook specs run "curl URL", which busybox has
	// not: wget stands in for that one form.
	agnhostProgram := func() *layerBuilder {
		l := program(agnhost, "agnhost", 0o755)
		l.hardlink("agnhost-2", "agnhost")
		l.file("usr/bin/curl", 0o755, []byte("#!/bin/sh\nexec wget -q -O - \"$@\"\n"))
		return l
	}
	s.add("agnhost", []string{e2eAgnhost}, agnhostCfg, base, agnhostProgram())
	s.add("agnhost-prev", []string{e2eAgnhostPrev}, agnhostCfg, base, agnhostProgram())
	kitten := newLayer()
	kitten.file("data.json", 0o644, []byte(`{"image": "kitten.jpg"}`+"\n"))
	kitten.file("etc/os-release", 0o644, []byte(`NAME="Alpine Linux"`+"\n"))
	s.add("kitten", []string{e2eKitten}, v1.Config{Cmd: []string{"sh"}}, base, kitten)
	s.add("nginx", []string{e2eNginx}, v1.Config{Cmd: []string{"/usr/sbin/nginx", "-listen=:80"}, ExposedPorts: tcp(80)},
		base, program(testbin, "usr/sbin/nginx", 0o755))
	s.add("nonewprivs", []string{e2eNonewprivs}, v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}},
		base, program(testbin, "usr/local/bin/nnp", 0o4755))
	return s.result("build cluster images")
}
