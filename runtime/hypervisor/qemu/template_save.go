package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/factory/hold"
	"github.com/podvm/podvm/runtime/hypervisor"
)

var _ hypervisor.TemplateSaver = (*Driver)(nil)

// migrateTimeout bounds saving a template's device state (about 100 KB:
// RAM stays in its file).
const migrateTimeout = 30 * time.Second

// SaveTemplate boots a VM from cfg with its RAM in dir's file, waits until
// its agent admits the host, saves the device state next to it and stops
// the VM. The agent is asked only a Handover it refuses (warmAgent):
// GuestDetails would make the guest's boot_id, which every clone would
// then share. dir must not exist; on failure nothing of it is left. cfg's
// share and NICs are replaced: a template has an empty share of its own
// and one NIC without a host side.
func (d *Driver) SaveTemplate(ctx context.Context, cfg hypervisor.Config, dir string) (err error) {
	if cfg, err = templateLaunch(cfg); err != nil {
		return fmt.Errorf("qemu: save VM template: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("qemu: save VM template: %w (remove the old template first)", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			err = fmt.Errorf("qemu: save VM template %s: %w", dir, err)
		}
	}()
	r := &templateRole{dir: dir, save: true}
	cfg.Net = nil
	cfg.KernelParams = append(slices.Clip(cfg.KernelParams), contract.TemplateParam+"=1")
	cfg.SharedDir = r.path(templateShareName)
	if err := os.Mkdir(cfg.SharedDir, 0o555); err != nil {
		return err
	}
	vm, err := d.Create(ctx, cfg)
	if err != nil {
		return err
	}
	v := vm.(*VM)
	v.tpl = r
	defer v.Stop(context.WithoutCancel(ctx))
	if err := v.Start(ctx); err != nil {
		return err
	}
	conn, err := v.dialAgentReady(ctx)
	if err != nil {
		return err
	}
	err = warmAgent(ctx, conn)
	conn.Close()
	if err != nil {
		return err
	}
	// The agent must have seen the hang-up, so that every clone starts
	// waiting for a host rather than inside this session.
	time.Sleep(serialHangupGrace)
	state, err := r.stateFile()
	if err != nil {
		return err
	}
	defer state.Close()
	if err := v.saveState(ctx, state); err != nil {
		return err
	}
	if err := v.Stop(ctx); err != nil {
		return err
	}
	l := v.launchCopy()
	if err := r.finish(l); err != nil {
		return err
	}
	// Clones map the RAM from its holder's sealed memfd, never the file.
	r.meta = metaOf(l)
	return hold.Start(r.holdSpec(v.qemuPath))
}

// launchCopy is the VM's launch plan as started.
func (v *VM) launchCopy() launch {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.launch
}

// stateFDName is the QMP name of the template's state file.
const stateFDName = "template-state"

// saveState pauses the guest for good and migrates its devices into the
// template's state file, passed to QEMU over QMP (getfd): QEMU 7.2's
// outgoing fd: migration takes a named fd only, and exec: would need a
// process QEMU's seccomp filter forbids it to spawn.
func (v *VM) saveState(ctx context.Context, state *os.File) error {
	v.mu.Lock()
	qmp := v.qmp
	v.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	if err := qmp.SendFD(ctx, stateFDName, state); err != nil {
		return err
	}
	if err := qmp.Execute(ctx, "stop", nil, nil); err != nil {
		return err
	}
	if err := ignoreSharedRAM(ctx, qmp); err != nil {
		return err
	}
	if err := qmp.Execute(ctx, "migrate", map[string]any{"uri": "fd:" + stateFDName}, nil); err != nil {
		return err
	}
	for {
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error-desc"`
		}
		if err := qmp.Execute(ctx, "query-migrate", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration to the state file %s: %s", st.Status, st.Error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration to the state file: still %q: %w", st.Status, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ignoreSharedRAM sets the x-ignore-shared capability: RAM in a file
// stays there, and the stream carries the devices only (about 100 KB).
func ignoreSharedRAM(ctx context.Context, qmp *qmpClient) error {
	caps := []map[string]any{{"capability": "x-ignore-shared", "state": true}}
	return qmp.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil)
}

// finish writes what clones need besides RAM and state (the template's
// agent secret and the command line) and makes every file read-only: no
// clone may change the template. The command line (templateMetaName) is
// written last: its presence says the template is complete
// (runtime/sandbox/factory).
func (r *templateRole) finish(l launch) error {
	meta, err := json.MarshalIndent(metaOf(l), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(r.path(templateSecretName), l.Secret, 0o400); err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{templateRAMName, templateStateName} {
		errs = append(errs, os.Chmod(r.path(name), 0o400))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.WriteFile(r.path(templateMetaName), append(meta, '\n'), 0o400); err != nil {
		return err
	}
	return os.Chmod(r.dir, 0o500)
}
