package hostenv

import "github.com/podvm/podvm/ci/testbed"

// The benchmark pods' network: a bridge and a /24 of 10.214.0.0/16 of its
// own, wired with CNI's bridge and host-local plugins. No portmap, no
// masquerading: pods reach each other and the host, and no iptables rule
// is added. The bridge's name is fixed, so that one left by a killed run
// is found and replaced by the next; it differs from the tests'
// (podvm-test0) so that a benchmark and a test run side by side.
const (
	bridgeName  = "podvm-bench0"
	networkName = "podvm-bench"
	// subnetOctet: pods get a free /24 of 10.214.0.0/16.
	subnetOctet = 214
)

func startNetwork(dir string) (*testbed.BridgeNetwork, error) {
	return testbed.StartBridgeNetwork(testbed.BridgeOptions{
		Name: networkName, Bridge: bridgeName, Dir: dir, SubnetOctet: subnetOctet,
	})
}
