package manifests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// renderedKinds knows the kinds selfkube renders: client-go's and
// CustomResourceDefinitions.
var renderedKinds = sync.OnceValues(func() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("building the scheme of rendered kinds: %w", err)
		}
	}
	return s, nil
})

// kindOf looks an object's kind up in the scheme of rendered kinds.
func kindOf(obj runtime.Object) (schema.GroupVersionKind, error) {
	s, err := renderedKinds()
	if err != nil {
		return schema.GroupVersionKind{}, err
	}
	kinds, _, err := s.ObjectKinds(obj)
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("looking up the kind of %T: %w", obj, err)
	}
	return kinds[0], nil
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("reading the metadata of %T: %w", obj, err)
	}
	return m, nil
}

// Encode renders obj as YAML with apiVersion and kind set. The output is deterministic
// (keys sorted) and leaves out what a manifest never sets: status and null
// creationTimestamps. obj itself is not changed.
func Encode(obj runtime.Object) ([]byte, error) {
	gvk, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	obj = obj.DeepCopyObject()
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", gvk.Kind, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree map[string]any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("re-reading encoded %s: %w", gvk.Kind, err)
	}
	delete(tree, "status")
	pruneNullTimestamps(tree)
	pruned, err := json.Marshal(tree)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", gvk.Kind, err)
	}
	out, err := yaml.JSONToYAML(pruned)
	if err != nil {
		return nil, fmt.Errorf("converting %s to YAML: %w", gvk.Kind, err)
	}
	return out, nil
}

// pruneNullTimestamps removes every creationTimestamp: null (object and template
// metadata), which Go's encoding of an unset metav1.Time leaves behind.
func pruneNullTimestamps(v any) {
	switch t := v.(type) {
	case map[string]any:
		if ts, ok := t["creationTimestamp"]; ok && ts == nil {
			delete(t, "creationTimestamp")
		}
		for _, child := range t {
			pruneNullTimestamps(child)
		}
	case []any:
		for _, child := range t {
			pruneNullTimestamps(child)
		}
	}
}
