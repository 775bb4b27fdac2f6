package cluster

import (
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestRuntimeClassesManifest(t *testing.T) {
	classes := []RuntimeClass{
		{Name: "runc", Handler: "runc"},
		{Name: "podvm", Handler: "podvm", OverheadMemory: "512Mi", OverheadCPU: "250m"},
		{Name: "runc-fakevm", Handler: "runc-fakevm"},
	}
	text := RuntimeClassesManifest("Written by a test.\nSecond line.", classes...)
	if !strings.HasPrefix(text, "# Written by a test.\n# Second line.\napiVersion: node.k8s.io/v1\n") {
		t.Errorf("header not first, as comment lines:\n%s", text)
	}
	type doc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Handler  string `yaml:"handler"`
		Overhead *struct {
			PodFixed map[string]string `yaml:"podFixed"`
		} `yaml:"overhead"`
	}
	docs := strings.Split(text, "\n---\n")
	if len(docs) != len(classes) {
		t.Fatalf("%d documents, want %d:\n%s", len(docs), len(classes), text)
	}
	for i, c := range classes {
		var d doc
		if err := yaml.Unmarshal([]byte(docs[i]), &d); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if d.APIVersion != "node.k8s.io/v1" || d.Kind != "RuntimeClass" || d.Metadata.Name != c.Name || d.Handler != c.Handler {
			t.Errorf("document %d: %+v, want %+v", i, d, c)
		}
		if want := c.OverheadMemory != ""; (d.Overhead != nil) != want {
			t.Errorf("%s: overhead %+v", c.Name, d.Overhead)
		} else if want && !reflect.DeepEqual(d.Overhead.PodFixed, map[string]string{"memory": c.OverheadMemory, "cpu": c.OverheadCPU}) {
			t.Errorf("%s: podFixed %v", c.Name, d.Overhead.PodFixed)
		}
	}
	if got := Handlers(classes); !reflect.DeepEqual(got, map[string]string{"runc": "runc", "podvm": "podvm", "runc-fakevm": "runc-fakevm"}) {
		t.Errorf("Handlers: %v", got)
	}
	if got := RuntimeClassesManifest("", classes[0]); strings.HasPrefix(got, "#") {
		t.Errorf("empty header written:\n%s", got)
	}
}
