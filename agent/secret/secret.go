// Package secret reads the per-VM secret podvm-agent checks every host
// connection against (contract.GuestAuth), from where the VMM put it
// without a command line: QEMU's fw_cfg file contract.FwCfgSecretName, or,
// with Cloud Hypervisor, an SMBIOS OEM string (contract.OEMStringPrefix).
//
// Both are readable by root in the guest only (sysfs mode 0400), and
// stay readable there for the VM's life: a guest cannot unmap fw_cfg or
// the SMBIOS table. Forget removes the fw_cfg files from sysfs; a guest
// root process could still read the device's I/O ports or /dev/mem. That
// is accepted: the secret only opens this VM's own agent, which root in
// the guest controls anyway. Containers do not see /sys/firmware (the
// runtime's default masked paths), and it never leaves the guest.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/podvm/podvm/agent/api/contract"
)

// Where the guest kernel shows the secret (variables for tests).
var (
	FwCfgPath     = contract.FwCfgSecretPath
	DMIEntriesDir = "/sys/firmware/dmi/entries"
	// FwCfgDriverDir is the fw_cfg platform driver, whose devices Forget
	// unbinds.
	FwCfgDriverDir = "/sys/bus/platform/drivers/fw_cfg"
)

// ErrNone is a guest with no secret anywhere: the agent serves nobody then.
var ErrNone = errors.New("no agent secret: neither fw_cfg " + contract.FwCfgSecretName + " nor an SMBIOS OEM string " + contract.OEMStringPrefix + "...")

// Read returns the secret and where it came from.
func Read() ([]byte, string, error) {
	raw, err := os.ReadFile(FwCfgPath)
	if err == nil {
		if err := contract.CheckSecret(raw); err != nil {
			return nil, "", fmt.Errorf("fw_cfg %s: %w", contract.FwCfgSecretName, err)
		}
		return raw, "fw_cfg " + contract.FwCfgSecretName, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("read fw_cfg %s: %w", contract.FwCfgSecretName, err)
	}
	s, err := fromOEMStrings(DMIEntriesDir)
	if err != nil {
		return nil, "", err
	}
	return s, "SMBIOS OEM string", nil
}

// FromFile reads a secret from a file (the agent run off a guest, in tests).
func FromFile(path string) ([]byte, error) {
	s, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent secret: %w", err)
	}
	if err := contract.CheckSecret(s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// fromOEMStrings looks through the SMBIOS type 11 (OEM strings) entries.
func fromOEMStrings(dir string) ([]byte, error) {
	entries, err := filepath.Glob(filepath.Join(dir, "11-*", "raw"))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		raw, err := os.ReadFile(e)
		if err != nil {
			return nil, fmt.Errorf("read SMBIOS OEM strings: %w", err)
		}
		for _, s := range oemStrings(raw) {
			if secret, ok := contract.ParseOEMString(s); ok {
				return secret, nil
			}
		}
	}
	return nil, ErrNone
}

// oemStrings returns the strings of one SMBIOS structure: a header whose
// second byte is the formatted area's length, then NUL-terminated strings
// ended by an empty one.
func oemStrings(raw []byte) []string {
	if len(raw) < 2 || int(raw[1]) > len(raw) {
		return nil
	}
	var out []string
	for _, s := range bytes.Split(raw[raw[1]:], []byte{0}) {
		if len(s) == 0 {
			break
		}
		out = append(out, string(s))
	}
	return out
}

// Forget unbinds the fw_cfg driver from its devices, which removes
// /sys/firmware/qemu_fw_cfg: the secret is then in the agent's memory
// only, as far as sysfs goes. Without a fw_cfg driver there is nothing to
// do.
func Forget() error {
	devs, err := os.ReadDir(FwCfgDriverDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("forget the fw_cfg secret: %w", err)
	}
	var errs []error
	for _, d := range devs {
		if d.Type()&os.ModeSymlink == 0 {
			continue // bind, unbind, uevent; devices are symlinks
		}
		if err := os.WriteFile(filepath.Join(FwCfgDriverDir, "unbind"), []byte(d.Name()), 0); err != nil {
			errs = append(errs, fmt.Errorf("unbind fw_cfg device %s: %w", d.Name(), err))
		}
	}
	return errors.Join(errs...)
}
