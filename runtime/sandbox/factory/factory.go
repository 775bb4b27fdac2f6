// Package factory finds the VM template a pod VM is cloned from
// (docs/factory.md, factory.mode = "template"). A template is a directory
// under the configured template_dir named by the driver's TemplateKey (a
// hash of the guest image, size, kernel command line and VMM); the first
// shim that needs a missing one saves it, holding an flock on
// <key>.lock, while shims that find the lock held boot their VM instead
// of waiting. A directory without its completion mark (the driver's
// metadata file) is an interrupted save: the next lock holder removes it.
// Between pods one process per template runs, its holder (package hold,
// started by the driver); Clean stops them and removes the templates.
package factory

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/log"

	"github.com/podvm/podvm/runtime/factory/hold"
	"github.com/podvm/podvm/runtime/hypervisor"
)

// ErrBusy says another shim is saving the template right now.
var ErrBusy = errors.New("another pod is saving this VM template")

// CompleteMark is the file a template directory holds once its save
// completed: the QEMU driver writes its metadata last (qemu/template.go).
const CompleteMark = "template.json"

// Templates are the templates under Dir.
type Templates struct {
	Dir string
}

// For returns the template directory cfg's VM is cloned from, saving the
// template first if it is missing. cfg is the pod's VM; the template is
// saved from a copy without the pod's id, state, NIC and cgroup, so that
// no pod's resource or charge ends up in it.
func (t Templates) For(ctx context.Context, saver hypervisor.TemplateSaver, cfg hypervisor.Config) (string, error) {
	key, err := saver.TemplateKey(cfg)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(t.Dir, key)
	if complete(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return "", fmt.Errorf("VM templates: %w", err)
	}
	unlock, err := lock(dir + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if complete(dir) { // saved while we waited for nothing: the lock was free
		return dir, nil
	}
	state := dir + ".boot"
	if err := removeAll(dir, state); err != nil {
		return "", fmt.Errorf("VM template %s: remove an interrupted save: %w", dir, err)
	}
	save := cfg
	save.ID, save.StateDir, save.Net, save.Cgroup, save.Template = "template-"+key, state, nil, nil, ""
	start := time.Now()
	err = saver.SaveTemplate(ctx, save, dir)
	if rerr := removeAll(state); rerr != nil && err == nil {
		log.G(ctx).WithError(rerr).Warnf("VM template %s: remove the saving VM's state dir", dir)
	}
	if err != nil {
		return "", err
	}
	log.G(ctx).WithFields(log.Fields{"template": dir, "took": time.Since(start).Round(time.Millisecond)}).Info("VM template saved")
	return dir, nil
}

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CompleteMark))
	return err == nil
}

// lock takes path's flock without waiting: ErrBusy when it is held.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("VM template lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("VM template lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// removeAll removes template directories (hold.RemoveTemplate).
func removeAll(dirs ...string) error {
	var errs []error
	for _, d := range dirs {
		errs = append(errs, hold.RemoveTemplate(d))
	}
	return errors.Join(errs...)
}

// Clean stops the holder of every template under Dir (package hold) and
// removes Dir: `podvm factory clean`. A template a pod is saving right now
// (its lock held) fails it with ErrBusy, the rest is cleaned first. Pods
// running keep their VMs: a clone's VMM holds its own copy of the memfd.
// It returns the templates removed.
func (t Templates) Clean() (removed []string, err error) {
	entries, err := os.ReadDir(t.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("VM templates: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || filepath.Ext(e.Name()) != "" { // <key>.boot: a save's VM
			continue
		}
		dir := filepath.Join(t.Dir, e.Name())
		unlock, err := lock(dir + ".lock")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dir, err))
			continue
		}
		err = errors.Join(hold.Stop(dir), removeAll(dir))
		unlock()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, err
	}
	return removed, os.RemoveAll(t.Dir)
}
