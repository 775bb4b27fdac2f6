package cloudhypervisor

import (
	"encoding/json"
	"io"

	"github.com/podvm/podvm/agent/api/contract"
)

// fakeAgentAuth plays the agent's check on a fake guest stream, with the
// secret the guest would find in the SMBIOS OEM strings of config (the
// vm.create body).
func fakeAgentAuth(rw io.ReadWriter, config json.RawMessage) error {
	var c vmConfig
	if err := json.Unmarshal(config, &c); err != nil {
		return err
	}
	var secret []byte
	if c.Platform != nil {
		for _, s := range c.Platform.OEMStrings {
			if v, ok := contract.ParseOEMString(s); ok {
				secret = v
			}
		}
	}
	return contract.GuestAuth(rw, secret, contract.TransportVsock, "")
}
