package contract

// Transport names the agent's channel. The host's driver picks it (see
// hypervisor.Config), the agent accepts the same names for -listen and
// reports the one it serves on in GuestDetails.transport.
type Transport string

const (
	// TransportVsock is AF_VSOCK on VsockPort (vhost-vsock with QEMU,
	// hybrid vsock with Cloud Hypervisor): many connections.
	TransportVsock Transport = "vsock"
	// TransportSerial is the virtio-serial port named SerialPortName,
	// backed by a host unix socket: one byte stream, made into sessions
	// by the handshake (see ReadyLine). The fallback for hosts without
	// /dev/vhost-vsock.
	TransportSerial Transport = "serial"
)

// VsockPort is the guest vsock port podvm-agent listens on.
const VsockPort = 1024

// SerialPortName is the name of the virtio-serial port podvm-agent opens
// (/sys/class/virtio-ports/*/name in the guest).
const SerialPortName = "podvm.agent"

// SharedFSTag is the virtio-fs / 9p tag of the per-sandbox shared
// directory: the host exports it under this tag, the agent mounts it.
const SharedFSTag = "podvm"

// Shared filesystem types: the host's configured shared_fs and
// api.SharedFilesystem.type, which the agent mounts as such.
const (
	SharedFSVirtiofs = "virtiofs"
	SharedFS9p       = "9p"
)

// GuestSharedDir is where the agent mounts the shared directory, unless
// CreateSandbox names another mount point; the host writes guest paths
// under it into the containers' specs.
const GuestSharedDir = "/run/podvm/shared"

// LogLevelParam is the kernel command line key that sets the agent's log
// level (podvm_agent_log=debug): the kernel hands init an unknown
// key=value parameter as an environment variable.
const LogLevelParam = "podvm_agent_log"

// OCI runtimes the agent can run containers with
// (api.CreateSandboxRequest.oci_runtime). runc is always in the initramfs,
// crun when the image was built where Debian's crun is installed; auto is
// crun when the initramfs has it, else runc.
const (
	OCIRuntimeRunc = "runc"
	OCIRuntimeCrun = "crun"
	OCIRuntimeAuto = "auto"
)

// Marks of a container's create and start in the guest, in the order they
// happen (api.StartContainerResponse.marks, docs/agent.md).
const (
	MarkCreateBegin    = "create_begin"    // CreateContainer arrived
	MarkBundleWritten  = "bundle_written"  // spec rewritten, config.json written
	MarkRuntimeCreated = "runtime_created" // `<runtime> create` returned: the init waits
	MarkCreateEnd      = "create_end"      // cgroup found, OOM watch set: the answer leaves
	MarkStartBegin     = "start_begin"     // StartContainer arrived
	MarkStartEnd       = "start_end"       // `<runtime> start` returned: the answer leaves
)

// ContainerMarks are the marks in their order; the host takes no other
// name from the guest.
var ContainerMarks = []string{MarkCreateBegin, MarkBundleWritten, MarkRuntimeCreated, MarkCreateEnd, MarkStartBegin, MarkStartEnd}

// Marks of a process's life in the guest (api.WaitProcessResponse.marks,
// docs/agent.md): an exec has all four, an init the last two.
const (
	MarkExecBegin   = "exec_begin"   // ExecProcess arrived
	MarkExecRunning = "exec_running" // `<runtime> exec --detach` returned: the process runs
	MarkExited      = "exited"       // the agent reaped the process
	MarkWaitAnswer  = "wait_answer"  // WaitProcess's answer leaves
)

// ProcessMarks are the process marks in their order; the host takes no
// other name from the guest.
var ProcessMarks = []string{MarkExecBegin, MarkExecRunning, MarkExited, MarkWaitAnswer}

// TemplateParam=1 on the kernel command line marks a VM booted to be saved
// as a template: its agent leaves the fw_cfg driver bound after reading
// the secret, because Linux 6.1's fw_cfg driver cannot be bound again
// once unbound (EBUSY), and each clone's agent must read its own secret
// through it at Handover.
const TemplateParam = "podvm_template"
