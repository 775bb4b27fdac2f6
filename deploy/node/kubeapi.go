package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// The installer's only API call is a patch of its own node's labels. It
// is made with the pod's ServiceAccount token over plain HTTPS rather
// than client-go, which the root module does not depend on (see
// docs/deploy.md).

// serviceAccountDir is where the kubelet mounts the pod's token and CA.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// APILabeler labels nodes through the API server with the pod's
// ServiceAccount.
type APILabeler struct {
	// Server is the API server's URL; empty means the in-cluster address
	// (KUBERNETES_SERVICE_HOST and _PORT).
	Server string
	// TokenDir holds token and ca.crt (default: serviceAccountDir).
	TokenDir string
	client   *http.Client
}

func (a *APILabeler) server() (string, error) {
	if a.Server != "" {
		return strings.TrimRight(a.Server, "/"), nil
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return "", fmt.Errorf("no API server address: KUBERNETES_SERVICE_HOST/PORT are unset (not running in a pod?): pass --api-server")
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

func (a *APILabeler) dir() string {
	if a.TokenDir != "" {
		return a.TokenDir
	}
	return serviceAccountDir
}

func (a *APILabeler) httpClient() (*http.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	ca, err := os.ReadFile(a.dir() + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("read the cluster CA: %w (the installer's init container needs the installer-token volume of the rendered DaemonSet)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s/ca.crt", a.dir())
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: nil}
	a.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return a.client, nil
}

// Label implements Labeler with a JSON merge patch of the node's labels
// (a null value removes the key, and removing an absent key is no error).
func (a *APILabeler) Label(ctx context.Context, node, key, value string) error {
	server, err := a.server()
	if err != nil {
		return err
	}
	client, err := a.httpClient()
	if err != nil {
		return err
	}
	token, err := os.ReadFile(a.dir() + "/token") // re-read: projected tokens rotate
	if err != nil {
		return fmt.Errorf("read the ServiceAccount token: %w", err)
	}
	var v any
	if value != "" {
		v = value
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: v}}})
	if err != nil {
		return err
	}
	u := server + "/api/v1/nodes/" + url.PathEscape(node)
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 2 * time.Second):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/merge-patch+json")
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := client.Do(req)
		if err != nil {
			last = fmt.Errorf("PATCH %s: %w (is the API server reachable from the node? --api-server sets its address)", u, err)
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return fmt.Errorf("label node %s: %s: the installer's ServiceAccount may not patch this node: apply the ClusterRole, ClusterRoleBinding "+
				"and ValidatingAdmissionPolicy from `podvm deploy render`; the policy admits only a token bound to a pod on this very node "+
				"(NODE_NAME from spec.nodeName) changing only the podvm label: %s", node, resp.Status, strings.TrimSpace(string(msg)))
		case resp.StatusCode == http.StatusNotFound:
			return fmt.Errorf("label node %s: no such node (NODE_NAME must come from the downward API spec.nodeName): %s", node, strings.TrimSpace(string(msg)))
		default:
			last = fmt.Errorf("label node %s: %s: %s", node, resp.Status, strings.TrimSpace(string(msg)))
		}
	}
	return last
}
