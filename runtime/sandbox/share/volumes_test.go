package share

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podvm/podvm/runtime/guestspec"
)

func TestVisibleSubmounts(t *testing.T) {
	// id parent root point options (the rest of a mountinfo line).
	const base = `1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw
2 1 0:5 / /proc rw,nosuid,nodev,noexec - proc proc rw
3 1 0:30 / /vol/tmpfs rw,relatime - tmpfs none rw
`
	sub := func(rel string, opts ...string) guestspec.Submount {
		return guestspec.Submount{Rel: rel, Options: opts}
	}
	cases := []struct {
		name      string
		mountinfo string
		root      int
		dir       string
		want      []guestspec.Submount
	}{
		{"one tmpfs", base, 1, "/vol", []guestspec.Submount{sub("tmpfs")}},
		{"nothing below", base, 1, "/srv", nil},
		{"the source is not its own prefix", base + "4 1 0:31 / /volume rw - tmpfs none rw\n", 1, "/vol", []guestspec.Submount{sub("tmpfs")}},
		{"host flags", base + "4 3 0:31 / /vol/tmpfs/ro ro,nosuid,nodev,noexec,relatime - tmpfs none ro\n", 1, "/vol",
			[]guestspec.Submount{sub("tmpfs"), sub("tmpfs/ro", "ro", "nosuid", "nodev", "noexec")}},
		{"stacked: the top one counts, with its children", base +
			"4 3 0:31 / /vol/tmpfs ro - tmpfs none ro\n" +
			"5 3 0:32 / /vol/tmpfs/under rw - tmpfs none rw\n" +
			"6 4 0:33 / /vol/tmpfs/over rw,nodev - tmpfs none rw\n", 1, "/vol",
			[]guestspec.Submount{sub("tmpfs", "ro"), sub("tmpfs/over", "nodev")}},
		{"hidden under a sibling mounted over its directory", base +
			"4 1 0:31 / /vol/a/b rw - tmpfs none rw\n" +
			"5 1 0:32 / /vol/a rw - tmpfs none rw\n", 1, "/vol",
			[]guestspec.Submount{sub("a"), sub("tmpfs")}},
		{"parents first, siblings sorted", base +
			"4 1 0:31 / /vol/b rw - tmpfs none rw\n" +
			"5 4 0:32 / /vol/b/c rw - tmpfs none rw\n" +
			"6 1 0:33 / /vol/a rw - tmpfs none rw\n", 1, "/vol",
			[]guestspec.Submount{sub("a"), sub("b"), sub("b/c"), sub("tmpfs")}},
		{"the source is a mount point", base + "4 1 0:31 / /data rw - tmpfs none rw\n5 4 0:32 / /data/x rw - tmpfs none rw\n", 4, "/data",
			[]guestspec.Submount{sub("x")}},
		{"mounts on another mount are not below", base + "4 2 0:31 / /vol/other rw - tmpfs none rw\n", 1, "/vol",
			[]guestspec.Submount{sub("tmpfs")}},
		{"escaped mount point", base + `4 1 0:31 / /vol/with\040space rw - tmpfs none rw` + "\n", 1, "/vol",
			[]guestspec.Submount{sub("tmpfs"), sub("with space")}},
		{"unbindable: left out with what is below it", base +
			"4 1 0:31 / /vol/u rw shared:7 unbindable - tmpfs none rw\n" +
			"5 4 0:32 / /vol/u/x rw - tmpfs none rw\n", 1, "/vol",
			[]guestspec.Submount{sub("tmpfs")}},
		{"the root", base, 1, "/", []guestspec.Submount{sub("proc", "nosuid", "nodev", "noexec"), sub("vol/tmpfs")}},
		{"a cycle ends", "1 0 8:1 / / rw - ext4 x rw\n2 3 0:1 / /vol/a rw - tmpfs x rw\n3 2 0:2 / /vol/a rw - tmpfs x rw\n", 2, "/vol",
			[]guestspec.Submount{sub("a")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := visibleSubmounts(parseMountInfo(c.mountinfo), c.root, c.dir)
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestShareSubmountsApart: a volume with a tmpfs mounted in it, shared as
// the shim does (the volume alone, the tmpfs on its own), leaves the host
// free to unmount that tmpfs and remove the volume while the container
// runs, as with runc; a recursive copy in the host's mount namespace
// would keep the mount point busy.
func TestShareSubmountsApart(t *testing.T) {
	s := newLayout(t)
	host, shared := s.HostDir, s.SharedDir
	vol := filepath.Join(t.TempDir(), "vol")
	tmpfs := filepath.Join(vol, "tmpfs")
	if err := os.MkdirAll(tmpfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", tmpfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(tmpfs, unix.MNT_DETACH) })

	subs, err := Submounts(vol)
	if err != nil {
		t.Fatal(err)
	}
	if want := []guestspec.Submount{{Rel: "tmpfs"}}; !reflect.DeepEqual(subs, want) {
		t.Fatalf("Submounts(%s) = %+v, want %+v", vol, subs, want)
	}
	if err := s.ShareMounts("c1", []guestspec.SharedMount{
		{HostSource: vol, ShareRel: "c1/mounts/0", Destination: "/mnt", ReadOnly: true, Alone: true},
		{HostSource: tmpfs, ShareRel: "c1/mounts/1", Destination: "/mnt/tmpfs", Alone: true},
	}); err != nil {
		t.Fatal(err)
	}
	view := func(rel string) string { return filepath.Join(shared, rel) }
	if err := os.WriteFile(view("c1/mounts/1/file"), nil, 0o644); err != nil {
		t.Errorf("the submount of a non-recursive read-only volume is not writable: %v", err)
	}
	if err := unix.Unmount(tmpfs, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(vol); err != nil {
		t.Errorf("remove the volume on the host while it is shared: %v", err)
	}
	if _, err := os.Stat(view("c1/mounts/1/file")); err != nil {
		t.Errorf("the shared tmpfs went with the host's: %v", err)
	}
	if err := s.UnmountContainer("c1"); err != nil {
		t.Fatal(err)
	}
	if left := MountsUnder(filepath.Join(host, "c1")); len(left) > 0 {
		t.Errorf("mounts left: %v", left)
	}
}

// TestShareIdmapped: a share with mappings is an idmapped mount on the host,
// so the guest sees the ids already shifted (file owner 0 as 1000) and a
// file the guest creates as 1000 is owned by 0 on the volume.
func TestShareIdmapped(t *testing.T) {
	s := newLayout(t)
	host, shared := s.HostDir, s.SharedDir
	vol := t.TempDir() // on the test's filesystem: skip if it cannot be idmapped
	if err := os.WriteFile(filepath.Join(vol, "owned-by-root"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 65536}}
	err := s.ShareMounts("c1", []guestspec.SharedMount{
		{HostSource: vol, ShareRel: "c1/mounts/0", Destination: "/data", UIDMappings: maps, GIDMappings: maps},
	})
	if err != nil && strings.Contains(err.Error(), "must support idmapped mounts") {
		t.Skipf("the filesystem of %s cannot be idmapped here: %v", vol, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(shared, "c1/mounts/0")
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(view, "owned-by-root"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("through the share the root-owned file is %d:%d, want 1000:1000", st.Uid, st.Gid)
	}
	// The guest's writes reach the share through virtiofsd, which acts
	// with the guest caller's fsuid: 1000 here, container root.
	// Like virtiofsd, it holds the directory open (fsuid 1000 may not
	// search the test's private parent directories).
	dir, err := os.Open(filepath.Join(host, "c1/mounts/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its fsuid
		unix.Setfsgid(1000)
		unix.Setfsuid(1000)
		fd, err := unix.Openat(int(dir.Fd()), "made-by-1000", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create as 1000 through the share: %v", err)
	}
	if err := unix.Stat(filepath.Join(vol, "made-by-1000"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		t.Errorf("a file owned by 1000 in the share is %d:%d on the volume, want 0:0", st.Uid, st.Gid)
	}
}
