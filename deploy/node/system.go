package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// hostPath is the PATH commands are looked up in on the node.
const hostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ChrootRunner runs a command on the node: chrooted into root, looked up
// in the node's PATH, with the node's PATH and env added to the
// installer's environment. The installer image has no shell, so nothing is
// run through one.
func ChrootRunner(ctx context.Context, root string, argv []string, env []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	path, err := lookPathIn(root, argv[0])
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Path = path // as seen after the chroot
	cmd.Dir = "/"
	cmd.Env = append(append(os.Environ(), "PATH="+hostPath), env...)
	if root != "/" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Stop a command that outlives ctx even if it started children that
	// keep its output open.
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	return out.Bytes(), err
}

// lookPathIn finds name in the node's PATH below root, and returns the
// path as the command sees it after the chroot.
func lookPathIn(root, name string) (string, error) {
	if strings.Contains(name, "/") {
		if _, err := os.Stat(filepath.Join(root, name)); err != nil {
			return "", fmt.Errorf("%s not found on the node: %w", name, err)
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(hostPath) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(filepath.Join(root, p)); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in the node's PATH (%s)", name, hostPath)
}

// CRIHandlers asks containerd's CRI (Status) which runtime handlers it
// serves.
func CRIHandlers(ctx context.Context, socket string) ([]string, error) {
	if _, err := os.Stat(socket); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI client for %s: %w", socket, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := runtimeapi.NewRuntimeServiceClient(conn).Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("CRI Status on %s: %w", socket, err)
	}
	var out []string
	for _, h := range resp.GetRuntimeHandlers() {
		if h.GetName() != "" {
			out = append(out, h.GetName())
		}
	}
	return out, nil
}

// check runs the installed `podvm check` on the node, chrooted, so that
// it sees the node's QEMU, virtiofsd and /dev/kvm as the shim will.
func (in *Installer) check(ctx context.Context) error {
	o := in.o
	argv := []string{filepath.Join(o.Prefix, "bin", "podvm"), "check", "--config", o.podvmConfig()}
	out, err := in.run(ctx, o.HostRoot, argv, nil)
	fmt.Fprintln(in.log, indent(out))
	if err != nil {
		return fmt.Errorf("podvm check failed on node %s (%w): fix what it reports above as MISSING on the node; "+
			"containerd was not changed and the node is not labelled, so no podvm pod is scheduled here. "+
			"The installer retries when its pod restarts", o.NodeName, err)
	}
	return nil
}

// cleanFactory runs the installed `podvm factory clean` on the node,
// chrooted: it stops the VM templates' holders and removes template_dir
// (docs/factory.md). Nothing to do once the binary is gone (an uninstall
// run again).
func (in *Installer) cleanFactory(ctx context.Context) error {
	o := in.o
	bin := filepath.Join(o.Prefix, "bin", "podvm")
	if _, err := os.Stat(o.host(bin)); err != nil {
		return nil
	}
	// Resolved as the shim and the VM cache's daemon resolve it (the
	// operator's files included), so that it ends their templates and pool.
	argv := []string{bin, "factory", "clean", "--prefix", o.Prefix}
	out, err := in.run(ctx, o.HostRoot, argv, nil)
	if len(out) > 0 {
		fmt.Fprintln(in.log, indent(out))
	}
	if err != nil {
		return fmt.Errorf("podvm factory clean failed on node %s (%w): the VM templates are left; the uninstall retries when its pod restarts", o.NodeName, err)
	}
	return nil
}
