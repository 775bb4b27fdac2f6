package main

import (
	"testing"
)

func TestParseFlagsSkipsBadArguments(t *testing.T) {
	t.Setenv("podvm_agent_log", "debug")
	tests := []struct {
		name     string
		args     []string
		listen   string
		runc     string
		badCount int
	}{
		{"none", nil, "", "/usr/bin/runc", 0},
		{"good", []string{"-listen", "unix:/x.sock", "-runc", "/r"}, "unix:/x.sock", "/r", 0},
		{"bad first", []string{"-bogus", "-listen", "serial"}, "serial", "/usr/bin/runc", 1},
		{"bad between", []string{"-runc", "/r", "-x=1", "-y", "-listen", "vsock"}, "vsock", "/r", 2},
		{"missing value", []string{"-listen"}, "", "/usr/bin/runc", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, errs := parseFlags(tt.args)
			if o.listen != tt.listen || o.cfg.Runc != tt.runc || len(errs) != tt.badCount {
				t.Errorf("listen %q runc %q errors %v; want %q %q and %d errors", o.listen, o.cfg.Runc, errs, tt.listen, tt.runc, tt.badCount)
			}
			if o.logLevel != "debug" {
				t.Errorf("log level %q, want debug from the environment", o.logLevel)
			}
		})
	}
}
