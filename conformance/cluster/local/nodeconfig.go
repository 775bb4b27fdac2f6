package local

import (
	"fmt"
	"os"
	"path/filepath"
)

// nodeContainerdConfig is where tools expect a node's containerd
// configuration; upstream e2e [Feature:RuntimeHandler] specs read it to
// learn whether the node has the test-handler handler.
const nodeContainerdConfig = "/etc/containerd/config.toml"

// linkNodeContainerdConfig makes our containerd's config visible at the
// standard path when nothing is there; an operator's own file is never
// touched (the two specs that read it then skip, saying why).
func (p *Provider) linkNodeContainerdConfig(s *state) error {
	if _, err := os.Lstat(nodeContainerdConfig); err == nil {
		return nil
	}
	dir := filepath.Dir(nodeContainerdConfig)
	if _, err := os.Stat(dir); err != nil {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		s.CreatedEtcDir = true
	}
	if err := os.Symlink(p.l.containerdConfig(), nodeContainerdConfig); err != nil {
		return fmt.Errorf("link %s: %w", nodeContainerdConfig, err)
	}
	s.ConfigLink = true
	return p.saveState(*s)
}

func (p *Provider) unlinkNodeContainerdConfig(s state) error {
	if s.ConfigLink {
		if target, err := os.Readlink(nodeContainerdConfig); err == nil && target == p.l.containerdConfig() {
			if err := os.Remove(nodeContainerdConfig); err != nil {
				return err
			}
		}
	}
	if s.CreatedEtcDir {
		os.Remove(filepath.Dir(nodeContainerdConfig)) // only if empty
	}
	return nil
}
