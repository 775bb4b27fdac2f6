package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// namespacesKubectl answers `kubectl get namespaces -l PartOfLabel` with
// the namespaces of annotations (name -> OptionsAnnotation, "" for none).
func namespacesKubectl(t *testing.T, annotations map[string]string) Kubectl {
	return Kubectl{run: func(_ context.Context, _ []byte, args ...string) ([]byte, error) {
		if got := strings.Join(args, " "); got != "get namespaces -l "+PartOfLabel+" -o json" {
			return nil, fmt.Errorf("unexpected kubectl %s", got)
		}
		type ns struct {
			Metadata struct {
				Name        string            `json:"name"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"metadata"`
		}
		var list struct {
			Items []ns `json:"items"`
		}
		for name, a := range annotations {
			var n ns
			n.Metadata.Name = name
			if a != "" {
				n.Metadata.Annotations = map[string]string{OptionsAnnotation: a}
			}
			list.Items = append(list.Items, n)
		}
		return json.Marshal(list)
	}}
}

// What Render records on the namespace is what Installed reads back.
func TestInstalledReadsTheRecord(t *testing.T) {
	o := testOptions()
	o.Namespace = "podvm-x"
	o.RestartCommand = "/opt/bin/restart --now"
	o.NodeSelector = map[string]string{"pool": "vm", "kubernetes.io/os": "linux"}
	text, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	record := ""
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), OptionsAnnotation+": "); ok {
			if err := json.Unmarshal([]byte(v), &record); err != nil {
				t.Fatalf("annotation %s is not a quoted string: %v", v, err)
			}
		}
	}
	if record == "" {
		t.Fatalf("the manifests record no %s:\n%s", OptionsAnnotation, text)
	}
	got, found, err := Installed(context.Background(), namespacesKubectl(t, map[string]string{"podvm-x": record}), "")
	if err != nil || !found {
		t.Fatalf("Installed: found %v, %v", found, err)
	}
	if !reflect.DeepEqual(got, o) {
		t.Errorf("Installed read\n%+v\nwant what was rendered\n%+v", got, o)
	}
}

func TestInstalledNoneOrAmbiguous(t *testing.T) {
	ctx := context.Background()
	if _, found, err := Installed(ctx, namespacesKubectl(t, nil), ""); found || err != nil {
		t.Errorf("no namespace: found %v, err %v; want neither", found, err)
	}
	two := namespacesKubectl(t, map[string]string{"a": `{"image":"i"}`, "b": `{"image":"j"}`})
	if _, _, err := Installed(ctx, two, ""); err == nil || !strings.Contains(err.Error(), "--namespace") {
		t.Errorf("two installs: %v, want to be asked for --namespace", err)
	}
	if o, found, err := Installed(ctx, two, "b"); err != nil || !found || o.Image != "j" || o.Namespace != "b" {
		t.Errorf("two installs, --namespace b: %+v %v %v", o, found, err)
	}
	old := namespacesKubectl(t, map[string]string{"podvm-system": ""})
	if _, _, err := Installed(ctx, old, ""); err == nil || !strings.Contains(err.Error(), "--image") {
		t.Errorf("an install without a record: %v, want to be asked for the install's flags", err)
	}
}
