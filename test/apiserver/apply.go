package apiserver

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
)

// FieldManager is the field manager of every apply the test tier makes, the same one selfkube
// uses.
const FieldManager = "selfkube"

// ApplyDryRun server-side applies obj with dryRun=All: the API server decodes, defaults,
// admits and validates it exactly as for a real apply, and stores nothing. obj is an
// *unstructured.Unstructured or a typed object (*appsv1.DaemonSet ...) with apiVersion and kind
// set. A namespaced object without a namespace goes to "default". Nothing a dry run applies
// exists afterwards: Apply namespaces (and CRDs) for real before dry-running what goes in them.
func (s *Server) ApplyDryRun(ctx context.Context, obj runtime.Object) error {
	_, err := s.apply(ctx, obj, metav1.ApplyOptions{FieldManager: FieldManager, DryRun: []string{metav1.DryRunAll}})
	return err
}

// Apply server-side applies obj for real and returns what the server stored.
func (s *Server) Apply(ctx context.Context, obj runtime.Object) (*unstructured.Unstructured, error) {
	return s.apply(ctx, obj, metav1.ApplyOptions{FieldManager: FieldManager})
}

func (s *Server) apply(ctx context.Context, o runtime.Object, opts metav1.ApplyOptions) (*unstructured.Unstructured, error) {
	obj, ok := o.(*unstructured.Unstructured)
	if !ok {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, fmt.Errorf("applying a %T: converting it: %w", o, err)
		}
		obj = &unstructured.Unstructured{Object: content}
	}
	gvk := obj.GroupVersionKind()
	what := fmt.Sprintf("%s %s", gvk.Kind, obj.GetName())
	if gvk.Kind == "" || gvk.Version == "" {
		return nil, fmt.Errorf("applying %q: apiVersion and kind must be set", obj.GetName())
	}
	mapping, err := s.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// A kind added since the last discovery (a CRD the test created): look again once.
		s.Mapper.Reset()
		mapping, err = s.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("applying %s: finding the resource of %s: %w", what, gvk, err)
	}
	var client dynamic.ResourceInterface = s.Dynamic.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		what = fmt.Sprintf("%s %s/%s", gvk.Kind, ns, obj.GetName())
		client = s.Dynamic.Resource(mapping.Resource).Namespace(ns)
	}
	out, err := client.Apply(ctx, obj.GetName(), obj, opts)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", what, err)
	}
	return out, nil
}
