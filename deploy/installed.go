package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Installed finds the install on the cluster (as helm and kata-deploy
// do): the namespace labelled PartOfLabel, and the Options recorded in its
// OptionsAnnotation. namespace, if not "", picks one of several. found is
// false when the cluster has no podvm namespace.
func Installed(ctx context.Context, k Kubectl, namespace string) (o Options, found bool, err error) {
	b, err := k.Run(ctx, nil, "get", "namespaces", "-l", PartOfLabel, "-o", "json")
	if err != nil {
		return o, false, err
	}
	var list struct {
		Items []struct {
			Metadata struct {
				Name        string
				Annotations map[string]string
			}
		}
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return o, false, fmt.Errorf("kubectl get namespaces: %w", err)
	}
	var names []string
	records := map[string]string{}
	for _, ns := range list.Items {
		if namespace == "" || ns.Metadata.Name == namespace {
			names = append(names, ns.Metadata.Name)
			records[ns.Metadata.Name] = ns.Metadata.Annotations[OptionsAnnotation]
		}
	}
	switch {
	case len(names) == 0:
		return o, false, nil
	case len(names) > 1:
		return o, false, fmt.Errorf("podvm is installed in %d namespaces (%s): pick one with --namespace", len(names), strings.Join(names, ", "))
	}
	record := records[names[0]]
	if record == "" {
		return o, false, fmt.Errorf("namespace %s (%s) has no %s annotation (installed by an older podvm): pass the install's flags (--image, --prefix, --containerd-*, --restart-command)",
			names[0], PartOfLabel, OptionsAnnotation)
	}
	if err := json.Unmarshal([]byte(record), &o); err != nil {
		return o, false, fmt.Errorf("namespace %s: annotation %s: %w", names[0], OptionsAnnotation, err)
	}
	o.Namespace = names[0]
	return o, true, nil
}
