package hostbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// testbinPackage is the multi-call program inside the test images.
const testbinPackage = "github.com/podvm/podvm/internal/hostbed/testbin"

// BuildTestbin compiles testbin, static (CGO_ENABLED=0: the images have no
// libc), into dir and returns its path. It needs the Go toolchain, which
// the tests that use it run under anyway.
func BuildTestbin(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, "testbin")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, testbinPackage)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", testbinPackage, err, b)
	}
	return out, nil
}

// BuildCritestImages is CritestImages with testbin built into workDir
// first when testbin is "".
func BuildCritestImages(busybox, testbin, workDir string) ([]Image, error) {
	if testbin == "" {
		var err error
		if testbin, err = BuildTestbin(workDir); err != nil {
			return nil, err
		}
	}
	return CritestImages(busybox, testbin)
}
