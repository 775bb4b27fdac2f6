package deploy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/podvm/podvm/deploy"
)

// checkNothingPrivilegedStays looks, through the node's CRI, at the
// installer's container that stays running once the node is done: no
// token, no node mount, not root, no capabilities.
func checkNothingPrivilegedStays(t *testing.T, crictl, sock string) {
	t.Helper()
	cri := func(args ...string) []byte {
		out, err := exec.Command(crictl, append([]string{"--runtime-endpoint", "unix://" + sock}, args...)...).Output()
		if err != nil {
			t.Fatalf("crictl %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	ids := strings.Fields(string(cri("ps", "-q", "--name", "^done$", "--label", "io.kubernetes.pod.namespace="+deploy.DefaultNamespace)))
	if len(ids) != 1 {
		t.Fatalf("the installer's running containers on the node: %q, want one", ids)
	}
	var c struct {
		Status struct {
			Mounts []struct {
				ContainerPath string `json:"containerPath"`
				HostPath      string `json:"hostPath"`
			}
		}
		Info struct {
			RuntimeSpec struct {
				Process struct {
					User         struct{ UID int }
					Capabilities struct{ Bounding, Effective, Permitted []string }
				}
			} `json:"runtimeSpec"`
		}
	}
	if err := json.Unmarshal(cri("inspect", ids[0]), &c); err != nil {
		t.Fatalf("crictl inspect: %v", err)
	}
	for _, m := range c.Status.Mounts {
		if strings.Contains(m.ContainerPath, "serviceaccount") || m.HostPath == "/" || strings.HasPrefix(m.ContainerPath, "/host") {
			t.Errorf("the container that stays mounts %s at %s", m.HostPath, m.ContainerPath)
		}
	}
	pr := c.Info.RuntimeSpec.Process
	if pr.User.UID == 0 || len(pr.Capabilities.Bounding)+len(pr.Capabilities.Effective)+len(pr.Capabilities.Permitted) != 0 {
		t.Errorf("the container that stays runs as uid %d with capabilities %+v", pr.User.UID, pr.Capabilities)
	}
}

// checkInstallerTokenConfined plays an attacker who holds the installer's
// token: requested for the ServiceAccount bound to the installer's pod
// (TokenRequest with a boundObjectRef, so it carries the pod's node in
// its claims, as the pod's own projected token does), and one not bound
// to a pod. Against a second Node object (the cluster has one node; the
// API accepts a Node without a kubelet) and its own node, only setting
// or removing its own node's podvm label may succeed.
func checkInstallerTokenConfined(t *testing.T, must func(string, ...string) string, apiServer, ownNode string) {
	t.Helper()
	ns := deploy.DefaultNamespace
	pod := must("", "get", "pods", "-n", ns, "-l", "app.kubernetes.io/name="+deploy.InstallerName, "-o", "jsonpath={.items[0].metadata.name}")
	bound := must("", "create", "token", "podvm-installer", "-n", ns, "--bound-object-kind", "Pod", "--bound-object-name", pod, "--duration", "10m")
	unbound := must("", "create", "token", "podvm-installer", "-n", ns, "--duration", "10m")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(must("", "get", "configmap", "kube-root-ca.crt", "-n", ns, "-o", `jsonpath={.data.ca\.crt}`))) {
		t.Fatal("no CA in kube-root-ca.crt")
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil}}

	const other = "podvm-deploy-other-node"
	must("apiVersion: v1\nkind: Node\nmetadata: {name: "+other+", labels: {example.com/role: victim}}\n", "apply", "-f", "-")
	defer must("", "delete", "node", other, "--ignore-not-found", "--wait=false")

	label := func(key string, value any) string {
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: value}}})
		return string(b)
	}
	const byPolicy, byRBAC = "ValidatingAdmissionPolicy '" + deploy.PolicyName + "'", "cannot"
	for _, tc := range []struct {
		what, token, method, path, body string
		deniedBy                        string // "" when the request must succeed
	}{
		{"label another node " + deploy.LabelKey + "=" + deploy.LabelValue, bound, http.MethodPatch, other, label(deploy.LabelKey, deploy.LabelValue), byPolicy},
		{"label another node otherwise", bound, http.MethodPatch, other, label("example.com/role", "owned"), byPolicy},
		{"set another label on its own node", bound, http.MethodPatch, ownNode, label("example.com/evil", "1"), byPolicy},
		{"remove another label of its own node", bound, http.MethodPatch, ownNode, label("kubernetes.io/os", nil), byPolicy},
		{"set its own podvm label to another value", bound, http.MethodPatch, ownNode, label(deploy.LabelKey, "owned"), byPolicy},
		{"taint its own node", bound, http.MethodPatch, ownNode, `{"spec":{"taints":[{"key":"example.com/evil","effect":"NoSchedule"}]}}`, byPolicy},
		{"cordon its own node", bound, http.MethodPatch, ownNode, `{"spec":{"unschedulable":true}}`, byPolicy},
		{"annotate its own node", bound, http.MethodPatch, ownNode, `{"metadata":{"annotations":{"example.com/evil":"1"}}}`, byPolicy},
		{"remove its own podvm label with a token not bound to a pod", unbound, http.MethodPatch, ownNode, label(deploy.LabelKey, nil), byPolicy},
		{"list the nodes", bound, http.MethodGet, "", "", byRBAC},
		{"delete another node", bound, http.MethodDelete, other, "", byRBAC},
		{"remove its own podvm label", bound, http.MethodPatch, ownNode, label(deploy.LabelKey, nil), ""},
		{"set its own podvm label", bound, http.MethodPatch, ownNode, label(deploy.LabelKey, deploy.LabelValue), ""},
	} {
		status, msg := apiRequest(t, client, tc.token, tc.method, apiServer+"/api/v1/nodes/"+tc.path, tc.body)
		switch {
		case tc.deniedBy == "" && status != http.StatusOK:
			t.Errorf("the installer's token may %s: got %d %s", tc.what, status, msg)
		case tc.deniedBy != "" && (status != http.StatusForbidden || !strings.Contains(msg, tc.deniedBy)):
			t.Errorf("the installer's token could %s: got %d %s (want 403, denied by %s)", tc.what, status, msg, tc.deniedBy)
		default:
			t.Logf("the installer's token tries to %s: %d %s", tc.what, status, firstLine(msg))
		}
	}
	if w := must("", "get", "validatingadmissionpolicy", deploy.PolicyName, "-o", "jsonpath={.status.typeChecking.expressionWarnings}"); w != "" {
		t.Errorf("the API server's type check of the policy warns: %s", w)
	}
	labels := must("", "get", "node", other, "-o", "jsonpath={.metadata.labels}")
	own := must("", "get", "node", ownNode, "-o", "jsonpath={.metadata.labels} {.spec} {.metadata.annotations}")
	if strings.Contains(labels, deploy.LabelKey) || strings.Contains(labels, "owned") || strings.Contains(own, "example.com/evil") ||
		!strings.Contains(own, `"`+deploy.LabelKey+`":"`+deploy.LabelValue+`"`) || !strings.Contains(own, `"kubernetes.io/os"`) {
		t.Errorf("after the attempts: other node labels %s; own node %s", labels, own)
	}
}

func apiRequest(t *testing.T, client *http.Client, token, method, url, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8192))
	var st struct{ Message string }
	if json.Unmarshal(b, &st) == nil && st.Message != "" {
		return resp.StatusCode, st.Message
	}
	return resp.StatusCode, string(b)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return fmt.Sprintf("%.200s", s)
}
