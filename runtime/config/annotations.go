package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// AnnotationPrefix starts every annotation that overrides a config key for
// one pod: AnnotationPrefix + "hypervisor.default_memory_mib".
const AnnotationPrefix = "io.podvm.config."

// maxAnnotatedParams bounds the kernel parameters one annotation may add.
const maxAnnotatedParams = 1024

// annotationKey is one config key a pod may override.
type annotationKey struct {
	// path: the value names a host file the shim runs or boots.
	path  bool
	apply func(h *Hypervisor, v string) error
}

// annotationKeys are every key annotations can set. Anything else under
// AnnotationPrefix is refused, so a typo never silently does nothing.
var annotationKeys = map[string]annotationKey{
	"hypervisor.kernel":              {path: true, apply: func(h *Hypervisor, v string) error { h.Kernel = v; return nil }},
	"hypervisor.initrd":              {path: true, apply: func(h *Hypervisor, v string) error { h.Initrd = v; return nil }},
	"hypervisor.qemu.path":           {path: true, apply: func(h *Hypervisor, v string) error { h.QEMU.Path = v; return nil }},
	"hypervisor.qemu.virtiofsd_path": {path: true, apply: func(h *Hypervisor, v string) error { h.QEMU.VirtiofsdPath = v; return nil }},
	"hypervisor.kernel_params":       {apply: applyKernelParams},
	"hypervisor.default_vcpus":       {apply: func(h *Hypervisor, v string) error { return parseUint32(v, 1, 255, &h.DefaultVCPUs) }},
	"hypervisor.default_memory_mib":  {apply: func(h *Hypervisor, v string) error { return parseUint32(v, 64, 1<<20, &h.DefaultMemoryMiB) }},
	"hypervisor.debug":               {apply: applyBool(func(h *Hypervisor) *bool { return &h.Debug })},
}

// AnnotationKeys lists the keys annotations can set, sorted.
func AnnotationKeys() []string {
	keys := make([]string, 0, len(annotationKeys))
	for k := range annotationKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// WithAnnotations returns a copy of c with the pod's io.podvm.config.*
// annotations applied, and the keys it applied. Annotations outside the
// prefix are not podvm's and are ignored. It refuses, naming the
// annotation and the fix, an unknown key, a key that
// runtime.enable_annotations does not list, a path outside
// runtime.valid_annotation_paths, and a value out of range. c is never
// changed.
func (c *Config) WithAnnotations(annotations map[string]string) (*Config, []string, error) {
	names := make([]string, 0, len(annotations))
	for name := range annotations {
		if strings.HasPrefix(name, AnnotationPrefix) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return c, nil, nil
	}
	sort.Strings(names)
	out := *c
	out.Hypervisor.KernelParams = append([]string(nil), c.Hypervisor.KernelParams...)
	enabled := map[string]bool{}
	for _, k := range c.Runtime.EnableAnnotations {
		enabled[k] = true
	}
	var applied []string
	for _, name := range names {
		key, value := strings.TrimPrefix(name, AnnotationPrefix), annotations[name]
		ak, known := annotationKeys[key]
		switch {
		case !known:
			return nil, nil, fmt.Errorf("annotation %s: podvm has no such key (annotations can set: %s)", name, strings.Join(AnnotationKeys(), ", "))
		case !enabled[key]:
			return nil, nil, fmt.Errorf("annotation %s: not allowed on this node (add %q to runtime.enable_annotations in the podvm config to allow it)", name, key)
		case strings.ContainsAny(value, "\x00\n\r"):
			return nil, nil, fmt.Errorf("annotation %s: value holds a control character", name)
		}
		if ak.path {
			if err := c.checkAnnotatedPath(value); err != nil {
				return nil, nil, fmt.Errorf("annotation %s: %w", name, err)
			}
		}
		if err := ak.apply(&out.Hypervisor, value); err != nil {
			return nil, nil, fmt.Errorf("annotation %s: %w", name, err)
		}
		applied = append(applied, key)
	}
	if err := out.Validate(); err != nil {
		return nil, nil, fmt.Errorf("podvm config with annotations %s: %w", strings.Join(names, ", "), err)
	}
	return &out, applied, nil
}

// checkAnnotatedPath accepts only a clean absolute path that one of
// runtime.valid_annotation_paths matches.
func (c *Config) checkAnnotatedPath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	for _, g := range c.Runtime.ValidAnnotationPaths {
		if ok, _ := filepath.Match(g, p); ok {
			return nil
		}
	}
	if len(c.Runtime.ValidAnnotationPaths) == 0 {
		return fmt.Errorf("%s: no path may be given by annotation on this node (runtime.valid_annotation_paths is empty)", p)
	}
	return fmt.Errorf("%s matches none of runtime.valid_annotation_paths (%s)", p, strings.Join(c.Runtime.ValidAnnotationPaths, ", "))
}

func applyKernelParams(h *Hypervisor, v string) error {
	if len(v) > maxAnnotatedParams {
		return fmt.Errorf("%d bytes of kernel parameters, at most %d", len(v), maxAnnotatedParams)
	}
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("kernel parameters must be printable ASCII, not %q", r)
		}
	}
	h.KernelParams = append(h.KernelParams, strings.Fields(v)...)
	return nil
}

func parseUint32(v string, lo, hi uint64, dst *uint32) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < lo || n > hi {
		return fmt.Errorf("%q: want a whole number from %d to %d", v, lo, hi)
	}
	*dst = uint32(n)
	return nil
}

func applyBool(field func(*Hypervisor) *bool) func(*Hypervisor, string) error {
	return func(h *Hypervisor, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q: want true or false", v)
		}
		*field(h) = b
		return nil
	}
}
