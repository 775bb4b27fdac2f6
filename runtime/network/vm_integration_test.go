package network

// End to end: a real pod VM (QEMU driver, TCG here) on a tap that Setup
// mirrored to the pod's veth. The guest's /init is a busybox script that
// configures eth0 the way the agent's ConfigureNetwork will (address, MTU,
// default route, found by MAC) and serves TCP; the test reaches it from the
// bridge's namespace, so every byte crosses veth -> tc -> tap -> QEMU ->
// virtio-net and back.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/qemu"
	"github.com/podvm/podvm/runtime/internal/vmtest"
)

func testKernel(t *testing.T) string { return vmtest.Kernel(t) }

// Guest TCP services: echo, a sink that answers with the byte count, and a
// source of bulkBytes zero bytes.
const (
	echoPort   = 7777
	sinkPort   = 7778
	sourcePort = 7779
	bulkBytes  = 16 << 20
)

// vmInit is the guest's /init. Arguments: MAC, MTU, address/prefix, gateway.
const vmInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
ip link set lo up
dev=
for d in /sys/class/net/*; do
	[ "$(cat $d/address)" = "%[1]s" ] && dev=${d##*/}
done
echo "guest NIC with MAC %[1]s: $dev"
[ "$dev" = eth0 ] || ip link set "$dev" name eth0
ip link set eth0 mtu %[2]d
ip addr add %[3]s dev eth0
ip link set eth0 up
ip route add default via %[4]s
ip addr show dev eth0
ip route
nc -ll -p 7777 -e /bin/cat &
nc -ll -p 7778 -e /bin/sink &
nc -ll -p 7779 -e /bin/source &
echo GUEST-NET-UP
while true; do sleep 3600; done
`

var vmApplets = []string{"sh", "mount", "ip", "cat", "echo", "sleep", "nc", "wc", "dd"}

// buildInitramfs writes a newc cpio with static busybox and the scripts.
func buildInitramfs(t *testing.T, init string) string {
	return vmtest.BusyboxInitramfs(t, vmApplets, map[string]string{
		"init":       init,
		"bin/sink":   "#!/bin/sh\nexec wc -c\n",
		"bin/source": fmt.Sprintf("#!/bin/sh\nexec dd if=/dev/zero bs=65536 count=%d 2>/dev/null\n", bulkBytes/65536),
	})
}

func TestPodNetworkVMIntegration(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing(t, "qemu-system-x86_64 not on PATH: apt-get install qemu-system-x86")
	}
	kernel := testKernel(t)
	// With IFF_VNET_HDR (what Setup does) and without, for the comparison
	// in docs/networking.md.
	for _, vnetHdr := range []bool{true, false} {
		t.Run(fmt.Sprintf("vnet_hdr=%v", vnetHdr), func(t *testing.T) { testPodNetworkVM(t, kernel, vnetHdr) })
	}
}

func testPodNetworkVM(t *testing.T, kernel string, vnetHdr bool) {
	tp := newTopo(t, 1500)
	before := snapshot(t, tp.pod)
	nw, err := setup(tp.podPath(), vnetHdr)
	must(t, err)
	t.Cleanup(func() { nw.Teardown() })
	d := nw.Description()
	iface := d.Interfaces[0]
	var gw string
	for _, r := range d.Routes {
		if r.IsDefault() {
			gw = r.Gateway.String()
		}
	}
	initrd := buildInitramfs(t, fmt.Sprintf(vmInit, iface.MAC, iface.MTU, iface.Addresses[0], gw))

	dir, err := os.MkdirTemp("/tmp", "pvn")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	shared := filepath.Join(dir, "shared")
	must(t, os.Mkdir(shared, 0o755))
	cfg := hypervisor.Config{
		ID: "net-" + filepath.Base(dir), StateDir: filepath.Join(dir, "state"),
		KernelPath: kernel, InitrdPath: initrd, VCPUs: 1, MemoryMiB: 128,
		SharedDir: shared, SharedFS: contract.SharedFS9p,
		Net: nw.Devices(),
	}
	vm, err := qemu.New(qemu.Options{}).Create(context.Background(), cfg)
	must(t, err)
	start := time.Now()
	must(t, vm.Start(context.Background()))
	t.Cleanup(func() { vm.Stop(context.Background()) })
	console := vm.Info().ConsolePath
	waitConsole(t, vm, console, "GUEST-NET-UP", 120*time.Second)
	up := time.Since(start)

	addr := fmt.Sprintf("%s:%d", tp.podIP.Addr(), echoPort)
	c := dialFromHost(t, tp, addr, 30*time.Second)
	t.Logf("%s (%s): guest eth0 configured %v after Start, first TCP connect from the bridge after %v",
		vm.Info().Accelerator, vm.Info().AccelReason, up.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	// QEMU reads IFF_VNET_HDR from the fd and then turns on the tap's
	// offloads (TUNSETOFFLOAD) as the guest driver negotiated them.
	tso := tapTSO(t, tp)
	t.Logf("tap TCP segmentation offload (set by QEMU): %v", tso)
	if tso != vnetHdr {
		t.Errorf("tap TSO is %v with IFF_VNET_HDR %v: QEMU did not pick up the header", tso, vnetHdr)
	}
	echoRTT(t, c)
	c.Close()

	ok, summary := tp.ping(tp.podIP.Addr(), 20, 5)
	if !ok {
		t.Errorf("ping from the bridge namespace to the guest failed; console:\n%s", tail(console))
	} else {
		t.Logf("ping bridge -> guest (20, back to back): %s", summary)
	}
	bulk(t, tp)

	// The pod namespace's own stack never answered: the guest did, with
	// the veth's MAC.
	if n := run(t, "ip", "-n", tp.host, "neigh", "show", tp.podIP.Addr().String()); !strings.Contains(n, tp.podMAC) {
		t.Errorf("bridge side neighbour entry for the pod: %q, want MAC %s", n, tp.podMAC)
	}

	must(t, vm.Stop(context.Background()))
	start = time.Now()
	must(t, nw.Teardown())
	t.Logf("Teardown after the VM stopped: %v", time.Since(start).Round(time.Microsecond))
	if after := snapshot(t, tp.pod); after != before {
		t.Errorf("pod namespace not restored:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// echoRTT measures TCP request/response round trips of one byte through
// the guest's echo service.
func echoRTT(t *testing.T, c net.Conn) {
	t.Helper()
	buf := []byte{'x'}
	var rtts []time.Duration
	must(t, c.SetDeadline(time.Now().Add(60*time.Second)))
	for i := 0; i < 200; i++ {
		s := time.Now()
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		rtts = append(rtts, time.Since(s))
	}
	t.Logf("TCP 1-byte echo round trip bridge <-> guest: %s", stats(rtts))
}

// bulk moves bulkBytes each way and reports the rates.
func bulk(t *testing.T, tp topo) {
	t.Helper()
	c := dialFromHost(t, tp, fmt.Sprintf("%s:%d", tp.podIP.Addr(), sinkPort), 10*time.Second)
	defer c.Close()
	must(t, c.SetDeadline(time.Now().Add(120*time.Second)))
	s := time.Now()
	if _, err := io.Copy(c, io.LimitReader(zeros{}, bulkBytes)); err != nil {
		t.Fatal(err)
	}
	must(t, c.(*net.TCPConn).CloseWrite())
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("sink answer: %v", err)
	}
	el := time.Since(s)
	if strings.TrimSpace(line) != fmt.Sprint(bulkBytes) {
		t.Errorf("guest counted %q bytes, sent %d", line, bulkBytes)
	}
	t.Logf("TCP bridge -> guest: %d MiB in %v, %.1f MB/s", bulkBytes>>20, el.Round(time.Millisecond), float64(bulkBytes)/el.Seconds()/1e6)

	c2 := dialFromHost(t, tp, fmt.Sprintf("%s:%d", tp.podIP.Addr(), sourcePort), 10*time.Second)
	defer c2.Close()
	must(t, c2.SetDeadline(time.Now().Add(120*time.Second)))
	s = time.Now()
	n, err := io.Copy(io.Discard, c2)
	el = time.Since(s)
	if err != nil || n != bulkBytes {
		t.Errorf("from the guest: %d bytes, %v; want %d", n, err, bulkBytes)
	}
	t.Logf("TCP guest -> bridge: %d MiB in %v, %.1f MB/s", n>>20, el.Round(time.Millisecond), float64(n)/el.Seconds()/1e6)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// dialFromHost connects from the bridge's namespace, retrying while the
// guest is not listening yet. The socket is made on a thread inside that
// namespace and keeps it wherever it is used afterwards.
func dialFromHost(t *testing.T, tp topo, addr string, within time.Duration) net.Conn {
	t.Helper()
	n, err := openNS(tp.hostPath())
	must(t, err)
	defer n.Close()
	deadline := time.Now().Add(within)
	for {
		var c net.Conn
		err := n.run(func() (err error) {
			c, err = net.DialTimeout("tcp", addr, time.Second)
			return err
		})
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to %s from the bridge namespace: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitConsole waits for line on the guest console.
func waitConsole(t *testing.T, vm hypervisor.VM, path, line string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), line) {
			return
		}
		select {
		case <-vm.Done():
			t.Fatalf("VM died: %v; console:\n%s", vm.ExitError(), tail(path))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the console after %v:\n%s", line, within, tail(path))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(path string) string { return vmtest.Tail(path, 3000) }

// tapTSO asks the kernel (SIOCETHTOOL, ETHTOOL_GTSO) whether the tap takes
// TSO frames, which is true only once QEMU has enabled offloads on it, and
// it does that only on a tap with a vnet header.
func tapTSO(t *testing.T, tp topo) bool {
	t.Helper()
	n, err := openNS(tp.podPath())
	must(t, err)
	defer n.Close()
	const ethtoolGTSO = 0x1e
	// On the heap, which does not move: the kernel gets its address as an
	// integer inside ifr, and the ioctl runs on another goroutine.
	val := &struct{ cmd, data uint32 }{cmd: ethtoolGTSO}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte
	}
	copy(ifr.name[:], "tap0_podvm")
	ifr.data = uintptr(unsafe.Pointer(val))
	must(t, n.run(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return fmt.Errorf("SIOCETHTOOL: %w", errno)
		}
		return nil
	}))
	runtime.KeepAlive(val)
	return val.data != 0
}
