// Package nodesuite puts every pod of the upstream Kubernetes node
// conformance specs on one runtime class, the way an operator switches
// namespaces over: a MutatingAdmissionPolicy (admissionregistration.k8s.io/v1)
// and its binding that set runtimeClassName and the class's overhead on each
// pod that names no class and does not use the host network. It also keeps
// the table of known differences from the runc baseline, each with its reason.
package nodesuite

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// E2ENamespaceLabel is set by the upstream e2e framework on every namespace
// it creates; the binding selects those namespaces and no other.
const E2ENamespaceLabel = "e2e-run"

// Focus selects the upstream node conformance specs.
const Focus = `\[sig-node\].*\[Conformance\]`

// Class is a RuntimeClass as the policy needs it.
type Class struct {
	Name string
	// Overhead is the class's overhead.podFixed (resource -> quantity). The
	// RuntimeClass admission plugin runs before the policy, so it cannot
	// fill the overhead in; its validation then rejects a pod whose
	// overhead differs from the class's, hence the policy sets it too.
	Overhead map[string]string
}

// PolicyName is the name of the policy and its binding for class.
func PolicyName(class string) string { return "podvm-node-conformance-" + class }

// Manifest is the policy and its binding for c, as one YAML stream.
func Manifest(c Class) string {
	name := PolicyName(c.Name)
	return fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata:
  name: %[1]s
spec:
  failurePolicy: Fail
  reinvocationPolicy: Never
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["pods"]
  matchConditions:
  - name: names-no-runtime-class
    expression: '!has(object.spec.runtimeClassName) || object.spec.runtimeClassName == ""'
  - name: not-host-network
    expression: '!has(object.spec.hostNetwork) || !object.spec.hostNetwork'
  - name: no-overhead-yet
    expression: '!has(object.spec.overhead)'
  mutations:
  - patchType: ApplyConfiguration
    applyConfiguration:
      expression: '%[2]s'
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata:
  name: %[1]s
spec:
  policyName: %[1]s
  matchResources:
    namespaceSelector:
      matchExpressions:
      - key: %[3]s
        operator: Exists
`, name, applyExpression(c), E2ENamespaceLabel)
}

// applyExpression is the CEL apply configuration that puts a pod on c.
func applyExpression(c Class) string {
	fields := []string{fmt.Sprintf("runtimeClassName: %q", c.Name)}
	if len(c.Overhead) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(c.Overhead)) {
			kv = append(kv, fmt.Sprintf("%q: %q", k, c.Overhead[k]))
		}
		fields = append(fields, "overhead: {"+strings.Join(kv, ", ")+"}")
	}
	return "Object{spec: Object.spec{" + strings.Join(fields, ", ") + "}}"
}
