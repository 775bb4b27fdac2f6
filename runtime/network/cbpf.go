package network

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// The few classic BPF instructions the guard program needs (guard.go),
// composed as slices: a block is a straight run of instructions whose jumps
// stay inside it, so blocks nest without labels. cls_bpf takes classic BPF
// in the filter message itself (TCA_BPF_OPS): nothing to load through the
// bpf syscall, no verifier log to interpret, and `tc filter show` prints it.

type cbpf []unix.SockFilter

// vlanTagPresent is the offset of the ancillary load of skb's "has a VLAN
// tag" bit (SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT in linux/filter.h). The
// kernel takes the tag out of the frame before tc sees it, so the bytes
// alone do not tell.
const vlanTagPresent = 0xfffff000 + 48

// Loads of a big-endian word, half-word or byte at off from the start of the
// Ethernet header (cls_bpf pushes the header back for the program at
// ingress). A load past the end of the frame ends the program with 0.
func ldW(off uint32) cbpf { return cbpf{{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}} }
func ldH(off uint32) cbpf { return cbpf{{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: off}} }
func ldB(off uint32) cbpf { return cbpf{{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: off}} }

func ret(k uint32) cbpf { return cbpf{{Code: unix.BPF_RET | unix.BPF_K, K: k}} }

// ifEq runs body when the accumulator equals k and skips it otherwise.
// Conditional jumps reach 255 instructions; a longer body is skipped with
// an unconditional jump, whose reach is 32 bits.
func ifEq(k uint32, body ...cbpf) cbpf {
	b := cat(body...)
	if len(b) <= 255 {
		return append(cbpf{{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: uint8(len(b)), K: k}}, b...)
	}
	return append(cbpf{
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, Jf: 0, K: k},
		{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(len(b))},
	}, b...)
}

func cat(blocks ...cbpf) cbpf {
	var p cbpf
	for _, b := range blocks {
		p = append(p, b...)
	}
	return p
}

// maxInsns is the kernel's limit on a classic program (BPF_MAXINSNS).
const maxInsns = 4096

// encode is p as TCA_BPF_OPS wants it: struct sock_filter, host order.
func (p cbpf) encode() ([]byte, error) {
	if len(p) == 0 || len(p) > maxInsns {
		return nil, fmt.Errorf("classic BPF program of %d instructions (1 to %d allowed)", len(p), maxInsns)
	}
	b := make([]byte, 0, 8*len(p))
	for _, in := range p {
		b = binary.NativeEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	return b, nil
}
