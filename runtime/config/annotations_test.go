package config

import (
	"strings"
	"testing"
)

func TestWithAnnotations(t *testing.T) {
	node := Default()
	node.Runtime.EnableAnnotations = []string{"hypervisor.default_memory_mib", "hypervisor.kernel", "hypervisor.kernel_params"}
	node.Runtime.ValidAnnotationPaths = []string{"/opt/podvm/kernels/*"}
	p := AnnotationPrefix
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		wantErr string
		check   func(*Config) bool
	}{
		{"no podvm annotations: the node's config itself", map[string]string{"example.com/a": "b"}, "",
			func(c *Config) bool { return c == node }},
		{"an enabled size", map[string]string{p + "hypervisor.default_memory_mib": "512"}, "",
			func(c *Config) bool {
				return c.Hypervisor.DefaultMemoryMiB == 512 && node.Hypervisor.DefaultMemoryMiB == 256
			}},
		{"an enabled path inside the globs", map[string]string{p + "hypervisor.kernel": "/opt/podvm/kernels/debug"}, "",
			func(c *Config) bool { return c.Hypervisor.Kernel == "/opt/podvm/kernels/debug" }},
		{"kernel parameters are appended", map[string]string{p + "hypervisor.kernel_params": "  a=1 b "}, "",
			func(c *Config) bool {
				return strings.Join(c.Hypervisor.KernelParams, ",") == "a=1,b" && len(node.Hypervisor.KernelParams) == 0
			}},
		{"a key not enabled", map[string]string{p + "hypervisor.qemu.path": "/bin/sh"}, `add "hypervisor.qemu.path" to runtime.enable_annotations`, nil},
		{"an unknown key", map[string]string{p + "runtime.state_dir": "/"}, "podvm has no such key", nil},
		{"a path outside the globs", map[string]string{p + "hypervisor.kernel": "/tmp/k"}, "matches none of", nil},
		{"a path climbing out of the globs", map[string]string{p + "hypervisor.kernel": "/opt/podvm/kernels/../../../etc/k"}, "not a clean absolute path", nil},
		{"a relative path", map[string]string{p + "hypervisor.kernel": "kernels/k"}, "not a clean absolute path", nil},
		{"a size out of range", map[string]string{p + "hypervisor.default_memory_mib": "16"}, "from 64 to", nil},
		{"a control character", map[string]string{p + "hypervisor.kernel_params": "a\nb"}, "control character", nil},
		{"a parameter beyond ASCII", map[string]string{p + "hypervisor.kernel_params": "init=/bin/\u00e9"}, "printable ASCII", nil},
		{"one bad among good ones refuses all", map[string]string{p + "hypervisor.default_memory_mib": "512", p + "hypervisor.debug": "true"},
			`add "hypervisor.debug"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := node.WithAnnotations(tc.ann)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
}

func TestEnableAnnotationsValidated(t *testing.T) {
	_, err := Parse([]byte("[runtime]\nenable_annotations = [\"hypervisor.kernal\"]\nvalid_annotation_paths = [\"relative/*\"]\n"), "t.toml")
	if err == nil || !strings.Contains(err.Error(), `"hypervisor.kernal" is not a key`) || !strings.Contains(err.Error(), "not an absolute path glob") {
		t.Fatalf("err = %v", err)
	}
}
