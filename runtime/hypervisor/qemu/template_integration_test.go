package qemu

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/agentclient"
	"github.com/podvm/podvm/runtime/factory/hold"
	"github.com/podvm/podvm/runtime/hypervisor"
)

// identity is what a VM must not share with another: the kernel's boot id
// and the first random bytes it makes after the hand-over (the agent's
// next auth challenge, which comes from getrandom).
type identity struct {
	BootID    string
	Random16  string
	OpensWith bool // the template's secret opens the agent
}

// One template, a clone restored without the hand-over (it stands for the
// template: its identity is the template's) and two clones handed over.
// Each clone's agent answers, reads a file from its own share, has a
// boot_id and random bytes of its own and refuses the template's secret;
// the template's files are unchanged. PODVM_TEST_SKIP_HANDOVER=1 skips the
// hand-over for every clone, to show that the identity check catches it.
func TestTemplateClonesIntegration(t *testing.T) {
	needRootAndQEMU(t)
	if _, err := exec.LookPath("busybox"); err != nil {
		missing(t, "busybox not found: apt-get install busybox-static")
	}
	kernel, initrd := guestImage(t)
	root, err := os.MkdirTemp("/tmp", "pvt")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(root) })
	d := New(Options{})
	tpl := filepath.Join(root, "tpl")
	begin := time.Now()
	must(t, d.SaveTemplate(context.Background(), cloneConfig(t, root, "tpl", kernel, initrd), tpl))
	t.Cleanup(func() { hold.Stop(tpl) })
	t.Logf("template saved in %v: %s", time.Since(begin).Round(time.Millisecond), templateFiles(t, tpl))
	if hold.Running(tpl) == 0 {
		t.Error("no holder runs for the template after SaveTemplate")
	}
	ramSum := fileSum(t, filepath.Join(tpl, templateRAMName))
	tplSecret, err := os.ReadFile(filepath.Join(tpl, templateSecretName))
	must(t, err)

	skipAll := os.Getenv("PODVM_TEST_SKIP_HANDOVER") == "1"
	ids := map[string]identity{}
	var vms []*VM
	for _, name := range []string{"c0", "c1", "c2"} {
		skipHandover = skipAll || name == "c0"
		cfg := cloneConfig(t, root, name, kernel, initrd)
		cfg.Template = tpl
		begin := time.Now()
		vm := startClone(t, d, cfg)
		skipHandover = false
		ready := time.Since(begin)
		vms = append(vms, vm)
		id, client := readIdentity(t, vm, tplSecret)
		ids[name] = id
		t.Logf("%s: start to agent ready (restore + hand-over) %v; boot_id %s, first random bytes %s, template secret opens it: %v",
			name, ready.Round(time.Millisecond), id.BootID, id.Random16, id.OpensWith)
		probeShare(t, client, cfg, name)
		t.Logf("%s: PSS of its template RAM mapping %s", name, ramPSS(t, vm))
		if err := attackRAM(vm); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"c1", "c2"} {
		if ids[name].OpensWith && !skipAll {
			t.Errorf("%s: the template's secret opens the clone's agent", name)
		}
	}
	checkDistinct(t, ids)
	for _, vm := range vms {
		pids := vm.Pids()
		must(t, vm.Stop(context.Background()))
		assertGone(t, vm, vm.cfg, pids)
	}
	if fileSum(t, filepath.Join(tpl, templateRAMName)) != ramSum {
		t.Error("the template's RAM file changed while clones ran")
	}
}

// cloneConfig is a VM of the test's with its own state dir and share.
func cloneConfig(t *testing.T, root, name, kernel, initrd string) hypervisor.Config {
	t.Helper()
	share := filepath.Join(root, name+"-share")
	must(t, os.Mkdir(share, 0o755))
	return hypervisor.Config{
		ID: "tpl-" + name, StateDir: filepath.Join(root, name+"-state"),
		KernelPath: kernel, InitrdPath: initrd,
		VCPUs: 1, MemoryMiB: 256,
		SharedDir: share, SharedFS: contract.SharedFS9p,
		Transport: contract.TransportSerial,
	}
}

func startClone(t *testing.T, d *Driver, cfg hypervisor.Config) *VM {
	t.Helper()
	vm, err := d.Create(context.Background(), cfg)
	must(t, err)
	t.Cleanup(func() { vm.Stop(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := vm.Start(ctx); err != nil {
		t.Fatalf("start clone %s: %v; console: %s; qemu.log: %s", cfg.ID, err, tailFile(vm.Info().ConsolePath),
			tailFile(filepath.Join(cfg.StateDir, qemuLogName)))
	}
	return vm.(*VM)
}

// readIdentity tries the template's secret first, recording the agent's
// challenge (the first random bytes since the hand-over), then connects
// as the shim does and reads the boot id from GuestDetails.
func readIdentity(t *testing.T, vm *VM, tplSecret []byte) (identity, *agentclient.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The first DialAgent after a hand-over gets its session: it must
	// answer a call at once, for the same guest as every later session.
	keptBootID := ""
	if vm.handedOverKept() {
		start := time.Now()
		kept, err := agentclient.Connect(ctx, vm.DialAgent, time.Second, vm.Done())
		if err != nil {
			t.Fatalf("%s: the hand-over's session: %v", vm.cfg.ID, err)
		}
		keptBootID = kept.Details.BootId
		t.Logf("%s: GuestDetails on the hand-over's session in %s", vm.cfg.ID, time.Since(start).Round(time.Millisecond))
		kept.Close()
	}
	time.Sleep(serialHangupGrace)
	c, err := (&net.Dialer{}).DialContext(ctx, "unix", vm.Path(agentSocketName))
	must(t, err)
	rec := &recordingConn{Conn: c}
	l := vm.launchCopy()
	l.Secret = tplSecret
	err = handshake(ctx, rec, maxHandshakeTimeout, l)
	c.Close()
	if err != nil && !errors.Is(err, contract.ErrAuthFailed) {
		t.Fatalf("%s: handshake: %v", vm.cfg.ID, err)
	}
	id := identity{OpensWith: err == nil, Random16: challengeOf(t, rec.read.String())}
	time.Sleep(serialHangupGrace)
	client, err := agentclient.Connect(ctx, vm.DialAgent, 60*time.Second, vm.Done())
	if err != nil {
		t.Fatalf("%s: agent: %v; console: %s", vm.cfg.ID, err, tailFile(vm.Info().ConsolePath))
	}
	t.Cleanup(func() { client.Close() })
	id.BootID = client.Details.BootId
	if keptBootID != "" && keptBootID != id.BootID {
		t.Errorf("%s: boot_id %s on the hand-over's session, %s on a later one", vm.cfg.ID, keptBootID, id.BootID)
	}
	return id, client
}

// recordingConn keeps what was read from the connection.
type recordingConn struct {
	net.Conn
	read bytes.Buffer
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Write(b[:n])
	return n, err
}

// challengeOf is the first 16 bytes of the agent's challenge, in hex.
func challengeOf(t *testing.T, transcript string) string {
	t.Helper()
	for line := range strings.SplitSeq(transcript, "\n") {
		if h, ok := strings.CutPrefix(line, contract.ChallengePrefix); ok && len(h) >= 32 {
			return h[:32]
		}
	}
	t.Fatalf("no challenge in %q", transcript)
	return ""
}

// checkDistinct fails when two VMs share a boot id or random bytes.
func checkDistinct(t *testing.T, ids map[string]identity) {
	t.Helper()
	names := []string{"c0", "c1", "c2"}
	for i, a := range names {
		for _, b := range names[i+1:] {
			if ids[a].BootID == ids[b].BootID {
				t.Errorf("%s and %s share boot_id %s", a, b, ids[a].BootID)
			}
			if ids[a].Random16 == ids[b].Random16 {
				t.Errorf("%s and %s made the same first random bytes %s", a, b, ids[a].Random16)
			}
		}
	}
}

// probeShare puts a file in the clone's share and has a container in the
// guest print it: the clone serves its own directory, not the template's.
func probeShare(t *testing.T, c *agentclient.Client, cfg hypervisor.Config, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rootfs := filepath.Join(cfg.SharedDir, "rootfs")
	must(t, os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755))
	bb, _ := exec.LookPath("busybox")
	must(t, exec.Command("cp", bb, filepath.Join(rootfs, "bin/busybox")).Run())
	want := "hello from the host to " + name + "\n"
	must(t, os.WriteFile(filepath.Join(rootfs, "probe.txt"), []byte(want), 0o644))
	_, err := c.CreateSandbox(ctx, &api.CreateSandboxRequest{SandboxId: cfg.ID,
		SharedFs: &api.SharedFilesystem{Type: contract.SharedFS9p, Tag: contract.SharedFSTag}})
	must(t, err)
	_, err = c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "probe", Stdout: true,
		OciSpec: probeSpec(t, contract.GuestSharedDir+"/rootfs")})
	must(t, err)
	_, err = c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "probe"})
	must(t, err)
	var got strings.Builder
	for {
		resp, err := c.ReadStdout(ctx, &api.ReadStreamRequest{ContainerId: "probe", Len: 4096})
		must(t, err)
		got.Write(resp.Data)
		if resp.Eof {
			break
		}
	}
	if got.String() != want {
		t.Errorf("%s: the guest read %q from its share, want %q", name, got.String(), want)
	}
}

func probeSpec(t *testing.T, rootfs string) []byte {
	t.Helper()
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs, Readonly: true},
		Process: &specs.Process{Args: []string{"/bin/busybox", "cat", "/probe.txt"}, Env: []string{"PATH=/bin"}, Cwd: "/"},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			// runc makes device nodes in /dev, which 9p refuses.
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755", "size=65536k"}},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
		}},
	}
	b, err := json.Marshal(s)
	must(t, err)
	return b
}

// heldRAMName is how /proc names the holder's memfd (package hold).
const heldRAMName = "/memfd:podvm-template"

// ramPSS is the PSS and RSS of QEMU's mappings of the template's RAM
// (the holder's memfd), summed over its VMAs (QEMU maps guest RAM in more
// than one).
func ramPSS(t *testing.T, vm *VM) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", vm.Pids()[0]))
	must(t, err)
	defer f.Close()
	in := false
	var pss, rss, vmas int
	for sc := bufio.NewScanner(f); sc.Scan(); {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = len(fields) >= 6 && strings.HasPrefix(fields[5], heldRAMName)
			if in {
				vmas++
			}
			continue
		}
		if in && len(fields) == 3 && (fields[0] == "Pss:" || fields[0] == "Rss:") {
			n, _ := strconv.Atoi(fields[1])
			if fields[0] == "Pss:" {
				pss += n
			} else {
				rss += n
			}
		}
	}
	return fmt.Sprintf("Pss %d kB, Rss %d kB over %d mappings", pss, rss, vmas)
}

// templateFiles lists the template's files with sizes and blocks in use.
func templateFiles(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	var parts []string
	for _, e := range entries {
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		must(t, err)
		used := fi.Sys().(*syscall.Stat_t).Blocks * 512
		parts = append(parts, fmt.Sprintf("%s %s (%d KiB in use, size %d)", e.Name(), fi.Mode().Perm(), used>>10, fi.Size()))
	}
	return strings.Join(parts, ", ")
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	must(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// attackRAM is what a guest escaped into its QEMU would try on the fd of
// the template's RAM that QEMU holds: open it again read-write, write(2)
// a page (its own bytes: against a template RAM file this would succeed
// and change nothing), map it shared and writable. nil: both refused.
// (With the RAM file QEMU held before the holder, both succeed.)
func attackRAM(vm *VM) error {
	pid := vm.Pids()[0]
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return err
	}
	found := 0
	for _, e := range fds {
		p := fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())
		target, err := os.Readlink(p)
		if err != nil || !(strings.HasPrefix(target, heldRAMName) || strings.HasSuffix(target, "/"+templateRAMName)) {
			continue
		}
		found++
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue // refused at open: fine too
		}
		page := make([]byte, 4096)
		_, rerr := f.ReadAt(page, 1<<20)
		_, werr := f.WriteAt(page, 1<<20)
		m, merr := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		if merr == nil {
			syscall.Munmap(m)
		}
		f.Close()
		if rerr == nil && werr == nil {
			return fmt.Errorf("QEMU's fd %s (%s) of the template's RAM takes writes", e.Name(), target)
		}
		if merr == nil {
			return fmt.Errorf("QEMU's fd %s (%s) of the template's RAM maps shared and writable", e.Name(), target)
		}
	}
	if found == 0 {
		return fmt.Errorf("QEMU (pid %d) holds no fd of the template's RAM", pid)
	}
	return nil
}
