package api

import "strings"

// waitingMethods are the AgentService calls that legitimately block until
// something happens in the guest (a process exits, writes output, is
// OOM-killed, or reads stdin). Every other call answers at once in a
// healthy guest; the shim bounds those (agentclient.CallTimeout) and the
// agent reports one that runs long.
var waitingMethods = map[string]bool{
	"WaitProcess": true, "ReadStdout": true, "ReadStderr": true, "GetOOMEvent": true,
	// A full pipe blocks a write until the process reads: back-pressure.
	"WriteStdin": true,
	// A forwarded port's connection waits for its peer the same ways.
	"ReadPort": true, "WritePort": true,
}

// Waits says whether method, a bare name ("WaitProcess") or a ttrpc full
// method ("/podvm.agent.v1.AgentService/WaitProcess"), may block.
func Waits(method string) bool {
	return waitingMethods[method[strings.LastIndexByte(method, '/')+1:]]
}
