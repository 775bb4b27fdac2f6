package secret

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/podvm/podvm/agent/api/contract"
)

// Key is the secret the agent admits hosts with. It changes once in a VM
// restored from a template (Reread), so the transport asks for it on every
// connection rather than keeping a copy.
type Key struct {
	mu     sync.Mutex
	secret []byte
}

// NewKey holds secret.
func NewKey(secret []byte) (*Key, error) {
	if err := contract.CheckSecret(secret); err != nil {
		return nil, err
	}
	return &Key{secret: secret}, nil
}

// Bytes is the current secret.
func (k *Key) Bytes() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.secret
}

// PlatformDevicesDir lists the guest's platform devices (a variable for tests).
var PlatformDevicesDir = "/sys/bus/platform/devices"

// Reread replaces the key with the secret the VMM carries now: in a clone
// of a template that is the clone's own secret (the template's agent read
// the template's and Forget unbound the fw_cfg driver). It binds the
// driver again so that sysfs lists the clone's fw_cfg files, reads the
// secret, and unbinds. A secret equal to the current one is refused: the
// VMM was not given a new one, and the template's must not stay valid.
func (k *Key) Reread() error {
	if err := bindFwCfg(); err != nil {
		return err
	}
	s, from, err := Read()
	ferr := Forget()
	if err != nil {
		return fmt.Errorf("reread the agent secret: %w", err)
	}
	if ferr != nil {
		return fmt.Errorf("reread the agent secret from %s: %w", from, ferr)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if string(s) == string(k.secret) {
		return errors.New("reread the agent secret: the VMM carries the same secret as before; a clone must be given its own")
	}
	k.secret = s
	return nil
}

// bindFwCfg binds the fw_cfg driver to every fw_cfg platform device (ACPI
// id QEMU0002, or "fw_cfg" when described on the command line) not bound.
func bindFwCfg() error {
	devs, err := os.ReadDir(PlatformDevicesDir)
	if err != nil {
		return fmt.Errorf("find the fw_cfg device: %w", err)
	}
	var errs []error
	found := false
	for _, d := range devs {
		name := d.Name()
		if !strings.HasPrefix(name, "QEMU0002") && !strings.HasPrefix(name, "fw_cfg") {
			continue
		}
		found = true
		if _, err := os.Stat(filepath.Join(PlatformDevicesDir, name, "driver")); err == nil {
			continue // bound already
		}
		if err := os.WriteFile(filepath.Join(FwCfgDriverDir, "bind"), []byte(name), 0); err != nil {
			errs = append(errs, fmt.Errorf("bind fw_cfg device %s: %w", name, err))
		}
	}
	if !found {
		return fmt.Errorf("no fw_cfg device in %s", PlatformDevicesDir)
	}
	return errors.Join(errs...)
}
