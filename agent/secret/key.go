package secret

import (
	"errors"
	"fmt"
	"sync"

	"github.com/podvm/podvm/agent/api/contract"
)

// Key is the secret the agent admits hosts with. It changes once in a VM
// restored from a template (Reread), so the transport asks for it on every
// connection rather than keeping a copy.
type Key struct {
	mu     sync.Mutex
	secret []byte
}

// NewKey holds secret.
func NewKey(secret []byte) (*Key, error) {
	if err := contract.CheckSecret(secret); err != nil {
		return nil, err
	}
	return &Key{secret: secret}, nil
}

// Bytes is the current secret.
func (k *Key) Bytes() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.secret
}

// Reread replaces the key with the secret the VMM carries now: in a clone
// of a template that is the clone's own secret, under the same fw_cfg name
// (the template's agent left the fw_cfg driver bound: contract.TemplateParam;
// sysfs reads the device at each read). It then unbinds the driver, as
// the agent does after reading the secret at boot. A secret equal to the
// current one is refused: the VMM was not given a new one, and the
// template's must not stay valid.
func (k *Key) Reread() error {
	s, from, err := Read()
	if err != nil {
		return fmt.Errorf("reread the agent secret: %w", err)
	}
	if err := Forget(); err != nil {
		return fmt.Errorf("reread the agent secret from %s: %w", from, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if string(s) == string(k.secret) {
		return errors.New("reread the agent secret: the VMM carries the same secret as before; a clone must be given its own")
	}
	k.secret = s
	return nil
}
