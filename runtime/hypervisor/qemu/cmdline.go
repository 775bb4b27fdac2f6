package qemu

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
)

// Files in the VM's state dir.
const (
	qmpSocketName       = "qmp.sock"
	agentSocketName     = "agent.sock"
	virtiofsdSocketName = "virtiofsd.sock"
	consoleLogName      = "console.log"
	qemuLogName         = "qemu.log"
	qemuPidName         = "qemu.pid"
	virtiofsdPidName    = "virtiofsd.pid"
	proxy9pLogName      = "virtfs-proxy-helper.log"
)

// QEMU object ids that the driver refers to again (QMP, tests).
const (
	agentChardevID = "agent"
	memBackendID   = "mem"
)

// launch is everything the QEMU command line depends on, decided before
// anything starts. Keeping it a plain value makes the command line a pure
// function that tests can pin down.
type launch struct {
	vmm.Guest
	Accel     hypervisor.Accelerator
	TBSizeMiB uint32
	Seccomp   bool
	Transport contract.Transport
	// VsockCID is the guest's context id; VsockFD, if not 0, is the child's
	// fd number of a /dev/vhost-vsock handle that already holds that CID.
	VsockCID uint32
	VsockFD  int
	// ConsoleFD is the child's fd number of the console pipe's write end
	// (vmm.Machine.ConsolePipe).
	ConsoleFD int
	// HybridVsock, for transport vsock, says the device is
	// vhost-device-vsock's (vmm.StartHybridVsock) instead of the kernel's.
	HybridVsock bool
	SharedFS    string
	SharedDir   string
	// Proxy9p serves a 9p share through QEMU's proxy helper (a clone's,
	// so that its QEMU can be jailed); Proxy9pFD is the child's fd number
	// of QEMU's end of the helper's socket.
	Proxy9p   bool
	Proxy9pFD int
	// Net are the guest NICs, in guest order.
	Net []netLaunch
	// SecretPath is the agent secret's file (vmsecret.Create), which QEMU
	// hands the guest as fw_cfg contract.FwCfgSecretName. Secret is its
	// content, for DialAgent; it is on no command line.
	SecretPath string
	Secret     []byte
	// MemPath, if set, backs guest RAM with this file instead of a
	// memfd: mapped shared while a template boots (its RAM is saved in
	// the file), private in a clone (MemPrivate), whose writes then stay
	// in its own copy-on-write pages.
	MemPath    string
	MemPrivate bool
	// IncomingFD is the child's fd number of the template's device state
	// a clone restores from.
	IncomingFD int
}

// netLaunch is one guest NIC backed by a tap fd that QEMU inherits, or by
// nothing on the host (Hub).
type netLaunch struct {
	// FD is the child's fd number of the tap.
	FD  int
	MAC string
	// Hub makes the backend a hub port with no other port: a VM
	// template's NIC, whose clones bring the tap (template.go).
	Hub bool
}

// qemuArgs builds the QEMU command line (without argv[0]).
func qemuArgs(l launch) []string {
	// The CMOS RTC is the guest's wall clock under TCG. Without it Linux
	// waits a full second for the missing chip's update-in-progress bit
	// ("Unable to read current time from RTC") and starts in 1970. Under
	// KVM, kvm-clock gives the wall clock and the RTC is not touched.
	rtc := "on"
	if l.Accel == hypervisor.AccelKVM {
		rtc = "off"
	}
	a := []string{
		"-name", "podvm-" + l.ID + ",debug-threads=on",
		// microvm: no PCI, no firmware tables beyond ACPI, no legacy
		// devices but the serial port used as console (and the RTC, see
		// above). Option ROMs are only needed for bzImage boot; our
		// kernel is a PVH ELF.
		"-machine", "microvm,x-option-roms=off,pit=off,pic=off,rtc=" + rtc + ",isa-serial=on,memory-backend=" + memBackendID,
		// virtio 1.0 over mmio: modern virtqueues, as with virtio-pci.
		"-global", "virtio-mmio.force-legacy=false",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-msg", "timestamp=on",
	}
	if l.Seccomp {
		// QEMU's own syscall filter: no exec, no privilege changes, no
		// obsolete or scheduler-tuning syscalls from the emulator.
		a = append(a, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	}
	switch l.Accel {
	case hypervisor.AccelKVM:
		a = append(a, "-accel", "kvm", "-cpu", "host")
	default:
		// Never -cpu host here: it is KVM-only, and on kvm_pvm it aborts.
		a = append(a, "-accel", "tcg,tb-size="+strconv.FormatUint(uint64(l.TBSizeMiB), 10), "-cpu", "max")
	}
	mem := strconv.FormatUint(uint64(l.MemoryMiB), 10) + "M"
	a = append(a,
		"-smp", strconv.FormatUint(uint64(l.VCPUs), 10),
		"-m", mem,
		"-object", memBackend(l, mem),
		"-kernel", l.Kernel,
		"-initrd", l.Initrd,
		"-append", l.Cmdline,
	)
	a = append(a, consoleArgs(l.ConsoleFD)...)
	a = append(a,
		"-qmp", "unix:"+l.Path(qmpSocketName)+",server=on,wait=off",
	)
	a = append(a, agentArgs(l)...)
	a = append(a, sharedFSArgs(l)...)
	for i, n := range l.Net {
		a = append(a, netArgs(i, n)...)
	}
	if l.SecretPath != "" {
		// The path, not the secret: the file is 0600 in the state dir.
		a = append(a, "-fw_cfg", "name="+contract.FwCfgSecretName+",file="+l.SecretPath)
	}
	return append(a, templateArgs(l)...)
}

// memBackend is guest RAM: a shared memfd, which vhost-user (virtiofsd)
// maps, or a template's RAM file (launch.MemPath).
func memBackend(l launch, size string) string {
	if l.MemPath == "" {
		return "memory-backend-memfd,id=" + memBackendID + ",size=" + size + ",share=on"
	}
	share := "on"
	if l.MemPrivate {
		share = "off"
	}
	return "memory-backend-file,id=" + memBackendID + ",size=" + size + ",mem-path=" + l.MemPath + ",share=" + share
}

// templateArgs make a clone wait for its device state: QEMU 7.2 has no
// command-line form of the x-ignore-shared capability, so the restore
// itself goes over QMP (restore in template_restore.go).
func templateArgs(l launch) []string {
	if l.IncomingFD == 0 {
		return nil
	}
	return []string{"-incoming", "defer"}
}

// agentArgs is the agent's channel: a vhost-user-vsock device on
// vhost-device-vsock's socket, a vhost-vsock device, or a virtio-serial
// port on a unix socket.
func agentArgs(l launch) []string {
	if l.Transport == contract.TransportVsock && l.HybridVsock {
		return []string{
			"-chardev", "socket,id=vsock,path=" + l.Path(vmm.HybridVsockVhostSocket),
			"-device", "vhost-user-vsock-device,chardev=vsock",
		}
	}
	if l.Transport == contract.TransportVsock {
		dev := fmt.Sprintf("vhost-vsock-device,guest-cid=%d", l.VsockCID)
		if l.VsockFD != 0 {
			dev += fmt.Sprintf(",vhostfd=%d", l.VsockFD)
		}
		return []string{"-device", dev}
	}
	return []string{
		"-device", "virtio-serial-device,max_ports=2",
		"-chardev", "socket,id=" + agentChardevID + ",path=" + l.Path(agentSocketName) + ",server=on,wait=off",
		"-device", "virtserialport,chardev=" + agentChardevID + ",name=" + contract.SerialPortName,
	}
}

// sharedFSArgs is the shared directory's device: virtio-9p served by QEMU
// itself or through its proxy helper, or a vhost-user-fs device on
// virtiofsd's socket.
func sharedFSArgs(l launch) []string {
	if l.SharedFS == contract.SharedFS9p && l.Proxy9p {
		// No multidevs= here: the proxy fsdev does not take it.
		return []string{
			"-fsdev", "proxy,id=fs9p,sock_fd=" + strconv.Itoa(l.Proxy9pFD),
			"-device", "virtio-9p-device,fsdev=fs9p,mount_tag=" + contract.SharedFSTag,
		}
	}
	if l.SharedFS == contract.SharedFS9p {
		return []string{
			// multidevs=remap: the share holds bind mounts of several host
			// filesystems; without it their inode numbers can collide.
			"-fsdev", "local,id=fs9p,path=" + l.SharedDir + ",security_model=none,multidevs=remap",
			"-device", "virtio-9p-device,fsdev=fs9p,mount_tag=" + contract.SharedFSTag,
		}
	}
	return []string{
		"-chardev", "socket,id=fs,path=" + l.Path(virtiofsdSocketName),
		"-device", "vhost-user-fs-device,chardev=fs,tag=" + contract.SharedFSTag,
	}
}

// consoleFDSet is the QEMU fd set that holds the console pipe.
const consoleFDSet = 10

// consoleArgs sends the serial console to the inherited pipe fd, through
// an fd set (QEMU opens /dev/fdset/N by duplicating the fd it was given).
// append=on: without it QEMU truncates what it opened, which a pipe
// refuses (EINVAL).
// The shim reads the pipe into a capped file: a guest that writes without
// end must not fill the node's /run, as a file chardev would let it.
func consoleArgs(fd int) []string {
	set := strconv.Itoa(consoleFDSet)
	return []string{
		"-add-fd", "fd=" + strconv.Itoa(fd) + ",set=" + set + ",opaque=console",
		"-chardev", "file,id=console,path=/dev/fdset/" + set + ",append=on",
		"-serial", "chardev:console",
	}
}

// netArgs is one NIC: a tap backend on an inherited fd (the runtime created
// the tap in the pod's network namespace; QEMU never opens or configures
// one, so it needs no privileges and runs no scripts) and a virtio-net
// device with the pod interface's MAC. Plain tap: no vhost=on, as
// /dev/vhost-net is not available everywhere; QEMU's main loop moves every
// frame. No vnet_hdr=: QEMU refuses it next to fd= ("invalid with fd=")
// and reads IFF_VNET_HDR from the fd itself (TUNGETIFF), so whatever
// NetDevice.VnetHdr says the tap has is what QEMU uses.
func netArgs(i int, n netLaunch) []string {
	id := "net" + strconv.Itoa(i)
	backend := "tap,id=" + id + ",fd=" + strconv.Itoa(n.FD)
	if n.Hub {
		backend = "hubport,id=" + id + ",hubid=" + strconv.Itoa(i)
	}
	return []string{
		"-netdev", backend,
		"-device", "virtio-net-device,netdev=" + id + ",mac=" + n.MAC,
	}
}

// netLaunches checks the configured NICs and describes them for the command
// line; Start assigns the fd numbers.
func netLaunches(devs []hypervisor.NetDevice) ([]netLaunch, error) {
	var out []netLaunch
	for i, d := range devs {
		if d.Tap == nil {
			return nil, fmt.Errorf("network device %d: no tap", i)
		}
		mac, err := net.ParseMAC(d.MAC)
		if err != nil || len(mac) != 6 {
			return nil, fmt.Errorf("network device %d: MAC %q is not an Ethernet MAC", i, d.MAC)
		}
		if mac[0]&1 != 0 {
			return nil, fmt.Errorf("network device %d: MAC %s is a multicast address", i, d.MAC)
		}
		out = append(out, netLaunch{MAC: mac.String()})
	}
	return out, nil
}

// maxKernelCmdline is x86's COMMAND_LINE_SIZE less the terminating NUL.
const maxKernelCmdline = 2047

// kernelCmdline builds the guest kernel command line. The driver's part comes
// first so that the configured KernelParams can override it.
func kernelCmdline(acc hypervisor.Accelerator, debug bool, tscKHz uint64, extra []string) (string, error) {
	p := []string{
		"console=ttyS0",
		"reboot=t", // reboot by triple fault: fastest, and -no-reboot turns it into exit
		"panic=-1", // reboot (so QEMU exits) at once on panic
		// The agent reports a call it cannot answer through /dev/kmsg (the
		// console tty may be what is stuck): unthrottled, so it arrives whole.
		"printk.devkmsg=on",
	}
	if debug {
		p = append(p, "loglevel=8")
	} else {
		// Every console byte is an emulated UART write: print errors and
		// worse only (loglevel=4 is what quiet means, said explicitly).
		p = append(p, "quiet", "loglevel=4")
	}
	if acc != hypervisor.AccelKVM && tscKHz > 0 {
		// Under TCG the guest TSC runs at the host's rate. Telling the guest
		// skips calibration, which can hang on a loaded host without a PIT.
		p = append(p, "tsc_early_khz="+strconv.FormatUint(tscKHz, 10), "tsc=reliable", "no_timer_check")
	}
	if acc != hypervisor.AccelKVM {
		// QEMU's emulated local APIC counts at 1 GHz. Measuring it at
		// boot (there is no TSC-deadline timer under TCG) goes wrong on a
		// busy host, at worst so far that the kernel turns the timer off
		// and the guest, with no PIT or HPET on microvm, has no timer
		// interrupt left: every sleep in it then waits forever. The
		// parameter is podvm's (guestimage/patches/0002-*).
		p = append(p, "lapic_timer_khz=1000000")
	}
	p = append(p, extra...)
	s := strings.Join(p, " ")
	if len(s) > maxKernelCmdline {
		return "", fmt.Errorf("kernel command line is %d bytes, the limit is %d", len(s), maxKernelCmdline)
	}
	return s, nil
}
