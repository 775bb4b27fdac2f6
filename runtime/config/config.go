// Package config loads podvm's runtime configuration (a TOML file, like
// Kata's configuration.toml). default.toml, embedded here, is both the
// documentation of every key and the source of the defaults, so the two can
// never disagree.
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/podvm/podvm/agent/api/contract"
)

//go:embed default.toml
var defaultTOML []byte

// DefaultTOML is the commented default configuration, as installed.
func DefaultTOML() []byte { return append([]byte(nil), defaultTOML...) }

// Config is the whole file.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor"`
	Runtime    Runtime    `toml:"runtime"`
	Factory    Factory    `toml:"factory"`
}

// Factory modes (docs/factory.md).
const (
	FactoryNone     = "none"
	FactoryTemplate = "template"
	FactoryCache    = "cache"
)

// Factory says how pod VMs come to be: booted (none), restored from a
// template of a booted VM (template), or taken from VMs that `podvm
// factory serve` booted ahead (cache, runtime/factory/cache).
type Factory struct {
	Mode string `toml:"mode"`
	// TemplateDir holds the templates, one directory per key
	// (runtime/sandbox/factory).
	TemplateDir string `toml:"template_dir"`
	// CacheSize is how many VMs the cache keeps booted ahead.
	CacheSize int `toml:"cache_size"`
	// CacheMaxAge retires a cached VM older than this (0: never).
	CacheMaxAge Duration `toml:"cache_max_age"`
	// CacheRefillQuiet is how long the cache's refill waits after the
	// last claim before it boots (pods start in bursts, and a boot in a
	// burst takes the pods' CPU); CacheRefillQuietMax bounds that wait,
	// from when the pool fell short (docs/factory.md section 9).
	CacheRefillQuiet    Duration `toml:"cache_refill_quiet"`
	CacheRefillQuietMax Duration `toml:"cache_refill_quiet_max"`
}

// Hypervisor selects and sizes the VMM.
type Hypervisor struct {
	Driver       string `toml:"driver"`
	Kernel       string `toml:"kernel"`
	Initrd       string `toml:"initrd"`
	RuncFeatures string `toml:"runc_features"`
	// GuestOCIRuntime is the OCI runtime the agent runs containers with:
	// "runc", "crun" (in the initramfs when podvm image build found
	// Debian's crun) or "auto" (crun when the initramfs has it, else runc).
	GuestOCIRuntime  string   `toml:"guest_oci_runtime"`
	KernelParams     []string `toml:"kernel_params"`
	Accelerator      string   `toml:"accelerator"`
	DefaultVCPUs     uint32   `toml:"default_vcpus"`
	DefaultMemoryMiB uint32   `toml:"default_memory_mib"`
	SharedFS         string   `toml:"shared_fs"`
	// AllowGuestSetID lets the guest make setuid and setgid files in the
	// share (docs/security.md, H5); off, virtiofsd refuses those modes.
	AllowGuestSetID bool   `toml:"allow_guest_setid"`
	AgentTransport  string `toml:"agent_transport"`
	Debug           bool   `toml:"debug"`
	QEMU            QEMU   `toml:"qemu"`
	// CloudHypervisor holds the cloud-hypervisor driver's own settings.
	CloudHypervisor CloudHypervisor `toml:"cloud_hypervisor"`
}

// CloudHypervisor holds the cloud-hypervisor driver's own settings.
type CloudHypervisor struct {
	Path             string `toml:"path"`               // "" looks cloud-hypervisor up on PATH
	VirtiofsdPath    string `toml:"virtiofsd_path"`     // "" tries the usual locations
	MaxVCPUs         uint32 `toml:"max_vcpus"`          // 0: no CPU hot-plug
	MemoryHotplugMiB uint32 `toml:"memory_hotplug_mib"` // 0: no memory hot-plug
}

// QEMU holds the qemu driver's own settings.
type QEMU struct {
	Path          string `toml:"path"`
	VirtiofsdPath string `toml:"virtiofsd_path"`
	// VhostDeviceVsockPath is vhost-device-vsock, which makes the agent's
	// channel hybrid vsock. "" looks in the install's libexec/podvm, then
	// on PATH; not found there, the channel is virtio-serial.
	VhostDeviceVsockPath string `toml:"vhost_device_vsock_path"`
	TCGTBSizeMiB         uint32 `toml:"tcg_tb_size_mib"`
	// Jail runs each VM's QEMU as a uid of its own from
	// [JailUIDBase, JailUIDBase+JailUIDCount), without capabilities
	// (docs/design.md, "QEMU's jail").
	Jail         bool   `toml:"jail"`
	JailUIDBase  uint32 `toml:"jail_uid_base"`
	JailUIDCount uint32 `toml:"jail_uid_count"`
}

// Runtime holds host-side settings of the shim.
type Runtime struct {
	StateDir     string   `toml:"state_dir"`
	AgentTimeout Duration `toml:"agent_timeout"`
	// EnableAnnotations lists the keys (AnnotationKeys) a pod may
	// override with an io.podvm.config.<key> annotation.
	EnableAnnotations []string `toml:"enable_annotations"`
	// ValidAnnotationPaths are the globs a path given by an annotation
	// must match.
	ValidAnnotationPaths []string `toml:"valid_annotation_paths"`
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration time.Duration

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like \"30s\": %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Default returns the configuration that default.toml describes.
func Default() *Config {
	c, err := parse(defaultTOML, "default.toml", nil)
	if err != nil {
		panic("podvm: embedded default.toml is invalid: " + err.Error())
	}
	return c
}

// Parse decodes data (named name in errors) on top of the defaults.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name, Default())
}

func parse(data []byte, name string, base *Config) (*Config, error) {
	c, err := decode(data, name, base)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("podvm config %s: %w", name, err)
	}
	return c, nil
}

// decode reads data (named name in errors) on top of a copy of base,
// without validating: a drop-in may be valid only with the files after it.
func decode(data []byte, name string, base *Config) (*Config, error) {
	c := &Config{}
	if base != nil {
		*c = *base
		c.Hypervisor.KernelParams = append([]string(nil), base.Hypervisor.KernelParams...)
		c.Runtime.EnableAnnotations = append([]string(nil), base.Runtime.EnableAnnotations...)
		c.Runtime.ValidAnnotationPaths = append([]string(nil), base.Runtime.ValidAnnotationPaths...)
	}
	dec := toml.NewDecoder(strings.NewReader(string(data))).DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, describeDecodeError(name, err)
	}
	return c, nil
}

// describeDecodeError turns go-toml's errors into "file:line:col: what; fix".
func describeDecodeError(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var lines []string
		for _, e := range strict.Errors {
			row, col := e.Position()
			lines = append(lines, fmt.Sprintf("%s:%d:%d: unknown key %q (see `podvm config default` for every valid key)",
				name, row, col, strings.Join(e.Key(), ".")))
		}
		return errors.New(strings.Join(lines, "\n"))
	}
	var derr *toml.DecodeError
	if errors.As(err, &derr) {
		row, col := derr.Position()
		return fmt.Errorf("%s:%d:%d: TOML syntax error: %s", name, row, col, derr.Error())
	}
	return fmt.Errorf("%s: %w", name, err)
}

// Validate checks values that TOML types cannot.
func (c *Config) Validate() error {
	h := c.Hypervisor
	var errs []error
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		errs = append(errs, fmt.Errorf("hypervisor.%s = %q: must be one of %s", key, v, strings.Join(allowed, ", ")))
	}
	oneOf("driver", h.Driver, "qemu", "cloud-hypervisor")
	if h.Driver == "cloud-hypervisor" {
		// Cloud Hypervisor has no software emulation, no 9p and no
		// virtio-serial agent channel: say so here, not at the first pod.
		if h.Accelerator == "tcg" {
			errs = append(errs, errors.New(`hypervisor.accelerator = "tcg": cloud-hypervisor needs hardware KVM (use driver "qemu" for TCG)`))
		}
		if h.SharedFS == "9p" {
			errs = append(errs, errors.New(`hypervisor.shared_fs = "9p": cloud-hypervisor shares files only with virtiofs`))
		}
		if h.AgentTransport == "serial" {
			errs = append(errs, errors.New(`hypervisor.agent_transport = "serial": cloud-hypervisor reaches the agent over (hybrid) vsock only`))
		}
	}
	oneOf("accelerator", h.Accelerator, "auto", "kvm", "tcg")
	oneOf("guest_oci_runtime", h.GuestOCIRuntime, contract.OCIRuntimeRunc, contract.OCIRuntimeCrun, contract.OCIRuntimeAuto)
	oneOf("shared_fs", h.SharedFS, "virtiofs", "9p")
	oneOf("agent_transport", h.AgentTransport, "auto", "vsock", "serial")
	if h.DefaultVCPUs < 1 || h.DefaultVCPUs > 255 {
		errs = append(errs, fmt.Errorf("hypervisor.default_vcpus = %d: must be 1..255", h.DefaultVCPUs))
	}
	if h.DefaultMemoryMiB < 64 {
		errs = append(errs, fmt.Errorf("hypervisor.default_memory_mib = %d: a guest needs at least 64", h.DefaultMemoryMiB))
	}
	if q := h.QEMU; q.Jail && (q.JailUIDBase < 65536 || q.JailUIDCount == 0 || uint64(q.JailUIDBase)+uint64(q.JailUIDCount) > 1<<31) {
		errs = append(errs, fmt.Errorf("hypervisor.qemu.jail_uid_base = %d, jail_uid_count = %d: need a non-empty range from 65536 up that ends by 2^31",
			q.JailUIDBase, q.JailUIDCount))
	}
	if h.Kernel == "" || h.Initrd == "" {
		errs = append(errs, errors.New("hypervisor.kernel and hypervisor.initrd must be set"))
	}
	errs = append(errs, c.validateFactory()...)
	if c.Runtime.StateDir == "" {
		errs = append(errs, errors.New("runtime.state_dir must be set"))
	}
	if c.Runtime.AgentTimeout <= 0 {
		errs = append(errs, errors.New("runtime.agent_timeout must be positive"))
	}
	for _, k := range c.Runtime.EnableAnnotations {
		if _, ok := annotationKeys[k]; !ok {
			errs = append(errs, fmt.Errorf("runtime.enable_annotations: %q is not a key annotations can set (known: %s)", k, strings.Join(AnnotationKeys(), ", ")))
		}
	}
	for _, g := range c.Runtime.ValidAnnotationPaths {
		if _, err := filepath.Match(g, "/"); err != nil || !filepath.IsAbs(g) {
			errs = append(errs, fmt.Errorf("runtime.valid_annotation_paths: %q is not an absolute path glob", g))
		}
	}
	return errors.Join(errs...)
}

// validateCache checks what a cached VM needs: the QEMU driver (its VMs
// are adopted over its state directory's sockets) and the agent on
// virtio-serial.
func (c *Config) validateCache() []error {
	var errs []error
	if h := c.Hypervisor; h.Driver != "qemu" {
		errs = append(errs, fmt.Errorf(`factory.mode = "cache": driver %q cannot hand booted VMs to pods; use driver "qemu"`, h.Driver))
	}
	if c.Hypervisor.AgentTransport == "vsock" {
		errs = append(errs, errors.New(`factory.mode = "cache": hypervisor.agent_transport = "vsock", but a cached VM's agent channel is virtio-serial: set it to "auto" or "serial"`))
	}
	return errs
}

// maxCacheSize bounds factory.cache_size: each cached VM holds its guest
// RAM while it waits.
const maxCacheSize = 64

// validateFactory checks [factory]: template mode needs what a template
// can carry (docs/factory.md): QEMU, the share by 9p, the agent on
// virtio-serial.
func (c *Config) validateFactory() []error {
	f, h := c.Factory, c.Hypervisor
	var errs []error
	if f.CacheSize < 0 || f.CacheSize > maxCacheSize {
		errs = append(errs, fmt.Errorf("factory.cache_size = %d: must be from 0 to %d", f.CacheSize, maxCacheSize))
	}
	if f.CacheMaxAge < 0 {
		errs = append(errs, fmt.Errorf("factory.cache_max_age = %s: must not be negative", time.Duration(f.CacheMaxAge)))
	}
	if f.CacheRefillQuiet < 0 {
		errs = append(errs, fmt.Errorf("factory.cache_refill_quiet = %s: must not be negative", time.Duration(f.CacheRefillQuiet)))
	}
	if f.CacheRefillQuietMax <= 0 {
		errs = append(errs, fmt.Errorf("factory.cache_refill_quiet_max = %s: must be positive", time.Duration(f.CacheRefillQuietMax)))
	}
	switch f.Mode {
	case FactoryNone:
		return errs
	case FactoryCache:
		return append(errs, c.validateCache()...)
	case FactoryTemplate:
	default:
		return append(errs, fmt.Errorf("factory.mode = %q: must be one of none, cache, template", f.Mode))
	}
	if h.Driver != "qemu" {
		errs = append(errs, fmt.Errorf(`factory.mode = "template": driver %q cannot restore VM templates; use driver "qemu"`, h.Driver))
	}
	if h.SharedFS != "9p" {
		errs = append(errs, fmt.Errorf(`factory.mode = "template": hypervisor.shared_fs = %q, but clones share by 9p (QEMU 7.2 cannot migrate virtio-fs): set shared_fs = "9p"`, h.SharedFS))
	}
	if h.AgentTransport == "vsock" {
		errs = append(errs, errors.New(`factory.mode = "template": hypervisor.agent_transport = "vsock", but a clone's agent channel is virtio-serial: set it to "auto" or "serial"`))
	}
	if !filepath.IsAbs(f.TemplateDir) {
		errs = append(errs, fmt.Errorf("factory.template_dir = %q: must be an absolute path", f.TemplateDir))
	}
	return errs
}
