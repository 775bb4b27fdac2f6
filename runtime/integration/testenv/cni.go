package testenv

import (
	"testing"

	"github.com/podvm/podvm/ci/testbed"
)

// BridgeNetwork is the pod network of a CRI containerd: a Linux bridge and
// a /24 of 10.213.0.0/16 created here, wired with Debian's CNI plugins
// (bridge, host-local, portmap). Pods reach each other and the host,
// nothing else: there is no masquerading and IP forwarding is left as it
// was.
type BridgeNetwork = testbed.BridgeNetwork

// bridgeName is fixed so that a bridge left by a killed run is found and
// replaced by the next one; so there is one such network per host at a time.
const bridgeName = "podvm-test0"

// StartBridgeNetwork creates the bridge on a free 10.x subnet and writes the
// CNI configuration under dir. Everything it creates is removed when the
// test ends, after the cleanups registered later (containerd's) have run:
// the bridge, the iptables chains portmap added, libcni's cache if it was
// not there before.
func StartBridgeNetwork(t testing.TB, dir, binDir string) *BridgeNetwork {
	t.Helper()
	n, err := testbed.StartBridgeNetwork(testbed.BridgeOptions{
		Name: "podvm-test", Bridge: bridgeName, Dir: dir, BinDir: binDir, SubnetOctet: 213,
		Portmap: true, RemoveCNICache: true, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("pod network %s: %v", n.Name, err)
		}
	})
	return n
}
