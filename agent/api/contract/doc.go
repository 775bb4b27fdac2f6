// Package contract is what the host and podvm-agent must agree on besides
// the AgentService messages (package api): the channel the agent listens on
// (vsock port, virtio-serial port name), the virtio-serial handshake that
// starts a session, the shared filesystem's tag, types and guest mount
// point, and the kernel command line keys the agent reads.
//
// It is the protocol as much as agent.proto is: the shim and the agent in a
// guest image are built separately, so changing anything here is a protocol
// change that needs both sides rebuilt together. Both sides import it; it
// imports nothing of either, so the guest links nothing of runtime/ and the
// VMM drivers link neither protobuf nor ttrpc for it.
package contract
