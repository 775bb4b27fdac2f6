package cloudhypervisor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/podvm/podvm/agent/api/contract"
	"github.com/podvm/podvm/runtime/hypervisor/vmm"
)

// Files in the VM's state dir.
const (
	apiSocketName       = "api.sock"
	apiLockName         = "api.sock.lock" // Cloud Hypervisor's own lock on the API socket
	vsockSocketName     = "vsock.sock"
	virtiofsdSocketName = "virtiofsd.sock"
	consoleLogName      = "console.log"
	vmmLogName          = "cloud-hypervisor.log"
	eventsLogName       = "cloud-hypervisor-events.log"
	virtiofsdLogName    = "virtiofsd.log"
	vmmPidName          = "cloud-hypervisor.pid"
	virtiofsdPidName    = "virtiofsd.pid"
)

// guestCID is the guest's vsock context id. With hybrid vsock the CID is
// private to the VM (the host reaches the guest through the VM's own unix
// socket, not through a host-wide AF_VSOCK namespace), so every VM can use
// the first guest CID.
const guestCID = 3

// eventMonitorFD is the child's fd number of the event monitor pipe,
// consoleFD that of the console pipe's write end.
const (
	eventMonitorFD = 3
	consoleFD      = 4
)

// Queue sizes. virtio-fs: one request queue of 1024 entries, as Cloud
// Hypervisor's defaults. virtio-net: one queue pair per tap fd.
const (
	fsNumQueues  = 1
	fsQueueSize  = 1024
	netNumQueues = 2
	netQueueSize = 256
)

// launch is everything the process arguments and the VmConfig depend on,
// decided before anything starts. Keeping it a plain value makes the
// configuration a pure function that tests can pin down and validate
// against the API schema.
type launch struct {
	vmm.Guest
	// MaxVCPUs >= VCPUs; larger means CPU hot-plug room for Resize.
	MaxVCPUs uint32
	// HotplugMiB is memory Resize may add (ACPI hot-plug); 0: none.
	HotplugMiB uint32
	Debug      bool
	Seccomp    bool
	// Net are the guest NICs, in guest order.
	Net []netLaunch
	// Secret is the agent secret (vmsecret.Create): the guest reads it as
	// an SMBIOS OEM string, and DialAgent proves it to the agent.
	Secret []byte
}

// netLaunch is one guest NIC; its tap fd travels with vm.add-net.
type netLaunch struct {
	MAC string
}

// vmmArgs is cloud-hypervisor's command line (without argv[0]): only the
// API socket and the event monitor. Everything about the VM goes through
// vm.create, so that one schema describes it.
func vmmArgs(l launch) []string {
	a := []string{
		"--api-socket", "path=" + l.Path(apiSocketName),
		"--event-monitor", "fd=" + strconv.Itoa(eventMonitorFD),
	}
	if !l.Seccomp {
		a = append(a, "--seccomp", "false")
	}
	// Logs go to stderr, which is the process log; -v adds warnings to
	// errors, -vv information (device activation, boot steps).
	if l.Debug {
		a = append(a, "-vv")
	} else {
		a = append(a, "-v")
	}
	return a
}

// The VmConfig subset the driver sends, field names as in the API schema
// (testdata/cloud-hypervisor-openapi-v53.0.yaml). Optional fields are
// omitted when zero so that Cloud Hypervisor's defaults apply.
type vmConfig struct {
	Cpus    cpusConfig     `json:"cpus"`
	Memory  memoryConfig   `json:"memory"`
	Payload payloadConfig  `json:"payload"`
	Rng     *rngConfig     `json:"rng,omitempty"`
	Fs      []fsConfig     `json:"fs,omitempty"`
	Vsock   *vsockConfig   `json:"vsock,omitempty"`
	Serial  *consoleConfig `json:"serial,omitempty"`
	Console *consoleConfig `json:"console,omitempty"`
	// Platform carries the agent secret: Cloud Hypervisor has no fw_cfg,
	// and this body, unlike a command line, is visible to no other user
	// (the API socket is in the 0700 state dir).
	Platform *platformConfig `json:"platform,omitempty"`
}

// platformConfig is the part of PlatformConfig the driver sets.
type platformConfig struct {
	OEMStrings []string `json:"oem_strings,omitempty"`
}

type cpusConfig struct {
	BootVCPUs uint32 `json:"boot_vcpus"`
	MaxVCPUs  uint32 `json:"max_vcpus"`
}

type memoryConfig struct {
	Size        int64 `json:"size"`
	HotplugSize int64 `json:"hotplug_size,omitempty"`
	Shared      bool  `json:"shared"`
}

type payloadConfig struct {
	Kernel    string `json:"kernel"`
	Initramfs string `json:"initramfs"`
	Cmdline   string `json:"cmdline"`
}

type rngConfig struct {
	Src string `json:"src"`
}

type fsConfig struct {
	Tag       string `json:"tag"`
	Socket    string `json:"socket"`
	NumQueues int    `json:"num_queues"`
	QueueSize int    `json:"queue_size"`
	ID        string `json:"id,omitempty"`
}

type vsockConfig struct {
	CID    int64  `json:"cid"`
	Socket string `json:"socket"`
	ID     string `json:"id,omitempty"`
}

// consoleConfig fits both SerialConfig and ConsoleConfig.
type consoleConfig struct {
	Mode string `json:"mode"`
	File string `json:"file,omitempty"`
}

// netConfig is vm.add-net's body. No tap name, ip or mask: the tap arrives
// as an fd (SCM_RIGHTS), already configured in the pod's namespace. No mtu:
// Cloud Hypervisor would set it on the tap by name, in its own network
// namespace; the guest's MTU comes from the agent's network setup.
type netConfig struct {
	MAC       string `json:"mac"`
	NumQueues int    `json:"num_queues"`
	QueueSize int    `json:"queue_size"`
	ID        string `json:"id,omitempty"`
}

// vmResize is vm.resize's body; nil fields are left as they are.
type vmResize struct {
	DesiredVCPUs *uint32 `json:"desired_vcpus,omitempty"`
	DesiredRAM   *int64  `json:"desired_ram,omitempty"`
}

const mib = 1 << 20

// vmConfigFor is vm.create's body.
func vmConfigFor(l launch) vmConfig {
	c := vmConfig{
		Cpus: cpusConfig{BootVCPUs: l.VCPUs, MaxVCPUs: max(l.MaxVCPUs, l.VCPUs)},
		Memory: memoryConfig{
			Size:        int64(l.MemoryMiB) * mib,
			HotplugSize: int64(l.HotplugMiB) * mib,
			// virtiofsd maps guest RAM: it must be a shared mapping.
			Shared: true,
		},
		Payload: payloadConfig{Kernel: l.Kernel, Initramfs: l.Initrd, Cmdline: l.Cmdline},
		// Feeds the guest's CRNG from the host's (it would be there by
		// default; said explicitly so the schema test covers it).
		Rng: &rngConfig{Src: "/dev/urandom"},
		Fs: []fsConfig{{
			Tag:       contract.SharedFSTag,
			Socket:    l.Path(virtiofsdSocketName),
			NumQueues: fsNumQueues,
			QueueSize: fsQueueSize,
			ID:        "podvm-fs",
		}},
		Vsock: &vsockConfig{CID: guestCID, Socket: l.Path(vsockSocketName), ID: "podvm-vsock"},
		// The 8250 UART is the guest console (console=ttyS0): it works
		// from the first line of boot, before any virtio driver.
		Serial:  serialConfig(),
		Console: &consoleConfig{Mode: "Off"},
	}
	if len(l.Secret) > 0 {
		c.Platform = &platformConfig{OEMStrings: []string{contract.OEMString(l.Secret)}}
	}
	return c
}

// serialConfig sends the serial port to the inherited console pipe
// (vmm.Machine.ConsolePipe), which the shim copies into a capped file: a
// File of its own would grow as long as the guest writes and fill the
// node's /run. Mode File on /proc/self/fd/N is the pipe itself (opening
// a pipe's /proc fd opens the pipe; its O_TRUNC does nothing there); Socket
// mode would drop the boot's first lines, written before the shim could
// connect, and Pty and Tty need a terminal the shim would have to drain
// all the same.
func serialConfig() *consoleConfig {
	return &consoleConfig{Mode: "File", File: "/proc/self/fd/" + strconv.Itoa(consoleFD)}
}

// netConfigFor is vm.add-net's body for NIC i.
func netConfigFor(i int, n netLaunch) netConfig {
	return netConfig{MAC: n.MAC, NumQueues: netNumQueues, QueueSize: netQueueSize, ID: "podvm-net" + strconv.Itoa(i)}
}

// maxKernelCmdline is x86's COMMAND_LINE_SIZE less the terminating NUL.
const maxKernelCmdline = 2047

// kernelCmdline builds the guest kernel command line. The driver's part
// comes first so that the configured KernelParams can override it.
func kernelCmdline(debug bool, extra []string) (string, error) {
	p := []string{
		"console=ttyS0",
		// A guest reset (reboot or panic) does not end Cloud Hypervisor,
		// it restarts the guest; the driver sees the "rebooting" event and
		// ends the VM. panic=-1 makes a panic reach that point at once.
		"reboot=k",
		"panic=-1",
		// The agent reports a call it cannot answer through /dev/kmsg (the
		// console tty may be what is stuck): unthrottled, so it arrives whole.
		"printk.devkmsg=on",
	}
	if debug {
		p = append(p, "loglevel=8")
	} else {
		// Every console byte is an emulated UART write: errors and worse.
		p = append(p, "quiet", "loglevel=4")
	}
	p = append(p, extra...)
	s := strings.Join(p, " ")
	if len(s) > maxKernelCmdline {
		return "", fmt.Errorf("kernel command line is %d bytes, the limit is %d", len(s), maxKernelCmdline)
	}
	return s, nil
}
