package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// ExecResult is what a command run in a container said and how it ended.
type ExecResult struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Exec runs cmd in a container, feeding it stdin when not nil. A command that exits non-zero
// is not an error: its code is in the result. An error means the command could not be run or
// its streams broke.
func (c *Cluster) Exec(ctx context.Context, ns, pod, container string, cmd []string, stdin io.Reader) (ExecResult, error) {
	c.used(ns, pod)
	req := c.Client.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   cmd,
			Stdin:     stdin != nil,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(c.Config, "GET", req.URL().String())
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in %s/%s[%s]: %w", ns, pod, container, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.Config, "POST", req.URL())
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in %s/%s[%s]: %w", ns, pod, container, err)
	}
	// WebSockets first (the current protocol), SPDY for API servers that refuse the upgrade.
	executor, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return ExecResult{}, err
	}
	var stdout, stderr bytes.Buffer
	err = executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &stdout, Stderr: &stderr})
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr utilexec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		res.ExitCode = exitErr.ExitStatus()
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("exec %q in %s/%s[%s]: %w (stderr: %s)", strings.Join(cmd, " "), ns, pod, container, err, strings.TrimSpace(res.Stderr))
	}
	return res, nil
}

// Sh runs a shell script in a container and returns its stdout. A non-zero exit is an error
// that quotes the script's stderr.
func (c *Cluster) Sh(ctx context.Context, ns, pod, container, script string) (string, error) {
	res, err := c.Exec(ctx, ns, pod, container, []string{"sh", "-c", script}, nil)
	if err != nil {
		return res.Stdout, err
	}
	if res.ExitCode != 0 {
		return res.Stdout, fmt.Errorf("script in %s/%s[%s] exited %d: %s\nscript: %s", ns, pod, container, res.ExitCode, strings.TrimSpace(res.Stderr), script)
	}
	return res.Stdout, nil
}
