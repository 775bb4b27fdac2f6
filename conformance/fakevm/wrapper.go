package fakevm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runcGlobalValueFlags are runc's global flags that take a value as the
// next argument; the first other argument that is not a flag is the command.
var runcGlobalValueFlags = map[string]bool{"--log": true, "--log-format": true, "--root": true, "--criu": true, "--rootless": true}

// Command finds runc's command in its arguments ("create", "delete", ...),
// and the bundle directory for create and run ("" for other commands).
func Command(args []string) (cmd, bundle string, err error) {
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			break
		}
		if runcGlobalValueFlags[a] {
			i++
		}
	}
	if i >= len(args) {
		return "", "", nil
	}
	cmd = args[i]
	if cmd != "create" && cmd != "run" {
		return cmd, "", nil
	}
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--bundle" || a == "-b":
			if j+1 >= len(rest) {
				return cmd, "", fmt.Errorf("runc %s: %s without a value", cmd, a)
			}
			return cmd, rest[j+1], nil
		case strings.HasPrefix(a, "--bundle="), strings.HasPrefix(a, "-b="):
			_, v, _ := strings.Cut(a, "=")
			return cmd, v, nil
		}
	}
	// runc's default bundle is the working directory.
	wd, err := os.Getwd()
	return cmd, wd, err
}

// EditBundle dresses up the container in bundle: it rewrites config.json
// and writes the fake /proc files into bundle/fakevm, which goes with the
// bundle when containerd deletes the container.
func EditBundle(bundle string, h Host) error {
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the bundle's config: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	if err := Edit(&spec, filepath.Join(bundle, "fakevm"), h); err != nil {
		return err
	}
	out, err := json.Marshal(&spec)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp := path + ".fakevm"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return fmt.Errorf("write the bundle's config: %w", err)
	}
	return os.Rename(tmp, path)
}
