package node

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/podvm/podvm/runtime/config"
)

// payloadFiles are the files the image carries under Payload, installed at
// the same relative path under Prefix; optional ones may be absent.
var payloadFiles = []struct {
	rel      string
	mode     os.FileMode
	optional bool
}{
	{"bin/containerd-shim-podvm-v2", 0o755, false},
	{"bin/podvm", 0o755, false},
	{"bin/podvm-agent", 0o755, false},
	{"share/podvm/vmlinux", 0o644, false},
	{"share/podvm/initramfs.cpio", 0o644, false},
	{"share/podvm/kernel.release", 0o644, false},
	{"share/podvm/runc-features.json", 0o644, true},
}

// configRel is the configuration, written from the payload's default with
// its paths moved under Prefix.
const configRel = config.InstalledRel

// recordRel lists, one per line, every file the installer put under
// Prefix: uninstall removes exactly these, and nothing an operator added.
const recordRel = "share/podvm/installed-by-podvm-deploy"

func (in *Installer) installFiles() error {
	o := in.o
	var installed []string
	digest := sha256.New()
	for _, f := range payloadFiles {
		src := filepath.Join(o.Payload, f.rel)
		b, err := os.ReadFile(src)
		if errors.Is(err, os.ErrNotExist) && f.optional {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s from the installer image: %w (the image is incomplete: rebuild it with `podvm deploy image`)", src, err)
		}
		if err := in.put(f.rel, b, f.mode); err != nil {
			return err
		}
		fmt.Fprintf(digest, "%s %x\n", f.rel, sha256.Sum256(b))
		installed = append(installed, f.rel)
	}
	cfg, err := configFor(o.Payload, o.Prefix)
	if err != nil {
		return err
	}
	if err := in.put(configRel, cfg, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(digest, "%s %x\n", configRel, sha256.Sum256(cfg))
	in.installed = fmt.Sprintf("%x", digest.Sum(nil))
	installed = append(installed, configRel, recordRel)
	sort.Strings(installed)
	return in.put(recordRel, []byte(strings.Join(installed, "\n")+"\n"), 0o644)
}

// configFor is the payload's configuration (or the shipped default)
// relocated to prefix (config.ForPrefix).
func configFor(payload, prefix string) ([]byte, error) {
	path := filepath.Join(payload, configRel)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		b = config.DefaultTOML()
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return config.ForPrefix(b, prefix)
}

// put writes one file under Prefix unless it already has that content.
// A new file is renamed into place, so a shim binary in use is replaced,
// never overwritten while it runs.
func (in *Installer) put(rel string, data []byte, mode os.FileMode) error {
	dst := in.o.host(filepath.Join(in.o.Prefix, rel))
	if same, _ := sameContent(dst, data); same {
		if err := os.Chmod(dst, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
		in.info("unchanged  %s", filepath.Join(in.o.Prefix, rel))
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create %s on the node: %w (is the node's / mounted read-write at %s?)", filepath.Dir(dst), err, in.o.HostRoot)
	}
	tmp := dst + ".podvm-tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := os.Chmod(tmp, mode); err != nil { // WriteFile's mode is masked by the umask
		os.Remove(tmp)
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", dst, err)
	}
	in.info("installed  %s (%d bytes)", filepath.Join(in.o.Prefix, rel), len(data))
	return nil
}

func sameContent(path string, data []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() != int64(len(data)) {
		return false, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	want := sha256.Sum256(data)
	return bytes.Equal(h.Sum(nil), want[:]), nil
}

// removeFiles removes what the record lists, then the record, then each
// directory of the layout that is left empty. A file an operator added
// keeps its directory, and the step says so.
func (in *Installer) removeFiles() error {
	o := in.o
	root := o.host(o.Prefix)
	if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
		in.info("%s is not there: nothing to remove", o.Prefix)
		return nil
	}
	rec, err := os.ReadFile(filepath.Join(root, recordRel))
	if errors.Is(err, os.ErrNotExist) {
		in.info("%s has no record of an installation by podvm deploy (%s): its files are left in place", o.Prefix, recordRel)
		return nil
	} else if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(o.Prefix, recordRel), err)
	}
	var errs []error
	for _, rel := range strings.Fields(string(rec)) {
		if rel == recordRel {
			continue
		}
		if filepath.IsAbs(rel) || strings.HasPrefix(filepath.Clean(rel), "..") {
			errs = append(errs, fmt.Errorf("record %s names %q, outside the prefix: not removed", recordRel, rel))
			continue
		}
		switch err := os.Remove(filepath.Join(root, rel)); {
		case err == nil:
			in.info("removed    %s", filepath.Join(o.Prefix, rel))
		case errors.Is(err, os.ErrNotExist):
		default:
			errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(o.Prefix, rel), err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // keep the record for the next run
	}
	if err := os.Remove(filepath.Join(root, recordRel)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", filepath.Join(o.Prefix, recordRel), err)
	}
	for _, d := range []string{"share/podvm", "share", "bin", "."} {
		dir := filepath.Join(root, d)
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			if entries, rerr := os.ReadDir(dir); rerr == nil && len(entries) > 0 {
				in.info("kept %s: it holds files podvm deploy did not install", filepath.Join(o.Prefix, d))
				continue
			}
			return fmt.Errorf("remove %s: %w", filepath.Join(o.Prefix, d), err)
		}
	}
	return nil
}

// runningShims lists the pids of processes whose executable is the
// installed shim, read from the node's /proc (hostPID).
func runningShims(proc, shim string) []string {
	var out []string
	entries, _ := os.ReadDir(proc)
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		exe, _ := os.Readlink(filepath.Join(proc, e.Name(), "exe"))
		cmdline, _ := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		argv0, _, _ := strings.Cut(string(cmdline), "\x00")
		if strings.TrimSuffix(exe, " (deleted)") == shim || argv0 == shim {
			out = append(out, e.Name())
		}
	}
	return out
}
