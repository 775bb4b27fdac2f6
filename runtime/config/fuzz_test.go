package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// FuzzParse: any bytes as a config file either fail with an error or give
// a config that passes Validate and survives a round trip through TOML.
func FuzzParse(f *testing.F) {
	f.Add(DefaultTOML())
	f.Add([]byte("[hypervisor]\ndefault_vcpus = 0\n"))
	f.Add([]byte("[hypervisor]\ndefault_memory_mib = -1\n"))
	f.Add([]byte("[hypervisor]\nkernel_params = [\"a\", 1]\n"))
	f.Add([]byte("[runtime]\nagent_timeout = \"-5s\"\nenable_annotations = [\"hypervisor.kernel\"]\nvalid_annotation_paths = [\"[\"]\n"))
	f.Add([]byte("[hypervisor]\ndriver = \"cloud-hypervisor\"\naccelerator = \"tcg\"\n"))
	f.Add([]byte("x = 1\n[[hypervisor]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.toml") {
				t.Errorf("the error does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate refuses: %v", err)
		}
		out, err := toml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal a parsed config: %v", err)
		}
		again, err := Parse(out, "again.toml")
		if err != nil {
			t.Fatalf("a parsed config does not parse again: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalized(c), normalized(again)) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, again)
		}
	})
}

// normalized makes empty and nil lists equal for comparison.
func normalized(c *Config) Config {
	n := *c
	for _, l := range []*[]string{&n.Hypervisor.KernelParams, &n.Runtime.EnableAnnotations, &n.Runtime.ValidAnnotationPaths} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return n
}

// FuzzWithAnnotations: whatever annotations a pod carries, a config
// overridden by them is valid; a key the node did not enable is never
// applied; a path is applied only if clean and inside the valid globs;
// and the node's own config is never changed.
func FuzzWithAnnotations(f *testing.F) {
	for _, k := range AnnotationKeys() {
		f.Add(k, "1", true)
	}
	f.Add("hypervisor.kernel", "/opt/ok/vmlinux", true)
	f.Add("hypervisor.kernel", "/opt/ok/../../etc/shadow", true)
	f.Add("hypervisor.qemu.path", "/opt/ok/qemu", false)
	f.Add("hypervisor.kernel_params", "init=/bin/sh console=ttyS1", true)
	f.Add("hypervisor.kernel_params", "a\x00b", true)
	f.Add("hypervisor.default_memory_mib", "99999999999", true)
	f.Add("runtime.state_dir", "/", true)
	f.Fuzz(func(t *testing.T, key, value string, enable bool) {
		node := Default()
		if enable {
			node.Runtime.EnableAnnotations = AnnotationKeys()
		}
		node.Runtime.ValidAnnotationPaths = []string{"/opt/ok/*"}
		before := *node
		beforeParams := append([]string(nil), node.Hypervisor.KernelParams...)
		got, applied, err := node.WithAnnotations(map[string]string{AnnotationPrefix + key: value, "example.com/other": value})
		if !slices.Equal(node.Hypervisor.KernelParams, beforeParams) || node.Hypervisor.Kernel != before.Hypervisor.Kernel ||
			node.Hypervisor.QEMU != before.Hypervisor.QEMU || node.Hypervisor.DefaultMemoryMiB != before.Hypervisor.DefaultMemoryMiB {
			t.Fatalf("WithAnnotations changed the node's config")
		}
		ak, known := annotationKeys[key]
		if err != nil {
			return
		}
		if !known || !enable {
			t.Fatalf("applied %q (known %v, enabled %v)", key, known, enable)
		}
		if len(applied) != 1 || applied[0] != key {
			t.Fatalf("applied %v, want [%s]", applied, key)
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("the overridden config is invalid: %v", err)
		}
		if ak.path {
			if ok, _ := filepath.Match("/opt/ok/*", value); !ok || filepath.Clean(value) != value {
				t.Fatalf("path %q applied outside /opt/ok/*", value)
			}
		}
	})
}
