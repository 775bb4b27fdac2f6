package nodesuite

import (
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

func TestManifest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		class Class
		want  string // the apply configuration expression
	}{
		{"no overhead", Class{Name: "runc"}, `Object{spec: Object.spec{runtimeClassName: "runc"}}`},
		{"overhead, keys sorted", Class{Name: "podvm", Overhead: map[string]string{"memory": "160Mi", "cpu": "250m"}},
			`Object{spec: Object.spec{runtimeClassName: "podvm", overhead: {"cpu": "250m", "memory": "160Mi"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs := strings.Split(Manifest(tc.class), "\n---\n")
			if len(docs) != 2 {
				t.Fatalf("want a policy and a binding, got %d documents", len(docs))
			}
			var policy struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string
				Metadata   struct{ Name string }
				Spec       struct {
					FailurePolicy    string `yaml:"failurePolicy"`
					MatchConstraints struct {
						ResourceRules []struct {
							APIGroups             []string `yaml:"apiGroups"`
							APIVersions           []string `yaml:"apiVersions"`
							Operations, Resources []string
						} `yaml:"resourceRules"`
					} `yaml:"matchConstraints"`
					MatchConditions    []struct{ Name, Expression string } `yaml:"matchConditions"`
					ReinvocationPolicy string                              `yaml:"reinvocationPolicy"`
					Mutations          []struct {
						PatchType          string                      `yaml:"patchType"`
						ApplyConfiguration struct{ Expression string } `yaml:"applyConfiguration"`
					}
				}
			}
			if err := strict(docs[0], &policy); err != nil {
				t.Fatalf("policy: %v\n%s", err, docs[0])
			}
			if policy.APIVersion != "admissionregistration.k8s.io/v1" || policy.Kind != "MutatingAdmissionPolicy" || policy.Metadata.Name != PolicyName(tc.class.Name) {
				t.Errorf("policy header: %+v", policy)
			}
			if policy.Spec.FailurePolicy != "Fail" {
				t.Errorf("failurePolicy %q: a pod the policy cannot mutate must not run on the default handler unnoticed", policy.Spec.FailurePolicy)
			}
			rr := policy.Spec.MatchConstraints.ResourceRules
			if len(rr) != 1 || strings.Join(rr[0].Operations, ",") != "CREATE" || strings.Join(rr[0].Resources, ",") != "pods" ||
				len(rr[0].APIGroups) != 1 || rr[0].APIGroups[0] != "" {
				t.Errorf("resource rules: %+v", rr)
			}
			conds := map[string]string{}
			for _, c := range policy.Spec.MatchConditions {
				conds[c.Name] = c.Expression
			}
			for name, want := range map[string]string{
				"names-no-runtime-class": `!has(object.spec.runtimeClassName) || object.spec.runtimeClassName == ""`,
				"not-host-network":       `!has(object.spec.hostNetwork) || !object.spec.hostNetwork`,
				"no-overhead-yet":        `!has(object.spec.overhead)`,
			} {
				if conds[name] != want {
					t.Errorf("match condition %s = %q, want %q", name, conds[name], want)
				}
			}
			if m := policy.Spec.Mutations; len(m) != 1 || m[0].PatchType != "ApplyConfiguration" || m[0].ApplyConfiguration.Expression != tc.want {
				t.Errorf("mutations: %+v, want expression %s", m, tc.want)
			}

			var binding struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string
				Metadata   struct{ Name string }
				Spec       struct {
					PolicyName     string `yaml:"policyName"`
					MatchResources struct {
						NamespaceSelector struct {
							MatchExpressions []struct{ Key, Operator string } `yaml:"matchExpressions"`
						} `yaml:"namespaceSelector"`
					} `yaml:"matchResources"`
				}
			}
			if err := strict(docs[1], &binding); err != nil {
				t.Fatalf("binding: %v\n%s", err, docs[1])
			}
			if binding.Kind != "MutatingAdmissionPolicyBinding" || binding.Spec.PolicyName != PolicyName(tc.class.Name) || binding.Metadata.Name != PolicyName(tc.class.Name) {
				t.Errorf("binding: %+v", binding)
			}
			me := binding.Spec.MatchResources.NamespaceSelector.MatchExpressions
			if len(me) != 1 || me[0].Key != E2ENamespaceLabel || me[0].Operator != "Exists" {
				t.Errorf("binding selects %+v, want only the e2e namespaces (%s exists)", me, E2ENamespaceLabel)
			}
		})
	}
}

func TestParseClass(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       map[string]string
	}{
		{"overhead", `{"handler":"podvm","overhead":{"podFixed":{"cpu":"250m","memory":"160Mi"}}}`, map[string]string{"cpu": "250m", "memory": "160Mi"}},
		{"none", `{"handler":"runc"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseClass("x", []byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Overhead) != len(tc.want) {
				t.Fatalf("overhead %v, want %v", c.Overhead, tc.want)
			}
			for k, v := range tc.want {
				if c.Overhead[k] != v {
					t.Errorf("overhead %v, want %v", c.Overhead, tc.want)
				}
			}
		})
	}
}

// strict decodes doc into v, refusing fields v does not name.
func strict(doc string, v any) error {
	d := yaml.NewDecoder(strings.NewReader(doc))
	d.KnownFields(true)
	return d.Decode(v)
}
