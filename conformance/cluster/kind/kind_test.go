package kind

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"go.yaml.in/yaml/v3"
)

func testProvider(t *testing.T, workers int) *Provider {
	prefix := t.TempDir()
	os.MkdirAll(filepath.Join(prefix, "bin"), 0o755)
	os.WriteFile(filepath.Join(prefix, "bin", "containerd-shim-podvm-v2"), nil, 0o755)
	return New(Options{Name: "podvm", PodvmPrefix: prefix, Workers: workers, Dir: t.TempDir(),
		Kind: "true", Docker: "true", Kubectl: "true", OverheadMemory: "512Mi", OverheadCPU: "250m"})
}

// kindConfig is the part of kind's v1alpha4 Cluster we generate.
type kindConfig struct {
	Kind       string `yaml:"kind"`
	APIVersion string `yaml:"apiVersion"`
	Name       string `yaml:"name"`
	Nodes      []struct {
		Role        string `yaml:"role"`
		ExtraMounts []struct {
			HostPath      string `yaml:"hostPath"`
			ContainerPath string `yaml:"containerPath"`
			ReadOnly      bool   `yaml:"readOnly"`
		} `yaml:"extraMounts"`
	} `yaml:"nodes"`
	ContainerdConfigPatches []string `yaml:"containerdConfigPatches"`
}

func TestConfig(t *testing.T) {
	for _, workers := range []int{0, 2} {
		p := testProvider(t, workers)
		text, err := p.Config()
		if err != nil {
			t.Fatal(err)
		}
		var cfg kindConfig
		dec := yaml.NewDecoder(strings.NewReader(text))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil {
			t.Fatalf("generated config is not valid YAML of the expected shape: %v\n%s", err, text)
		}
		if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" || cfg.Name != "podvm" {
			t.Errorf("header: %+v", cfg)
		}
		if len(cfg.Nodes) != 1+workers || cfg.Nodes[0].Role != "control-plane" {
			t.Fatalf("nodes: %+v", cfg.Nodes)
		}
		for _, n := range cfg.Nodes {
			mounts := map[string]string{}
			for _, m := range n.ExtraMounts {
				mounts[m.HostPath] = m.ContainerPath
			}
			if mounts["/dev/kvm"] != "/dev/kvm" {
				t.Errorf("node %s lacks /dev/kvm: %+v", n.Role, n.ExtraMounts)
			}
			if mounts[p.opts.PodvmPrefix] != p.opts.PodvmPrefix {
				t.Errorf("node %s lacks the podvm prefix at the same path: %+v", n.Role, n.ExtraMounts)
			}
		}
		if len(cfg.ContainerdConfigPatches) != 1 {
			t.Fatalf("patches: %q", cfg.ContainerdConfigPatches)
		}
		var patch map[string]any
		if err := toml.Unmarshal([]byte(cfg.ContainerdConfigPatches[0]), &patch); err != nil {
			t.Fatalf("containerd patch is not TOML: %v\n%s", err, cfg.ContainerdConfigPatches[0])
		}
		rt := patch["plugins"].(map[string]any)["io.containerd.cri.v1.runtime"].(map[string]any)["containerd"].(map[string]any)["runtimes"].(map[string]any)["podvm"].(map[string]any)
		if rt["runtime_type"] != "io.containerd.podvm.v2" || rt["runtime_path"] != p.opts.PodvmPrefix+"/bin/containerd-shim-podvm-v2" {
			t.Errorf("podvm runtime: %v", rt)
		}
	}
}

func TestUpRefusesWithoutHardwareKVM(t *testing.T) {
	p := testProvider(t, 0)
	p.kvm = func() (bool, string) { return false, "/dev/kvm is kvm_pvm (software)" }
	p.run = func(context.Context, []byte, string, ...string) ([]byte, error) {
		t.Fatal("no command may run without hardware KVM")
		return nil, nil
	}
	_, err := p.Up(context.Background(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "kvm_pvm") || !strings.Contains(err.Error(), "local provider") {
		t.Fatalf("err = %v, want the KVM reason and the alternative", err)
	}
}

func TestUpCommands(t *testing.T) {
	p := testProvider(t, 1)
	p.kvm = func() (bool, string) { return true, "vmx" }
	var cmds []string
	p.run = func(_ context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
		c := name + " " + strings.Join(args, " ")
		cmds = append(cmds, c)
		switch {
		case strings.HasPrefix(c, "true get nodes"):
			return []byte("podvm-control-plane\npodvm-worker\n"), nil
		case strings.Contains(c, "exec -i") && !strings.Contains(string(stdin), "systemctl restart containerd"):
			return nil, errors.New("node setup must restart containerd")
		}
		return nil, nil
	}
	if _, err := p.Up(context.Background(), io.Discard); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"true info --format {{.ServerVersion}}",
		"true create cluster --name podvm --config " + p.configPath() + " --kubeconfig " + p.kubeconfig() + " --wait 5m",
		"true get nodes --name podvm",
		"true exec -i podvm-control-plane bash -s",
		"true exec -i podvm-worker bash -s",
		"true --kubeconfig " + p.kubeconfig() + " apply -f -",
	}
	if strings.Join(cmds, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(cmds, "\n"), strings.Join(want, "\n"))
	}
}
