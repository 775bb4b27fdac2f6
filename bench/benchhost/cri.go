package benchhost

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Images the benchmark pods run, served by the local registry.
const (
	// BusyboxImage is busybox-static, the containers' image.
	BusyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	// WebImage serves HTTP on port 80 (the test images' nginx stand-in)
	// and prints WebServing when it listens.
	WebImage   = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
	WebServing = "serving HTTP"
	// podNamespace is the pods' Kubernetes namespace (metadata only).
	podNamespace = "podvm-bench"
)

// cri is a CRI client on the host's containerd.
type cri struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient
}

func dialCRI(sock string) (*cri, error) {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI client: %w", err)
	}
	return &cri{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn)}, nil
}

func (c *cri) pull(ctx context.Context, ref string) error {
	_, err := c.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return fmt.Errorf("CRI PullImage %s: %w", ref, err)
	}
	return nil
}

// Pod is a pod sandbox with one container, started through CRI.
type Pod struct {
	Name, Handler string
	ID            string
	ContainerID   string
	// LogPath is the container's CRI log.
	LogPath string
	// Cgroup is the pod's host cgroup (the kubelet's cgroupfs form).
	Cgroup    string
	sandboxed *runtimeapi.PodSandboxConfig
}

// PodTimes are the CRI calls of one pod start.
type PodTimes struct {
	RunPodSandbox, CreateContainer, StartContainer time.Duration
	// Output is from StartContainer's return until the container's
	// output (WaitFor) was in its log; 0 when not waited for.
	Output time.Duration
	// Total is from RunPodSandbox's call to the end of the last step.
	Total time.Duration
	// Started is RunPodSandbox's call.
	Started time.Time
}

// outputPoll is how often a pod's CRI log is looked at: the resolution of
// the "first output" mark, the same for every handler.
const outputPoll = 5 * time.Millisecond

// StartPod runs a pod sandbox with handler and one busybox container
// running command in it. With waitFor set it also waits until that text is
// in the container's log. On error the pod (if created) is returned too,
// so that the caller can remove it.
func (h *Host) StartPod(ctx context.Context, handler, name string, command []string, waitFor string) (*Pod, PodTimes, error) {
	return h.StartPodImage(ctx, handler, name, BusyboxImage, command, waitFor)
}

// StartPodImage is StartPod with the container's image; a nil command
// runs the image's own.
func (h *Host) StartPodImage(ctx context.Context, handler, name, image string, command []string, waitFor string) (*Pod, PodTimes, error) {
	var t PodTimes
	p := &Pod{Name: name, Handler: handler, Cgroup: h.cgroupRoot + "/pod" + name}
	logDir := filepath.Join(h.Dir, "pods", name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, t, err
	}
	p.sandboxed = &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: podNamespace, Uid: name},
		Hostname:     name,
		LogDirectory: logDir,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: p.Cgroup},
	}
	start := time.Now()
	t.Started = start
	rp, err := h.cri.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: p.sandboxed, RuntimeHandler: handler})
	t.RunPodSandbox = time.Since(start)
	if err != nil {
		return nil, t, fmt.Errorf("RunPodSandbox %s (%s): %w", name, handler, err)
	}
	p.ID = rp.PodSandboxId
	h.track(p.ID)
	mark := time.Now()
	cc, err := h.cri.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: p.ID,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  command,
			LogPath:  "main.log",
		},
		SandboxConfig: p.sandboxed,
	})
	t.CreateContainer = time.Since(mark)
	if err != nil {
		return p, t, fmt.Errorf("CreateContainer in %s (%s): %w", name, handler, err)
	}
	p.ContainerID = cc.ContainerId
	p.LogPath = filepath.Join(logDir, "main.log")
	h.track(p.ContainerID)
	mark = time.Now()
	if _, err := h.cri.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: p.ContainerID}); err != nil {
		t.StartContainer = time.Since(mark)
		return p, t, fmt.Errorf("StartContainer in %s (%s): %w", name, handler, err)
	}
	t.StartContainer = time.Since(mark)
	if waitFor != "" {
		mark = time.Now()
		if err := waitForLog(ctx, p.LogPath, []byte(waitFor)); err != nil {
			return p, t, fmt.Errorf("output of %s (%s): %w", name, handler, err)
		}
		t.Output = time.Since(mark)
	}
	t.Total = time.Since(start)
	return p, t, nil
}

// ExecSync runs cmd in the pod's container through CRI, as `crictl exec -s`
// does, and fails unless it exits 0.
func (h *Host) ExecSync(ctx context.Context, p *Pod, cmd []string, timeout time.Duration) error {
	r, err := h.cri.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: p.ContainerID, Cmd: cmd, Timeout: int64(timeout / time.Second)})
	if err != nil {
		return fmt.Errorf("ExecSync %v in %s (%s): %w", cmd, p.Name, p.Handler, err)
	}
	if r.ExitCode != 0 {
		return fmt.Errorf("ExecSync %v in %s (%s): exit code %d: %s", cmd, p.Name, p.Handler, r.ExitCode, r.Stderr)
	}
	return nil
}

// PodIP is the pod's address on the pod network.
func (h *Host) PodIP(ctx context.Context, p *Pod) (string, error) {
	st, err := h.cri.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.ID})
	if err != nil {
		return "", fmt.Errorf("PodSandboxStatus %s: %w", p.Name, err)
	}
	ip := st.GetStatus().GetNetwork().GetIp()
	if ip == "" {
		return "", fmt.Errorf("pod %s (%s) has no IP", p.Name, p.Handler)
	}
	return ip, nil
}

// waitForLog polls a CRI log until it holds want.
func waitForLog(ctx context.Context, path string, want []byte) error {
	tick := time.NewTicker(outputPoll)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			b, _ := os.ReadFile(path)
			return fmt.Errorf("%q not in %s (%w); it holds %q", want, path, ctx.Err(), b)
		case <-tick.C:
		}
	}
}

// removeTimeout bounds one pod's removal: a pod that cannot be removed
// is left to Close, which reports it.
const removeTimeout = 2 * time.Minute

// RemovePod stops and removes the pod and its container; a pod of the
// cache mode returns once the pool is full again (WaitCacheRefilled).
func (h *Host) RemovePod(ctx context.Context, p *Pod) error {
	if p == nil || p.ID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	if _, err := h.cri.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.ID}); err != nil {
		return fmt.Errorf("StopPodSandbox %s: %w", p.Name, err)
	}
	if _, err := h.cri.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.ID}); err != nil {
		return fmt.Errorf("RemovePodSandbox %s: %w", p.Name, err)
	}
	return h.WaitCacheRefilled(ctx, p.Handler)
}

// removeAllPods removes every pod containerd knows, as a drained node's
// kubelet would.
func (h *Host) removeAllPods(ctx context.Context) error {
	list, err := h.cri.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("ListPodSandbox: %w", err)
	}
	var errs []error
	for _, s := range list.Items {
		if err := h.RemovePod(ctx, &Pod{Name: s.Metadata.GetName(), ID: s.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove pods: %v", errs)
	}
	return nil
}

// criLeaks lists pods and containers containerd still knows.
func (h *Host) criLeaks(ctx context.Context) []string {
	var out []string
	pods, err := h.cri.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return []string{"CRI ListPodSandbox: " + err.Error()}
	}
	for _, s := range pods.Items {
		out = append(out, fmt.Sprintf("CRI pod still listed: %s (%s)", s.Metadata.GetName(), s.Id))
	}
	ctrs, err := h.cri.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return append(out, "CRI ListContainers: "+err.Error())
	}
	for _, c := range ctrs.Containers {
		out = append(out, "CRI container still listed: "+c.Id)
	}
	return out
}
