package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/internal/childproc"
)

// The hybrid device: a vhost-user-vsock device on vhost-device-vsock's
// socket in its own directory, and neither a kernel vsock device nor the
// serial port.
func TestQEMUArgsHybridVsock(t *testing.T) {
	l := baseLaunch()
	l.Accel, l.Transport, l.HybridVsock = hypervisor.AccelTCG, contract.TransportVsock, true
	got := joined(qemuArgs(l))
	want := "-chardev socket,id=vsock,path=/run/podvm/sb1/vsock/vhost.sock -device vhost-user-vsock-device,chardev=vsock"
	if !strings.Contains(got, want) {
		t.Errorf("missing %q in\n%s", want, got)
	}
	for _, no := range []string{"vhost-vsock-device", "vhostfd", "virtio-serial", "agent.sock"} {
		if strings.Contains(got, no) {
			t.Errorf("unexpected %q in\n%s", no, got)
		}
	}
}

// The channel's order: hybrid vsock when vhost-device-vsock is found
// (configured or on PATH), else virtio-serial by default; serial when
// configured; a configured daemon that is missing is an error.
func TestChooseChannel(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "vhost-device-vsock")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	tests := []struct {
		name       string
		path, conf string
		configured contract.Transport
		want       contract.Transport
		hybrid     string
		why, err   string
	}{
		{"configured binary", empty, bin, "", contract.TransportVsock, bin, "hybrid vsock through " + bin, ""},
		{"on PATH", dir, "", "", contract.TransportVsock, bin, "hybrid vsock", ""},
		{"vsock asked, binary found", dir, "", contract.TransportVsock, contract.TransportVsock, bin, "hybrid vsock", ""},
		{"serial asked", dir, bin, contract.TransportSerial, contract.TransportSerial, "", "configured", ""},
		{"not found", empty, "", "", contract.TransportSerial, "", "vhost-device-vsock not found", ""},
		{"configured binary missing", empty, bin + ".gone", "", "", "", "", "vhost-device-vsock binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", tt.path)
			ch, err := New(Options{VhostDeviceVsockPath: tt.conf}).chooseChannel(tt.configured)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.Transport != tt.want || ch.HybridVsock != tt.hybrid || !strings.Contains(ch.Why, tt.why) {
				t.Errorf("got %+v, want %s, %q, a reason with %q", ch, tt.want, tt.hybrid, tt.why)
			}
		})
	}
}

// vhost-device-vsock runs as the VM's jail uid when QEMU is jailed (one
// uid per pod, and QEMU reaches its directory), else as nobody under root.
func TestHybridVsockIdentity(t *testing.T) {
	j := &jail{cred: childproc.Jail{UID: 1879048200, GID: 1879048200, Groups: []uint32{106}}}
	if got := hybridVsockIdentity(j, true); got == nil || got.UID != 1879048200 || got.GID != 1879048200 || len(got.Groups) != 0 {
		t.Errorf("jailed: %+v, want the jail's uid and gid, no groups", got)
	}
	if got := hybridVsockIdentity(nil, true); got == nil || got.UID != hybridVsockUID || got.GID != hybridVsockUID {
		t.Errorf("unjailed under root: %+v, want nobody", got)
	}
	if got := hybridVsockIdentity(nil, false); got != nil {
		t.Errorf("not root: %+v, want the shim's own user", got)
	}
}
