package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podvm/podvm/internal/hostbed"
)

// hostileAttacks are the hostile agent's attacks (hostileagent), each
// served by a runtime handler "podvm-<attack>" whose VMs boot it.
var hostileAttacks = []string{"oom", "forge", "loris"}

// hostileBed is a CRI containerd with the podvm handler (for the victim)
// and one handler per hostile attack, whose config files are rewritten
// before each hostile pod starts (a shim reads its config when it starts).
type hostileBed struct {
	*criHarness
	baseConfig string // the install's config text
	initrd     string // the hostile initramfs
	configs    map[string]string
}

func startHostileBed(t *testing.T) *hostileBed {
	env := requireEnv(t)
	tools := requireCRI(t)
	dir := t.TempDir()
	base, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	b := &hostileBed{baseConfig: string(base), configs: map[string]string{}}
	b.initrd = hostileInitramfs(t, dir, filepath.Join(env.Prefix, "share", "podvm", "initramfs.cpio"))
	var handlers []hostbed.Handler
	for _, a := range hostileAttacks {
		b.configs[a] = filepath.Join(dir, "config-"+a+".toml")
		b.writeConfig(t, a, nil)
		handlers = append(handlers, hostbed.PodvmHandler("podvm-"+a, env.ShimBinary, b.configs[a]))
	}
	c := startCRI(t, env, tools, handlers...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	b.criHarness = &criHarness{t: t, c: c, dir: dir, ctx: ctx}
	b.crictl("pull", criBusybox)
	return b
}

var (
	initrdLine       = regexp.MustCompile(`(?m)^initrd = .*$`)
	kernelParamsLine = regexp.MustCompile(`(?m)^kernel_params = .*$`)
)

// writeConfig makes attack's handler boot the hostile initramfs with the
// attack, and victims, on the kernel command line.
func (b *hostileBed) writeConfig(t *testing.T, attack string, victims []string) {
	t.Helper()
	params := fmt.Sprintf("%q", "podvm_hostile="+attack)
	if len(victims) > 0 {
		params += fmt.Sprintf(", %q", "podvm_hostile_victims="+strings.Join(victims, ","))
	}
	cfg := initrdLine.ReplaceAllString(b.baseConfig, fmt.Sprintf("initrd = %q", b.initrd))
	cfg = kernelParamsLine.ReplaceAllString(cfg, "kernel_params = ["+params+"]")
	if cfg == b.baseConfig || !strings.Contains(cfg, b.initrd) || !strings.Contains(cfg, "podvm_hostile=") {
		t.Fatalf("could not point the install's config at the hostile initramfs")
	}
	if err := os.WriteFile(b.configs[attack], []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runHostilePod starts a pod on attack's handler, with a sleeping
// container, and registers their removal and leak check.
func (b *hostileBed) runHostilePod(attack string, linux map[string]any) (pod, ctr string) {
	b.t.Helper()
	podCfg := b.podConfig("hostile-"+attack, linux)
	pod = b.crictl("runp", "--runtime", "podvm-"+attack, podCfg)
	b.t.Cleanup(func() { b.removePod(pod) })
	return pod, b.startContainer(pod, podCfg, b.containerConfig("hostile-"+attack+"-ctr", nil, "sleep", "1000"))
}

// removePod stops and removes pod and returns what it left behind.
func (b *hostileBed) removePod(pod string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b.c.Crictl(ctx, "stopp", pod)
	if r := b.c.Crictl(ctx, "rmp", "-f", pod); r.ExitCode != 0 {
		return []string{"rmp: " + r.Stderr}
	}
	var leaks []string
	for range 50 {
		if leaks = hostbed.Leaks(pod); len(leaks) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return leaks
}

// shimOf is the pid of pod's shim (0 if there is none).
func (b *hostileBed) shimOf(pod string) int {
	for _, p := range b.c.PodvmShims() {
		if strings.Contains(strings.Join(p.Cmdline, " "), pod) {
			return p.Pid
		}
	}
	return 0
}

// runBytes is what the files under dir hold on dir's own file system
// (/run's tmpfs): the space allocated, not files' apparent sizes, and not
// what is mounted below dir (the share's volumes and root filesystems).
func runBytes(dir string) int64 {
	var root syscall.Stat_t
	if syscall.Stat(dir, &root) != nil {
		return 0
	}
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Dev != root.Dev {
			return filepath.SkipDir
		}
		if fi.Mode().IsRegular() {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// crictlWithin runs crictl with a CRI call deadline of d, as the kubelet
// gives each call one.
func (b *hostileBed) crictlWithin(d time.Duration, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	full := append([]string{"--runtime-endpoint", b.c.CRIEndpoint(), "--timeout", d.String()}, args...)
	return run(exec.CommandContext(ctx, b.c.crictl, full...), nil, nil)
}

// hostileInitramfs builds the hostile agent and returns the install's
// initramfs (runc, the directories the agent needs) with a second archive
// appended whose /init is the hostile agent: the kernel unpacks both, the
// later /init replacing the real agent.
func hostileInitramfs(t *testing.T, dir, real string) string {
	agent := filepath.Join(dir, "hostileagent")
	build := exec.Command("go", "build", "-trimpath", "-o", agent, "github.com/podvm/podvm/runtime/integration/hostileagent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the hostile agent: %v\n%s", err, out)
	}
	base, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.Write(base)
	newcEntry(&buf, "init", 0o100755, prog)
	newcEntry(&buf, "TRAILER!!!", 0, nil)
	out := filepath.Join(dir, "hostile-initramfs.cpio")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// newcEntry appends one entry of a newc cpio archive.
func newcEntry(buf *bytes.Buffer, name string, mode uint32, data []byte) {
	pad := func() {
		for buf.Len()%4 != 0 {
			buf.WriteByte(0)
		}
	}
	pad()
	fmt.Fprintf(buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	buf.WriteString(name + "\x00")
	pad()
	buf.Write(data)
	pad()
}
