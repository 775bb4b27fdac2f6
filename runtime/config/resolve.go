package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Where the configuration comes from, highest precedence first (Kata's
// order, docs/cli.md "Configuration"):
//
//  1. an explicit path: containerd's runtime option ConfigPath (ctr
//     --runtime-config-path), or a command's --config;
//  2. $PODVM_CONFIG;
//  3. the operator's file, <EtcDir>/config.toml;
//  4. the install's shipped file, PREFIX/share/podvm/config.toml, which
//     `podvm install` rewrites on every run;
//  5. the built-in defaults (default.toml).
//
// The first of 1-4 that is given (1, 2) or exists (3, 4) is the base, read
// on top of the defaults. Unless the base was named explicitly (1, 2), the
// drop-ins <EtcDir>/config.d/*.toml are then read on top, in lexical order.
// A named file is exactly what its namer asked for: a test bed, a
// benchmark or a second handler (podvm-clh) pins its whole configuration
// that way, and a node-wide drop-in written for the node's own handler
// must not change it behind their back.

// DefaultPath is the operator's configuration file when EtcDir is not
// changed.
const DefaultPath = "/etc/podvm/config.toml"

// EnvPath names the configuration file in the shim's (or podvm's)
// environment.
const EnvPath = "PODVM_CONFIG"

// EtcDir is the operator's configuration directory for an install that
// names none (InstalledEtcDirRel). A variable so that tests can move it.
var EtcDir = "/etc/podvm"

// InstalledRel is where an install keeps its shipped config, relative to
// its prefix (`podvm install --prefix P`: P/bin/<shim>, P/share/podvm/...).
const InstalledRel = "share/podvm/config.toml"

// InstalledEtcDirRel, relative to an install's prefix, is an optional file
// naming the install's operator directory instead of EtcDir (`podvm
// install --etc-dir`): a development or test install keeps its own, so
// that the machine's /etc/podvm never changes what its tests run.
const InstalledEtcDirRel = "share/podvm/etc-dir"

// Origin says why a file is part of the effective configuration.
type Origin string

// The origins, in the order of their precedence.
const (
	OriginExplicit Origin = "explicit" // runtime option ConfigPath or --config
	OriginEnv      Origin = "env"      // $PODVM_CONFIG
	OriginOperator Origin = "operator" // <etc dir>/config.toml
	OriginInstall  Origin = "install"  // PREFIX/share/podvm/config.toml
	OriginDefaults Origin = "defaults" // no file: default.toml
	OriginDropIn   Origin = "drop-in"  // <etc dir>/config.d/*.toml
)

// Source is one part of the effective configuration.
type Source struct {
	Origin Origin `json:"origin" yaml:"origin"`
	// Path is the file; "" for OriginDefaults.
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
}

func (s Source) String() string {
	if s.Path == "" {
		return string(s.Origin) + " (built in, no file)"
	}
	return fmt.Sprintf("%s (%s)", s.Path, s.Origin)
}

// Effective is a resolved configuration and the parts it was made of.
type Effective struct {
	Config *Config
	// Sources are the base (a file, or OriginDefaults) and then the
	// drop-ins, in the order they were read.
	Sources []Source
}

// Base is the file the configuration is based on, or the operator's path
// when there is none (where a file would be read from; absent, the
// defaults apply).
func (e *Effective) Base() string {
	if p := e.Sources[0].Path; p != "" {
		return p
	}
	return filepath.Join(EtcDir, "config.toml")
}

// Describe is the sources on one line, for messages and logs.
func (e *Effective) Describe() string {
	parts := make([]string, len(e.Sources))
	for i, s := range e.Sources {
		parts[i] = s.String()
	}
	return strings.Join(parts, " + ")
}

// Locate lists the files that make the configuration of the program at
// executable (a program in an install's PREFIX/bin; "" when not
// installed), given explicit (a runtime option or --config, may be ""),
// without reading them.
func Locate(explicit, executable string) ([]Source, error) {
	if explicit != "" {
		return []Source{{OriginExplicit, explicit}}, nil
	}
	if env := os.Getenv(EnvPath); env != "" {
		return []Source{{OriginEnv, env}}, nil
	}
	etc := OperatorDir(executable)
	base := Source{Origin: OriginDefaults}
	if p := filepath.Join(etc, "config.toml"); exists(p) {
		base = Source{OriginOperator, p}
	} else if p := InstallConfig(executable); executable != "" && exists(p) {
		base = Source{OriginInstall, p}
	}
	dropIns, err := filepath.Glob(filepath.Join(etc, "config.d", "*.toml"))
	if err != nil {
		return nil, fmt.Errorf("podvm config drop-ins: %w", err)
	}
	sort.Strings(dropIns)
	sources := []Source{base}
	for _, p := range dropIns {
		sources = append(sources, Source{OriginDropIn, p})
	}
	return sources, nil
}

// Resolve reads the configuration Locate finds: the base on top of the
// defaults, each drop-in on top, then validates the result once.
func Resolve(explicit, executable string) (*Effective, error) {
	sources, err := Locate(explicit, executable)
	if err != nil {
		return nil, err
	}
	c := Default()
	for _, s := range sources {
		if s.Path == "" {
			continue
		}
		data, err := os.ReadFile(s.Path)
		if err != nil {
			return nil, fmt.Errorf("read podvm config (%s): %w", s.Origin, err)
		}
		if c, err = decode(data, s.Path, c); err != nil {
			return nil, err
		}
	}
	e := &Effective{Config: c, Sources: sources}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("podvm config %s: %w", e.Describe(), err)
	}
	return e, nil
}

// ResolveFor names the base file of the configuration Resolve reads (the
// operator's path when only the defaults apply), for callers that load
// one file; Resolve also reads the drop-ins.
func ResolveFor(path, executable string) string {
	sources, err := Locate(path, executable)
	if err != nil || sources[0].Path == "" {
		return filepath.Join(EtcDir, "config.toml")
	}
	return sources[0].Path
}

// Load reads path on top of the defaults. A missing operator file
// (<EtcDir>/config.toml) is not an error (the defaults apply); a missing
// file anywhere else is, since someone asked for it by name.
func Load(path string) (*Config, error) {
	operator := filepath.Join(EtcDir, "config.toml")
	if path == "" {
		path = operator
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && (path == operator || path == DefaultPath) {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read podvm config: %w", err)
	}
	return parse(data, path, Default())
}

// InstallConfig is the config of the install that executable (a program in
// <prefix>/bin) belongs to: <prefix>/share/podvm/config.toml.
func InstallConfig(executable string) string {
	return filepath.Join(installPrefix(executable), InstalledRel)
}

// OperatorDir is the operator's configuration directory of the install
// executable belongs to: the one its InstalledEtcDirRel names, else EtcDir.
func OperatorDir(executable string) string {
	if executable == "" {
		return EtcDir
	}
	b, err := os.ReadFile(filepath.Join(installPrefix(executable), InstalledEtcDirRel))
	if dir := strings.TrimSpace(string(b)); err == nil && filepath.IsAbs(dir) {
		return dir
	}
	return EtcDir
}

func installPrefix(executable string) string { return filepath.Dir(filepath.Dir(executable)) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
