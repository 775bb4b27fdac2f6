package qemu

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
)

// templateFormat changes whenever what a template holds changes, so that
// templates of an older podvm are never restored.
const templateFormat = 2 // 2: a NIC (hub port) in every template

// fileID identifies a file's content without reading it: a rebuilt guest
// image or an upgraded QEMU has another size or mtime.
type fileID struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
}

func identify(path string) (fileID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	return fileID{Path: path, Size: st.Size(), MTime: st.ModTime().UnixNano()}, nil
}

// TemplateKey is the hash of what the command line of cfg's template
// depends on (hypervisor.TemplateSaver): format, guest image, QEMU binary,
// size, kernel command line, accelerator and TCG cache, seccomp. 16 hex
// digits: a directory name short enough for socket paths under it.
func (d *Driver) TemplateKey(cfg hypervisor.Config) (string, error) {
	qemuPath, err := d.qemuBinary()
	if err != nil {
		return "", err
	}
	want := cfg.Accelerator
	if want == "" {
		want = d.opts.Accelerator
	}
	if want, err = hypervisor.ParseAccelerator(string(want)); err != nil {
		return "", err
	}
	acc, _, err := d.decideAccel(want)
	if err != nil {
		return "", err
	}
	var tsc uint64
	if acc == hypervisor.AccelTCG {
		tsc, _, _ = HostTSCKHz()
	}
	params := append(slices.Clip(cfg.KernelParams), contract.TemplateParam+"=1")
	cmdline, err := kernelCmdline(acc, cfg.Debug, tsc, params)
	if err != nil {
		return "", err
	}
	key := struct {
		Format                   int
		Kernel, Initrd, QEMU     fileID
		VCPUs, MemoryMiB, TBSize uint32
		Cmdline                  string
		Accel                    hypervisor.Accelerator
		Seccomp                  bool
	}{Format: templateFormat, VCPUs: cfg.VCPUs, MemoryMiB: cfg.MemoryMiB, TBSize: d.opts.TBSizeMiB,
		Cmdline: cmdline, Accel: acc, Seccomp: !d.opts.NoSeccomp}
	for _, f := range []struct {
		dst  *fileID
		path string
	}{{&key.Kernel, cfg.KernelPath}, {&key.Initrd, cfg.InitrdPath}, {&key.QEMU, qemuPath}} {
		if *f.dst, err = identify(f.path); err != nil {
			return "", fmt.Errorf("qemu: VM template key: %w", err)
		}
	}
	raw, err := json.Marshal(key)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8]), nil
}
