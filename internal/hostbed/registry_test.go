package hostbed

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func requireBusybox(t *testing.T) string {
	t.Helper()
	const busybox = "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("needs %s (Debian package busybox-static)", busybox)
	}
	return busybox
}

// TestCritestImages pushes the catalogue and reads it back the way
// containerd will: through the registry, by upstream name.
func TestCritestImages(t *testing.T) {
	busybox := requireBusybox(t)
	dir := t.TempDir()
	testbin, err := BuildTestbin(dir)
	if err != nil {
		t.Fatal(err)
	}
	images, err := CritestImages(busybox, testbin)
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartRegistry(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.PushAll(images); err != nil {
		t.Fatal(err)
	}

	ids := map[string]string{} // upstream ref -> image ID (config digest)
	users := map[string]string{}
	for _, ref := range ImageRefs(images) {
		local, err := r.localRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(local)
		if err != nil {
			t.Fatalf("pull %s back as %s: %v", ref, local, err)
		}
		id, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		ids[ref], users[ref] = id.String(), cf.Config.User
	}

	same := [][]string{
		{criStaging + "test-image-tags:1", criStaging + "test-image-tags:2", criStaging + "test-image-tags:3"},
		{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
	}
	for _, group := range same {
		for _, ref := range group[1:] {
			if ids[ref] != ids[group[0]] {
				t.Errorf("%s and %s must be one image: IDs %s, %s", ref, group[0], ids[ref], ids[group[0]])
			}
		}
	}
	byID := map[string][]string{}
	for ref, id := range ids {
		byID[id] = append(byID[id], ref)
	}
	if want := len(images); len(byID) != want {
		t.Errorf("%d distinct image IDs, want %d (one per image): %v", len(byID), want, byID)
	}
	for n, want := range map[string]string{
		"test-image-user-uid": "1002", "test-image-user-username": "www-data",
		"test-image-user-uid-group": "1003:1004", "test-image-user-username-group": "www-data:1004",
		"test-image-predefined-group": "1000",
	} {
		if got := users[criStaging+n+":latest"]; got != want {
			t.Errorf("%s: USER %q, want %q", n, got, want)
		}
	}
	if _, ok := ids[SandboxImage]; !ok {
		t.Errorf("sandbox image %s not in the catalogue", SandboxImage)
	}

	certs := t.TempDir()
	hosts, err := RegistryHosts(ImageRefs(images))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(hosts, " "); got != "gcr.io k8s.gcr.io registry.k8s.io" {
		t.Errorf("hosts %q", got)
	}
	if err := r.WriteHostsDir(certs, hosts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(certs, "registry.k8s.io", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`server = "http://%s/v2/registry.k8s.io"`, r.Addr); !strings.Contains(string(b), want) {
		t.Errorf("hosts.toml lacks %s:\n%s", want, b)
	}
	if _, err := os.Stat(filepath.Join(certs, "_default", "hosts.toml")); err != nil {
		t.Errorf("no catch-all for other hosts: %v", err)
	}
}

// TestNginxStandIn checks what critest looks for in nginx: the name, the
// process title, the pid file and a page.
func TestNginxStandIn(t *testing.T) {
	dir := t.TempDir()
	testbin, err := BuildTestbin(dir)
	if err != nil {
		t.Fatal(err)
	}
	nginx := filepath.Join(dir, "nginx")
	if err := os.Rename(testbin, nginx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	pidFile := filepath.Join(dir, "nginx.pid")
	cmd := exec.Command(nginx, "-listen="+addr, "-pidfile="+pidFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = http.Get("http://" + addr + "/"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /: status %d", resp.StatusCode)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	if b, _ := os.ReadFile(pidFile); strings.TrimSpace(string(b)) != pid {
		t.Errorf("pid file says %q, pid is %s", b, pid)
	}
	if b, _ := os.ReadFile("/proc/" + pid + "/cmdline"); !strings.Contains(string(b), "master process") {
		t.Errorf("cmdline %q lacks the nginx title", b)
	}
	if b, _ := os.ReadFile("/proc/" + pid + "/comm"); strings.TrimSpace(string(b)) != "nginx" {
		t.Errorf("comm %q, want nginx (pidof nginx must find it)", b)
	}
}
