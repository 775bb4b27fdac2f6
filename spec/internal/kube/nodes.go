package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GetNode reads a node.
func (c *Cluster) GetNode(ctx context.Context, name string) (*corev1.Node, error) {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", name, err)
	}
	return n, nil
}

// NodeReady reports the node's Ready condition.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// KubeletConfigz fetches the kubelet's running configuration through the API server's node
// proxy (GET /api/v1/nodes/<node>/proxy/configz).
func (c *Cluster) KubeletConfigz(ctx context.Context, node string) ([]byte, error) {
	raw, err := c.Client.CoreV1().RESTClient().Get().
		AbsPath("/api/v1/nodes", node, "proxy", "configz").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("kubelet configz of node %s: %w", node, err)
	}
	return raw, nil
}
