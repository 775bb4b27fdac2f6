package benchhost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/podvm/podvm/bench/shimlog"
	"github.com/podvm/podvm/runtime/config"
)

// DefaultFactoryModes are the factory modes a bench host measures unless
// told otherwise, side by side. The cache's pool holds Options.CacheSize
// booted VMs the whole run: the density benchmark reads MemAvailable only
// with the pool full (as at its start) and each pod's own processes, so
// the pool's VMs count in no pod's figures.
var DefaultFactoryModes = []string{config.FactoryNone, config.FactoryTemplate, config.FactoryCache}

// AllFactoryModes are the modes a bench host can measure.
var AllFactoryModes = []string{config.FactoryNone, config.FactoryTemplate, config.FactoryCache}

// DefaultCacheSize is the cache mode's pool unless Options.CacheSize says
// otherwise: ten, so that the startup benchmark's ten pods at once all
// find a VM booted ahead.
const DefaultCacheSize = 10

// PodvmHandler is the CRI handler of the podvm configuration with factory
// mode: "podvm" for none (the installed configuration, as before modes
// were measured), "podvm-MODE" for the others.
func PodvmHandler(mode string) string {
	if mode == config.FactoryNone {
		return "podvm"
	}
	return "podvm-" + mode
}

// IsPodvm says whether handler runs pods in podvm VMs (of any factory mode).
func IsPodvm(handler string) bool {
	return handler == "podvm" || strings.HasPrefix(handler, "podvm-")
}

// FactoryMode is the factory mode of a podvm handler ("" for others).
func FactoryMode(handler string) string {
	switch {
	case handler == "podvm":
		return config.FactoryNone
	case IsPodvm(handler):
		return strings.TrimPrefix(handler, "podvm-")
	}
	return ""
}

// checkFactoryModes refuses a mode the bench host cannot measure.
func checkFactoryModes(modes []string) error {
	if len(modes) == 0 {
		return fmt.Errorf("no factory mode to measure: want one or more of %s", strings.Join(AllFactoryModes, ", "))
	}
	for i, m := range modes {
		if !slices.Contains(AllFactoryModes, m) {
			return fmt.Errorf("factory mode %q: the bench host measures %s", m, strings.Join(AllFactoryModes, ", "))
		}
		if slices.Contains(modes[:i], m) {
			return fmt.Errorf("factory mode %q given twice", m)
		}
	}
	return nil
}

// withFactory is cfg (a podvm configuration's text) with factory.mode set
// to mode and what that mode needs (docs/factory.md): for template,
// templates in templateDir, the share by 9p and the agent on
// virtio-serial; for cache, a pool of cacheSize VMs and the agent on
// virtio-serial.
func withFactory(cfg []byte, mode, templateDir string, cacheSize int) ([]byte, error) {
	var m map[string]any
	if err := toml.Unmarshal(cfg, &m); err != nil {
		return nil, fmt.Errorf("podvm config: %w", err)
	}
	table := func(name string) map[string]any {
		t, _ := m[name].(map[string]any)
		if t == nil {
			t = map[string]any{}
			m[name] = t
		}
		return t
	}
	table("factory")["mode"] = mode
	hv := table("hypervisor")
	switch mode {
	case config.FactoryTemplate:
		table("factory")["template_dir"] = templateDir
		hv["shared_fs"] = "9p"
	case config.FactoryCache:
		table("factory")["cache_size"] = cacheSize
	}
	if mode != config.FactoryNone && hv["agent_transport"] == "vsock" {
		hv["agent_transport"] = "serial"
	}
	out, err := toml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("podvm config: %w", err)
	}
	if _, err := config.Parse(out, "podvm config with factory.mode "+mode); err != nil {
		return nil, err
	}
	return out, nil
}

// writeModeConfigs writes one podvm configuration per factory mode, derived
// from base (the installed one with StateDir), and names their handlers.
func (h *Host) writeModeConfigs(base []byte) error {
	h.PodvmConfigs = map[string]string{}
	for _, mode := range h.opts.FactoryModes {
		handler := PodvmHandler(mode)
		text, err := withFactory(base, mode, h.TemplateDir(), h.opts.CacheSize)
		if err != nil {
			return fmt.Errorf("%s: %w", handler, err)
		}
		path := filepath.Join(h.Dir, handler+".toml")
		if err := os.WriteFile(path, text, 0o644); err != nil {
			return err
		}
		h.PodvmConfigs[handler] = path
		h.Handlers = append(h.Handlers, handler)
	}
	return nil
}

// TemplateDir holds the VM templates of the template mode's handler.
func (h *Host) TemplateDir() string { return filepath.Join(h.Dir, "templates") }

// PodvmHandlers are the host's podvm handlers, one per factory mode, in
// the order of Handlers.
func (h *Host) PodvmHandlers() []string {
	var out []string
	for _, handler := range h.Handlers {
		if IsPodvm(handler) {
			out = append(out, handler)
		}
	}
	return out
}

// FirstPod is the first pod of a factory mode that saves a VM template:
// timed apart, before any benchmark, so that no benchmark's figure mixes
// the template's save with clones' starts.
type FirstPod struct {
	Handler string
	Times   PodTimes
	Err     error
}

// warmTemplates starts and removes one pod of each handler whose mode
// saves a VM template (the save happens in that pod's start).
func (h *Host) warmTemplates(ctx context.Context) {
	for _, handler := range h.PodvmHandlers() {
		if FactoryMode(handler) != config.FactoryTemplate {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		p, t, err := h.StartPod(sctx, handler, "template-first-"+handler, []string{"echo", "template-first"}, "template-first")
		cancel()
		if p != nil {
			if rerr := h.RemovePod(context.WithoutCancel(ctx), p); rerr != nil && err == nil {
				err = rerr
			}
		}
		h.FirstPods = append(h.FirstPods, FirstPod{Handler: handler, Times: t, Err: err})
		h.step("%s: first pod (saves the VM template) to its output in %s (err: %v)", handler, t.Total.Round(time.Millisecond), err)
	}
}

// Clones counts the shims' VM starts by sandbox id: cloned from a VM
// template, or booted after a clone failed (the shim falls back to a boot,
// docs/factory.md), with the first failure's reason.
type Clones struct {
	Cloned, Fallbacks map[string]bool
	FirstFallback     string
}

// Log messages of the shim's factory path (runtime/sandbox).
const (
	msgCloned    = "pod VM cloned from a VM template"
	msgNotCloned = "pod VM not cloned from a VM template: booting it"
)

// ReadClones reads which sandboxes the factory gave a VM (cloned from a
// VM template, or taken from the VM cache) and which booted their own
// after it failed, from containerd's log.
func (h *Host) ReadClones() (Clones, error) {
	c := Clones{Cloned: map[string]bool{}, Fallbacks: map[string]bool{}}
	b, err := os.ReadFile(h.LogPath())
	if err != nil {
		return c, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.Contains(line, "from a VM template") && !strings.Contains(line, "from the VM cache") {
			continue
		}
		kv := shimlog.ParseLogfmt(line)
		switch {
		case strings.HasPrefix(kv["msg"], msgCloned), kv["msg"] == msgCacheTakenMsg:
			c.Cloned[kv["sandbox"]] = true
		case kv["msg"] == msgNotCloned, kv["msg"] == msgCacheNotTakenMsg:
			c.Fallbacks[kv["sandbox"]] = true
			if c.FirstFallback == "" {
				c.FirstFallback = kv["error"]
			}
		}
	}
	return c, nil
}
