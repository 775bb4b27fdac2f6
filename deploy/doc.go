// Package deploy puts podvm on the nodes of a real Kubernetes cluster, the
// way kata-deploy does for Kata Containers: one set of manifests makes
// nodes able to run pods with `runtimeClassName: podvm`, and one command
// removes it again.
//
// It holds three things:
//
//   - the manifests (Render, RenderCleanup): a namespace, a ServiceAccount
//     allowed only to read and patch nodes, an admission policy that lets
//     its token change only its own node's podvm label, the installer
//     DaemonSet (per node, a privileged init container running `podvm
//     deploy node install`, see package deploy/node, then an unprivileged
//     container that holds the pod Ready), the cleanup DaemonSet that
//     undoes it, and the RuntimeClass `podvm` with its pod overhead and a
//     node selector on the label the installer sets once a node is ready;
//   - the installer image (BuildImage): podvm's own static binaries, the
//     guest kernel and initramfs and the default configuration, with no
//     base image, built with go-containerregistry and pushed to a registry
//     or written as a tarball;
//   - Install and Uninstall, which apply and remove the manifests with the
//     cluster's kubectl and wait for every node, reporting each one.
//
// The operator-facing description is docs/deploy.md.
package deploy
