package hostbed

import (
	"slices"
	"testing"
)

func TestStackOptionsConfig(t *testing.T) {
	n := &BridgeNetwork{ConfDir: "/w/cni/net.d", BinDir: "/usr/lib/cni"}

	plain, err := StackOptions{Dir: "/w", Extra: "# extra\n"}.Config("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if plain.CRI != nil || !slices.Equal(plain.DisabledPlugins, NoCRIPlugins) || plain.Address != "/w/c.sock" || plain.Extra != "# extra\n" {
		t.Errorf("without handlers: %+v", plain)
	}

	handlers := []Handler{RuncHandler("runc", "/c/runc", ""), PodvmHandler("podvm", "/p/shim", "")}
	if _, err := (StackOptions{Dir: "/w", Handlers: handlers}).Config("/w/certs.d", nil); err == nil {
		t.Error("a CRI containerd without a pod network: no error")
	}
	cri, err := StackOptions{Dir: "/w", Handlers: handlers}.Config("/w/certs.d", n)
	if err != nil {
		t.Fatal(err)
	}
	want := CRIConfig{SandboxImage: SandboxImage, RegistryConfigPath: "/w/certs.d", CNIBinDir: "/usr/lib/cni",
		CNIConfDir: "/w/cni/net.d", Handlers: handlers}
	if cri.CRI == nil || cri.CRI.SandboxImage != want.SandboxImage || cri.CRI.RegistryConfigPath != want.RegistryConfigPath ||
		cri.CRI.CNIBinDir != want.CNIBinDir || cri.CRI.CNIConfDir != want.CNIConfDir || !slices.Equal(cri.CRI.Handlers, want.Handlers) {
		t.Errorf("with handlers: %+v", cri.CRI)
	}
	if !slices.Equal(cri.DisabledPlugins, NoNRI) {
		t.Errorf("with handlers, disabled plugins %v", cri.DisabledPlugins)
	}
	pinned, _ := StackOptions{Dir: "/w", Handlers: handlers, SandboxImage: "example.test/pause:1"}.Config("/w/certs.d", n)
	if pinned.CRI.SandboxImage != "example.test/pause:1" {
		t.Errorf("sandbox image %q", pinned.CRI.SandboxImage)
	}
}
