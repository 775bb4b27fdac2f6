// Package network connects a pod VM to the pod's CNI network.
//
// containerd's CRI creates the pod network namespace and CNI puts an
// interface into it (a veth whose peer sits on the host bridge, with the
// pod's address and routes). Nothing in that namespace runs: the pod's
// processes live in the guest. Setup gives the guest that interface:
//
//	bridge -- veth peer ==[ pod netns: eth0 (veth) <-tc-> tap0_podvm ]== QEMU -- guest eth0
//
// For each interface it opens a tap in the namespace and joins the two with
// tc: an ingress qdisc on both and a filter whose action is "mirred egress
// redirect" to the other device, the tcfilter model of Kata Containers.
// Every frame arriving on the veth leaves through the tap into QEMU (a u32
// match-everything filter). A frame QEMU writes leaves through the veth only
// if the guard passes it: the guest kernel may be hostile, so on the tap a
// classic BPF program lets through only the interface's own MAC, its
// addresses and ARP for them, and a filter behind it drops the rest.
// The guest interface gets the veth's MAC, so the bridge, the host's
// neighbour tables and anything filtering by MAC see exactly what CNI set up.
//
// Decisions:
//   - The veth keeps its addresses and routes, as in Kata's tcfilter mode:
//     CNI (DEL, CHECK) and `ip netns exec` inspection still find what they
//     expect, and the namespace's own stack never sees a frame (ingress is
//     redirected before IP), so it never answers ARP or pings for the pod
//     address: the guest does, with the same MAC. The tap gets no IPv6
//     link-local address, so that the namespace's stack sends nothing to the
//     guest either.
//   - tc redirect rather than a bridge in the namespace (which would need
//     the veth's address moved off it and a bridge's learning and netfilter
//     hooks on every frame) or macvtap (needs the veth as a lower device in
//     a mode CNI did not choose, and its /dev/tapN node in the namespace).
//   - u32 rather than matchall: the same effect, but cls_matchall is a
//     module that is not always loaded (it is not on the machines these
//     tests run on; u32 is).
//   - The guard is classic BPF in cls_bpf rather than flower or u32 with a
//     gact "drop": flower and gact are modules too, missing here, u32 cannot
//     see a VLAN tag, and classic BPF needs neither the bpf syscall nor an
//     fd to keep. A frame too short for a field the guard reads is dropped.
//   - Taps are opened with IFF_VNET_HDR: QEMU sees it on the fd and then
//     passes checksum and segmentation offload through instead of the host
//     segmenting and checksumming every large TCP send (about 1.3x into the
//     guest, 1.8x out of it under TCG; docs/networking.md).
//   - Taps are not persistent: they live as long as an fd is open. If the
//     shim and QEMU die, the kernel removes the taps; Cleanup removes the tc
//     filters left on the veth.
//
// Files: network.go (Setup, Teardown), inspect.go (reading the namespace),
// tap.go (opening taps inside the namespace), tc.go (qdiscs and filters),
// guard.go (what the guest may send, as a program), cbpf.go (the classic
// BPF it is written in), guardtc.go (its filters on the tap), cleanup.go
// (removing what Setup made, also after a crash), netns.go (namespace
// handles), types.go (the description), agent.go (its agent protocol form),
// adopt.go (a tap made ahead for a cached VM, moved into the pod's
// namespace: docs/factory.md section 8).
package network
