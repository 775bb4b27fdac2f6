package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vhost-device-vsock is shipped in libexec/podvm from the flag, else
// PATH; found nowhere, install goes on and says so.
func TestInstallVsockd(t *testing.T) {
	src := filepath.Join(t.TempDir(), "vhost-device-vsock")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, flag, path string
		shipped          bool
	}{
		{"flag", src, t.TempDir(), true},
		{"PATH", "", filepath.Dir(src), true},
		{"nowhere", "", t.TempDir(), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			prefix := t.TempDir()
			var out bytes.Buffer
			if err := installVsockd(tt.flag, prefix, &out); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(filepath.Join(prefix, "libexec/podvm/vhost-device-vsock"))
			if tt.shipped && (err != nil || st.Mode().Perm() != 0o755) {
				t.Errorf("not shipped: %v", err)
			}
			if !tt.shipped && (err == nil || !strings.Contains(out.String(), "virtio-serial")) {
				t.Errorf("shipped from nowhere (%v), or not said: %q", err, out.String())
			}
		})
	}
	if err := installVsockd(src+".gone", t.TempDir(), &bytes.Buffer{}); err == nil {
		t.Error("a missing --vhost-device-vsock was accepted")
	}
}
