// The image registry: podvm's tests, benchmarks and local cluster pull
// from an OCI registry on 127.0.0.1, so that CRI PullImage (which always
// contacts a registry) works on a machine that can reach no registry at
// all. The images are built here (images.go, clusterimages.go) from
// busybox-static and one small Go program (testbin) under the exact names
// the tests pull; containerd is pointed at the registry by a certs.d
// directory (WriteHostsDir) that stands in for every upstream host, so a
// pull never leaves the machine.

package hostbed

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is an in-memory OCI registry listening on 127.0.0.1. Images of
// each upstream host live under a path prefix named after the host
// (registry.k8s.io/pause:3.9 is 127.0.0.1:PORT/registry.k8s.io/pause:3.9),
// so two hosts never share a repository by accident.
type Registry struct {
	// Addr is host:port of the registry.
	Addr string
	srv  *http.Server
	done chan error
}

// StartRegistry serves a new empty registry on a free port of 127.0.0.1. Requests
// are logged to logw (io.Discard for none).
func StartRegistry(logw io.Writer) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("test registry: listen on 127.0.0.1: %w", err)
	}
	r := &Registry{
		Addr: ln.Addr().String(),
		srv:  &http.Server{Handler: registry.New(registry.Logger(log.New(logw, "registry: ", log.LstdFlags)))},
		done: make(chan error, 1),
	}
	go func() { r.done <- r.srv.Serve(ln) }()
	return r, nil
}

// ServeImages starts a registry (requests logged to logw), pushes images
// and writes certsDir, the certs.d that sends every pull of their hosts to
// it (see WriteHostsDir). On error the registry is stopped again.
func ServeImages(images []Image, logw io.Writer, certsDir string) (*Registry, error) {
	r, err := StartRegistry(logw)
	if err != nil {
		return nil, err
	}
	if err := r.serve(images, certsDir); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// serve pushes images and writes certsDir for their hosts.
func (r *Registry) serve(images []Image, certsDir string) error {
	if err := r.PushAll(images); err != nil {
		return err
	}
	hosts, err := RegistryHosts(ImageRefs(images))
	if err != nil {
		return err
	}
	return r.WriteHostsDir(certsDir, hosts)
}

// Close stops the registry and drops its images.
func (r *Registry) Close() error {
	err := r.srv.Close()
	if serr := <-r.done; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Push stores img under ref, written as clients name it
// ("registry.k8s.io/e2e-test-images/busybox:1.29-2").
func (r *Registry) Push(ref string, img v1.Image) error {
	local, err := r.localRef(ref)
	if err != nil {
		return err
	}
	// No proxy: the registry is on loopback, and a proxy from the
	// environment must never see these requests.
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if err := remote.Write(local, img, remote.WithTransport(tr)); err != nil {
		return fmt.Errorf("push %s to the test registry as %s: %w", ref, local, err)
	}
	return nil
}

// localRef maps an upstream reference to its place in this registry.
func (r *Registry) localRef(ref string) (name.Reference, error) {
	up, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	local := fmt.Sprintf("%s/%s/%s", r.Addr, hostDirName(up.Context().RegistryStr()), up.Context().RepositoryStr())
	sep := ":"
	if strings.HasPrefix(up.Identifier(), "sha256:") {
		sep = "@"
	}
	return name.ParseReference(local+sep+up.Identifier(), name.Insecure)
}

// hostDirName is the name containerd looks up in certs.d for a registry:
// go-containerregistry calls Docker Hub index.docker.io, containerd docker.io.
func hostDirName(registry string) string {
	if registry == name.DefaultRegistry {
		return "docker.io"
	}
	return registry
}

// unlistedPrefix is where pulls from any host without images here go: an
// empty namespace, so they fail at once with "not found".
const unlistedPrefix = "_unlisted-host"

// WriteHostsDir writes a containerd registry config_path directory
// (certs.d) in dir: hosts.toml for each of hosts sends its pulls here, and
// _default/hosts.toml sends every other host to an empty namespace. There
// is deliberately no fallback to the real host: this machine may contact
// nothing but loopback.
func (r *Registry) WriteHostsDir(dir string, hosts []string) error {
	write := func(sub, prefix, why string) error {
		text := fmt.Sprintf(`# Written by podvm's test registry (internal/hostbed): %s.
# server is the only host containerd tries: no fallback to the real registry.
server = "http://%s/v2/%s"
override_path = true
capabilities = ["pull", "resolve"]
`, why, r.Addr, prefix)
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(text), 0o644)
	}
	for _, h := range hosts {
		h = hostDirName(h)
		if err := write(h, h, "pulls from "+h+" are served by the local test registry"); err != nil {
			return fmt.Errorf("write certs.d for %s: %w", h, err)
		}
	}
	if err := write("_default", unlistedPrefix, "any other registry host gets \"not found\""); err != nil {
		return fmt.Errorf("write certs.d/_default: %w", err)
	}
	return nil
}

// RegistryHosts lists the registry hosts that refs name, sorted and without repeats.
func RegistryHosts(refs []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, ref := range refs {
		r, err := name.ParseReference(ref)
		if err != nil {
			return nil, fmt.Errorf("image reference %q: %w", ref, err)
		}
		if h := hostDirName(r.Context().RegistryStr()); !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out, nil
}
