package server

import (
	"testing"

	"github.com/podvm/podvm/agent/api"
	"github.com/podvm/podvm/agent/api/contract"
)

// TestSameShare: the share mounted ahead serves only a sandbox that asks
// for the same one, defaults filled in.
func TestSameShare(t *testing.T) {
	for _, tc := range []struct {
		name  string
		asked *api.SharedFilesystem
		want  bool
	}{
		{"as the shim asks", &api.SharedFilesystem{Type: contract.SharedFSVirtiofs, Tag: contract.SharedFSTag, MountPoint: contract.GuestSharedDir}, true},
		{"defaults", &api.SharedFilesystem{}, true},
		{"9p", &api.SharedFilesystem{Type: contract.SharedFS9p}, false},
		{"another tag", &api.SharedFilesystem{Tag: "other"}, false},
		{"another mount point", &api.SharedFilesystem{MountPoint: "/mnt"}, false},
		{"no share", nil, false},
	} {
		if got := sameShare(tc.asked, shareAhead); got != tc.want {
			t.Errorf("%s: sameShare(%v) = %v, want %v", tc.name, tc.asked, got, tc.want)
		}
	}
}
