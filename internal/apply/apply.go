// Package apply puts objects into the cluster with server-side apply, under selfkube's
// one field manager, in the order given (the asset file names encode it: namespaces and
// CRDs first, workloads after the RBAC and Secrets they need).
package apply

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager is selfkube's one field manager: every apply here, and every other write
// selfkube makes as itself (bootstrap tokens, the certificate hand-off, node labels), owns
// its fields under this name. (The CSR approver is another actor, with its own.)
const FieldManager = "selfkube"

// Applier applies objects through the dynamic client, one at a time (it is not for
// concurrent use).
type Applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	// defined holds the kinds of the CRDs applied so far: the API server serves them
	// once they are established, a moment after the apply.
	defined map[schema.GroupKind]bool
}

// establishTimeout bounds the wait for a kind whose CRD was just applied.
const establishTimeout = 30 * time.Second

// crdKind is the kind of a CustomResourceDefinition.
var crdKind = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}

// New builds an Applier for the API server of cfg.
func New(cfg *rest.Config) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building a dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building a discovery client: %w", err)
	}
	return NewFor(dyn, dc), nil
}

// NewFor builds an Applier that writes through dyn and maps kinds to resources with dc's
// answers (cached until a kind is not found). New uses it; tests pass fakes.
func NewFor(dyn dynamic.Interface, dc discovery.DiscoveryInterface) *Applier {
	return &Applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// Object applies one typed object (apiVersion and kind must be set). Conflicts with other
// field managers are forced: selfkube's assets are the source of truth for what they set.
func (a *Applier) Object(ctx context.Context, obj runtime.Object) error {
	_, err := a.apply(ctx, obj, false)
	return err
}

// DryRun applies obj as Object does, but the API server only says what would result
// (nothing is stored): the object as it would be. Its generation tells whether the apply
// would change the object's spec.
func (a *Applier) DryRun(ctx context.Context, obj runtime.Object) (*unstructured.Unstructured, error) {
	return a.apply(ctx, obj, true)
}

func (a *Applier) apply(ctx context.Context, obj runtime.Object, dryRun bool) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", obj, err)
	}
	u := &unstructured.Unstructured{Object: content}
	gvk := u.GroupVersionKind()
	if gvk.Kind == "" || gvk.Version == "" {
		return nil, fmt.Errorf("applying %T %q: apiVersion and kind must be set", obj, u.GetName())
	}
	what := gvk.Kind + " " + u.GetName()
	if ns := u.GetNamespace(); ns != "" {
		what = gvk.Kind + " " + ns + "/" + u.GetName()
	}
	mapping, err := a.mapping(ctx, gvk)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", what, err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	out, err := ri.Apply(ctx, u.GetName(), u, opts)
	if err != nil {
		return nil, fmt.Errorf("applying %s: %w", what, err)
	}
	if dryRun {
		return out, nil
	}
	if gvk.GroupKind() == crdKind {
		group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
		if a.defined == nil {
			a.defined = map[schema.GroupKind]bool{}
		}
		a.defined[schema.GroupKind{Group: group, Kind: kind}] = true
	}
	return out, nil
}

// Create creates obj (apiVersion and kind set) unless an object of its kind and name
// exists, which it leaves as it is; it says whether it created it. It is for objects
// that selfkube makes once and others change afterwards (the ControlPlane).
func (a *Applier) Create(ctx context.Context, obj runtime.Object) (bool, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return false, fmt.Errorf("converting %T: %w", obj, err)
	}
	u := &unstructured.Unstructured{Object: content}
	delete(u.Object, "status")
	gvk := u.GroupVersionKind()
	mapping, err := a.mapping(ctx, gvk)
	if err != nil {
		return false, fmt.Errorf("creating %s %s: %w", gvk.Kind, u.GetName(), err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
	}
	if _, err := ri.Create(ctx, u, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("creating %s %s: %w", gvk.Kind, u.GetName(), err)
	}
	return true, nil
}

// mapping finds the resource of gvk. Discovery is cached, so a kind it does not know is
// looked up again; a kind whose CRD this Applier applied is waited for (up to
// establishTimeout), as the API server serves it only once the CRD is established.
func (a *Applier) mapping(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if !meta.IsNoMatchError(err) {
		return m, err
	}
	deadline := time.Now().Add(establishTimeout)
	for {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if !meta.IsNoMatchError(err) || !a.defined[gvk.GroupKind()] {
			return m, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("its CustomResourceDefinition was applied, yet after %s the API server does not serve it: %w; "+
				"check the CRD's conditions (kubectl get crd -o yaml)", establishTimeout, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for its CustomResourceDefinition to be established: %w (last: %w)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
