package factory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/podvm/podvm/runtime/factory/hold"
	"github.com/podvm/podvm/runtime/hypervisor"
)

// fakeSaver saves a template as a directory with the completion mark, or
// fails (leaving a partial directory, as a killed save would).
type fakeSaver struct {
	saves []hypervisor.Config
	fail  bool
}

func (f *fakeSaver) TemplateKey(cfg hypervisor.Config) (string, error) { return "k", nil }

func (f *fakeSaver) SaveTemplate(ctx context.Context, cfg hypervisor.Config, dir string) error {
	f.saves = append(f.saves, cfg)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if f.fail {
		return errors.New("boom")
	}
	if err := os.WriteFile(filepath.Join(dir, CompleteMark), nil, 0o400); err != nil {
		return err
	}
	return os.Chmod(dir, 0o500)
}

type cgroup struct{}

func (cgroup) Add(int) error { return nil }

func TestForSavesOnceWithoutThePodsResources(t *testing.T) {
	tpl := Templates{Dir: filepath.Join(t.TempDir(), "templates")}
	s := &fakeSaver{}
	pod := hypervisor.Config{ID: "pod", StateDir: "/s/pod", Net: []hypervisor.NetDevice{{MAC: "02:00:00:00:00:01"}}, Cgroup: cgroup{}, VCPUs: 1, MemoryMiB: 256}
	for range 2 {
		dir, err := tpl.For(context.Background(), s, pod)
		if err != nil || dir != filepath.Join(tpl.Dir, "k") {
			t.Fatalf("For = %q, %v", dir, err)
		}
	}
	if len(s.saves) != 1 {
		t.Fatalf("%d saves, want 1", len(s.saves))
	}
	got := s.saves[0]
	if got.ID == "pod" || got.StateDir != filepath.Join(tpl.Dir, "k.boot") || got.Net != nil || got.Cgroup != nil || got.MemoryMiB != 256 {
		t.Errorf("saved from %+v: want the pod's size without its id, state, NIC or cgroup", got)
	}
}

func TestForBootsWhileAnotherSaves(t *testing.T) {
	tpl := Templates{Dir: t.TempDir()}
	unlock, err := lock(filepath.Join(tpl.Dir, "k.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	s := &fakeSaver{}
	if _, err := tpl.For(context.Background(), s, hypervisor.Config{}); !errors.Is(err, ErrBusy) || len(s.saves) != 0 {
		t.Errorf("For with the lock held: %v, %d saves; want ErrBusy and none", err, len(s.saves))
	}
}

func TestForRemovesAnInterruptedSave(t *testing.T) {
	tpl := Templates{Dir: t.TempDir()}
	s := &fakeSaver{fail: true}
	if _, err := tpl.For(context.Background(), s, hypervisor.Config{}); err == nil {
		t.Fatal("a failed save succeeded")
	}
	// The fake left "k" without its mark, read-only, like a killed save.
	if err := os.Chmod(filepath.Join(tpl.Dir, "k"), 0o500); err != nil {
		t.Fatal(err)
	}
	s.fail = false
	dir, err := tpl.For(context.Background(), s, hypervisor.Config{})
	if err != nil || !complete(dir) || len(s.saves) != 2 {
		t.Errorf("after an interrupted save: %q, %v, %d saves", dir, err, len(s.saves))
	}
}

// Clean stops a template's holder and removes every template, but not
// one a pod is saving.
func TestClean(t *testing.T) {
	root := filepath.Join(t.TempDir(), "templates")
	tpl := Templates{Dir: root}
	dir, err := tpl.For(context.Background(), &fakeSaver{}, hypervisor.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ram"), make([]byte, 8192), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := hold.Start(hold.Spec{Dir: dir, RAM: "ram", Mark: CompleteMark}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hold.Stop(dir) })
	busy := filepath.Join(root, "other")
	if err := os.Mkdir(busy, 0o700); err != nil {
		t.Fatal(err)
	}
	unlock, err := lock(busy + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpl.Clean(); !errors.Is(err, ErrBusy) {
		t.Errorf("Clean while a template is saved: %v, want ErrBusy", err)
	}
	if hold.Running(dir) != 0 {
		t.Error("the holder still runs after Clean")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("template %s left: %v", dir, err)
	}
	unlock()
	removed, err := tpl.Clean()
	if err != nil || len(removed) != 1 || removed[0] != busy {
		t.Errorf("Clean: %v, %v; want %s removed", removed, err, busy)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("template_dir left: %v", err)
	}
}
