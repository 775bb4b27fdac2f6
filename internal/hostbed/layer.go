package hostbed

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// layerBuilder writes one image layer as a tar archive in memory. Every
// entry belongs to root and has a fixed time, so the same inputs always
// give the same digest (and so the same image IDs in every run).
type layerBuilder struct {
	buf bytes.Buffer
	tw  *tar.Writer
	err error
}

func newLayer() *layerBuilder {
	l := &layerBuilder{}
	l.tw = tar.NewWriter(&l.buf)
	return l
}

func (l *layerBuilder) add(h *tar.Header, data []byte) {
	if l.err != nil {
		return
	}
	h.ModTime = time.Unix(0, 0)
	h.Size = int64(len(data))
	if l.err = l.tw.WriteHeader(h); l.err == nil && len(data) > 0 {
		_, l.err = l.tw.Write(data)
	}
}

func (l *layerBuilder) dir(name string, mode int64) {
	l.add(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: mode}, nil)
}

func (l *layerBuilder) file(name string, mode int64, data []byte) {
	l.add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}, data)
}

// hardlink adds name as another name of the file target (a path in the
// archive).
func (l *layerBuilder) hardlink(name, target string) {
	l.add(&tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o755}, nil)
}

// layer finishes the archive as a gzip-compressed OCI layer.
func (l *layerBuilder) layer() (v1.Layer, error) {
	if l.err == nil {
		l.err = l.tw.Close()
	}
	if l.err != nil {
		return nil, fmt.Errorf("build layer: %w", l.err)
	}
	b := l.buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// Users and groups of the busybox base, as in the busybox images critest
// was written against: www-data and nobody are looked up by name.
const (
	basePasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	baseGroup = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
www-data:x:33:
users:x:100:
nogroup:x:65534:
`
)

// pgrepScript stands in for busybox's pgrep, which Debian's busybox-static
// lacks: critest runs `sh -c "pgrep sleep || true"` and wants an empty
// stderr. It matches process names (comm) like pgrep does.
const pgrepScript = `#!/bin/sh
# pgrep PATTERN: the pids of processes whose name matches PATTERN.
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
status=1
for dir in /proc/[0-9]*; do
	pid=${dir#/proc/}
	[ "$pid" = "$$" ] && continue
	name=$(cat "$dir/comm" 2>/dev/null) || continue
	if echo "$name" | grep -q -- "$1"; then
		echo "$pid"
		status=0
	fi
done
exit $status
`

// busyboxLayer is a small Linux userland: busybox-static with every applet
// it has, the usual directories, and the users critest's specs name.
func busyboxLayer(busybox string) (v1.Layer, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	l := newLayer()
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "run", "sbin", "sys", "usr", "usr/bin",
		"usr/sbin", "usr/local", "usr/local/bin", "var", "var/run", "var/www"} {
		l.dir(d, 0o755)
	}
	l.dir("root", 0o700)
	l.dir("tmp", 0o1777)
	l.file("bin/busybox", 0o755, bin)
	// Hard links, as in the busybox images: masking one applet's path
	// (critest's MaskedPaths masks /bin/ls) must not mask busybox itself,
	// which it would through a symlink.
	applets := strings.Fields(string(out))
	inBin := map[string]bool{}
	for _, applet := range applets {
		if applet != "bin/busybox" && applet != "bin/pgrep" {
			l.hardlink(applet, "bin/busybox")
		}
		inBin[applet] = true
	}
	// The busybox images have every applet in /bin too, and specs call
	// them there (the upstream sysctl spec runs /bin/sysctl).
	for _, applet := range applets {
		if bin := "bin/" + path.Base(applet); !inBin[bin] {
			l.hardlink(bin, "bin/busybox")
			inBin[bin] = true
		}
	}
	l.file("bin/pgrep", 0o755, []byte(pgrepScript))
	l.file("etc/passwd", 0o644, []byte(basePasswd))
	l.file("etc/group", 0o644, []byte(baseGroup))
	return l.layer()
}
