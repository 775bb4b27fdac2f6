package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// runCBPF runs p on frame as the kernel runs a classic cls_bpf program at
// ingress, for the instructions cbpf.go emits: loads count from the start
// of the Ethernet header, a load past the end of the frame ends the program
// with 0, and the VLAN-tag ancillary load reads vlanTagged, not the bytes.
func runCBPF(p cbpf, frame []byte, vlanTagged bool) (uint32, error) {
	var a uint32
	for pc := 0; pc < len(p); pc++ {
		in := p[pc]
		jump := 0
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, unix.BPF_LD | unix.BPF_B | unix.BPF_ABS:
			if in.K == vlanTagPresent {
				a = 0
				if vlanTagged {
					a = 1
				}
				continue
			}
			size := map[uint16]uint64{unix.BPF_W: 4, unix.BPF_H: 2, unix.BPF_B: 1}[in.Code&0x18]
			if uint64(in.K)+size > uint64(len(frame)) {
				return 0, nil
			}
			b := frame[in.K:]
			switch size {
			case 4:
				a = binary.BigEndian.Uint32(b)
			case 2:
				a = uint32(binary.BigEndian.Uint16(b))
			default:
				a = uint32(b[0])
			}
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			jump = int(in.Jf)
			if a == in.K {
				jump = int(in.Jt)
			}
		case unix.BPF_JMP | unix.BPF_JA:
			jump = int(in.K)
		case unix.BPF_RET | unix.BPF_K:
			return in.K, nil
		default:
			return 0, fmt.Errorf("instruction %d: code %#x is not one cbpf.go emits", pc, in.Code)
		}
		if pc+1+jump >= len(p) {
			return 0, fmt.Errorf("instruction %d jumps %d, past the end of the program (%d)", pc, jump, len(p))
		}
		pc += jump
	}
	return 0, errors.New("the program ran off its end")
}

func TestIfEq(t *testing.T) {
	// Short and long bodies: the long one needs the unconditional jump.
	for _, n := range []int{0, 1, 255, 256, 1000} {
		body := cbpf{}
		for range n {
			body = append(body, ldB(0)...)
		}
		p := cat(ldB(0), ifEq(7, body, ret(1)), ret(2))
		for frame, want := range map[byte]uint32{7: 1, 8: 2} {
			got, err := runCBPF(p, []byte{frame}, false)
			if err != nil || got != want {
				t.Errorf("body of %d: frame %d: got %d, %v; want %d", n, frame, got, err, want)
			}
		}
	}
}

func TestEncode(t *testing.T) {
	b, err := cat(ldH(12), ifEq(0x800, ret(0xffffffff)), ret(0)).encode()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x28, 0, 0, 0, 12, 0, 0, 0, 0x15, 0, 0, 1, 0, 8, 0, 0, 6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 6, 0, 0, 0, 0, 0, 0, 0}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("expected bytes are for a little-endian host")
	}
	if string(b) != string(want) {
		t.Errorf("got  % x\nwant % x", b, want)
	}
	if _, err := (cbpf{}).encode(); err == nil {
		t.Error("empty program encoded")
	}
}
