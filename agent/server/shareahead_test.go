package server

import (
	"testing"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

// TestSameShare: the share mounted ahead serves only a sandbox that asks
// for the same one, defaults filled in.
func TestSameShare(t *testing.T) {
	asShim := &api.SharedFilesystem{Type: contract.SharedFSVirtiofs, Tag: contract.SharedFSTag, MountPoint: contract.GuestSharedDir}
	same := map[string]*api.SharedFilesystem{"as the shim asks": asShim, "defaults": {}}
	other := map[string]*api.SharedFilesystem{
		"9p": {Type: contract.SharedFS9p}, "another tag": {Tag: "other"}, "another mount point": {MountPoint: "/mnt"}, "no share": nil,
	}
	for name, fs := range same {
		if !sameShare(fs, shareAhead) {
			t.Errorf("%s: %v is not taken for the share mounted ahead", name, fs)
		}
	}
	for name, fs := range other {
		if sameShare(fs, shareAhead) {
			t.Errorf("%s: %v is taken for the share mounted ahead", name, fs)
		}
	}
}
