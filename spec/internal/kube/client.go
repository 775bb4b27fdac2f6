// Package kube holds the small client-go helpers the specs use: connecting, namespaces, pods
// (create, wait, exec, logs, delete), node facts and the node probe. Every helper returns an
// error instead of asserting, so the specs decide what a failure means.
package kube

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is one connection to the cluster under test.
type Cluster struct {
	Config *rest.Config
	Client kubernetes.Interface
	// UsedPod, when set, hears of every pod a spec creates, waits for, runs a command in or
	// reads the log of (not of deletions: a pod deleted in a shared cleanup was not used by
	// the spec that runs it). The suite records them, so that the conformance harness can
	// tell on which pods, and so on which pod VMs, each spec ran.
	UsedPod func(ns, name string)
}

// used tells UsedPod of a pod.
func (c *Cluster) used(ns, name string) {
	if c.UsedPod != nil {
		c.UsedPod(ns, name)
	}
}

// Connect reads a kubeconfig file and builds a clientset from it.
func Connect(kubeconfig string) (*Cluster, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig %s: %w", kubeconfig, err)
	}
	// The specs poll pods every half second from a few goroutines: the default 5 QPS would
	// make waits look slower than the cluster is.
	cfg.QPS = 50
	cfg.Burst = 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("build clientset: %w", err)
	}
	return &Cluster{Config: cfg, Client: client}, nil
}
