package fakevm

import (
	"github.com/podvm/podvm/conformance/cluster"
	"github.com/podvm/podvm/internal/hostbed"
)

// HandlerName is the name of the fake VM's CRI runtime handler and of its
// RuntimeClass.
const HandlerName = "runc-fakevm"

// WrapperName is the wrapper's file name (cmd/podvm-fakevm-runc).
const WrapperName = "podvm-fakevm-runc"

// RuncEnv names the real runc for the wrapper; without it the wrapper runs
// the first runc on its PATH (containerd's).
const RuncEnv = "PODVM_FAKEVM_RUNC"

// Handler is the fake VM's containerd CRI runtime handler: a runc handler
// whose binary is the wrapper.
func Handler(wrapper string) hostbed.Handler {
	return hostbed.RuncHandler(HandlerName, wrapper, "")
}

// RuntimeClass is the RuntimeClass that puts a pod on the fake VM.
func RuntimeClass() cluster.RuntimeClass {
	return cluster.RuntimeClass{Name: HandlerName, Handler: HandlerName}
}
