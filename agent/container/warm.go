package container

import (
	"encoding/json"

	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// warmSpec has the parts of a spec containerd writes (process, root,
// mounts, resources, namespaces, seccomp, masked paths, id mappings, ...)
// so that decoding it reaches each type writeBundle decodes.
const warmSpec = `{"ociVersion":"1.2.1","process":{"user":{"uid":0,"gid":0,"additionalGids":[0]},
"args":["sh"],"env":["PATH=/bin"],"cwd":"/","capabilities":{"bounding":["CAP_CHOWN"],"effective":["CAP_CHOWN"],
"permitted":["CAP_CHOWN"]},"rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024}],"noNewPrivileges":true,
"oomScoreAdj":0,"apparmorProfile":"","consoleSize":{"height":1,"width":1}},"root":{"path":"rootfs","readonly":false},
"hostname":"h","mounts":[{"destination":"/proc","type":"proc","source":"proc","options":["nosuid"],
"uidMappings":[{"containerID":0,"hostID":0,"size":1}]}],"hooks":{"poststart":[{"path":"/x","args":["x"],"timeout":1}]},
"annotations":{"a":"b"},"linux":{"uidMappings":[{"containerID":0,"hostID":0,"size":1}],
"gidMappings":[{"containerID":0,"hostID":0,"size":1}],"sysctl":{"a":"b"},"resources":{"devices":[{"allow":false,"access":"rwm"},
{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}],"memory":{"limit":1,"swap":1},"cpu":{"shares":2,"quota":1,
"period":100000,"cpus":"0","mems":"0"},"pids":{"limit":1},"blockIO":{"weight":10},"hugepageLimits":[{"pageSize":"2MB","limit":0}],
"unified":{"a":"b"}},"cgroupsPath":"/podvm/x","namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"}],
"devices":[{"path":"/dev/x","type":"c","major":1,"minor":3,"fileMode":438,"uid":0,"gid":0}],
"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"architectures":["SCMP_ARCH_X86_64"],
"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":1,"valueTwo":0,"op":"SCMP_CMP_EQ"}]}]},
"maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/bus"],"mountLabel":"","rootfsPropagation":"private"}}`

// Warm decodes and encodes a spec once, so that a VM's first container
// does not pay for it: encoding/json builds its decoder and encoder of each
// type at the type's first use, and in a fresh VM under TCG that first use
// is code run for the first time too (docs/benchmarks.md: about 30 ms of
// the first container's spec rewrite). The agent calls it once it is
// ready, while the host is still connecting, when the guest is idle.
func (m *Manager) Warm() {
	m.warm.Do(func() {
		var spec specs.Spec
		if err := json.Unmarshal([]byte(warmSpec), &spec); err != nil {
			log.L.WithError(err).Debug("warm-up spec")
			return
		}
		if _, err := json.Marshal(&spec); err != nil {
			log.L.WithError(err).Debug("warm-up spec")
		}
	})
}
