package controlplane

import (
	"github.com/selfkube/selfkube/internal/config"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// versionPattern is a Kubernetes release (v1.36.3, v1.37.0-rc.1), as config requires.
const versionPattern = `^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`

// CRD is the CustomResourceDefinition of ControlPlanes. Its schema rejects what it can
// say in OpenAPI and CEL (the name, the version's form, flag names, quantities' type);
// Validate says the rest, and the operator runs it before any change.
func CRD() *apiextensionsv1.CustomResourceDefinition {
	str := func(desc string) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "string", Description: desc}
	}
	stringMap := func(desc string) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "object", Description: desc,
			AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: &apiextensionsv1.JSONSchemaProps{Type: "string"}}}
	}
	component := func(name string) apiextensionsv1.JSONSchemaProps {
		extra := stringMap("Flags added to, or overriding, " + name + "'s defaults, without the leading dashes ({\"v\": \"2\"}).")
		extra.XValidations = apiextensionsv1.ValidationRules{{
			Rule:    "self.all(k, !k.startsWith('-') && !k.contains('=') && k != '')",
			Message: "flag names go without leading dashes and without '='",
		}}
		return apiextensionsv1.JSONSchemaProps{
			Type:        "object",
			Description: "What may change of " + name + ".",
			Properties: map[string]apiextensionsv1.JSONSchemaProps{
				"image":     str("The full image reference, overriding <imageRepository>/" + name + ":<kubernetesVersion>."),
				"extraArgs": extra,
				"featureGates": {Type: "object", Description: "Feature gates merged into --feature-gates.",
					AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: &apiextensionsv1.JSONSchemaProps{Type: "boolean"}}},
				"resources": {Type: "object", Description: "Requests and limits overriding the defaults, by resource name.",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"requests": stringMap("Quantities by resource name (cpu: 250m, memory: 512Mi)."),
						"limits":   stringMap("Quantities by resource name."),
					}},
			},
		}
	}
	etcdExtra := stringMap("Flags added to, or overriding, etcd's, without the leading dashes ({\"snapshot-count\": \"5000\"}). " +
		"Those that make a member what it is (name, data-dir, URLs, certificates, initial-cluster) are refused.")
	etcdExtra.XValidations = apiextensionsv1.ValidationRules{{
		Rule:    "self.all(k, !k.startsWith('-') && !k.contains('=') && k != '')",
		Message: "flag names go without leading dashes and without '='",
	}}
	spec := apiextensionsv1.JSONSchemaProps{
		Type:        "object",
		Description: "What the control plane should run.",
		Required:    []string{"kubernetesVersion"},
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"kubernetesVersion": {Type: "string", Pattern: versionPattern,
				Description: "The Kubernetes release of the apiserver, controller manager and scheduler (v1.36.3)."},
			"imageRepository":   str("Registry and path prefix of the component images."),
			"apiServer":         component("kube-apiserver"),
			"controllerManager": component("kube-controller-manager"),
			"scheduler":         component("kube-scheduler"),
			"kubeProxy": {Type: "object", Description: "What may change of kube-proxy (rolled out after the control plane).",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"image": str("The full image reference, overriding <imageRepository>/kube-proxy:<kubernetesVersion>.")}},
			"coreDNS": {Type: "object", Description: "What may change of CoreDNS (rolled out after kube-proxy).",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"image": str("The full image reference, overriding the CoreDNS image of selfkube's release.")}},
			"etcd": {Type: "object", Description: "What may change of the local etcd members (none with an external etcd); " +
				"each control-plane node's agent changes its member, one member at a time.",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"version": {Type: "string", Pattern: config.EtcdVersionPattern,
						Description: "The etcd release the members run (v3.6.16), one member at a time; its image is <imageRepository>/etcd:3.6.16-0."},
					"extraArgs": etcdExtra}},
			"rollout": {Type: "object", Description: "How a change rolls out and is judged.",
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"timeoutSeconds": {Type: "integer", Format: "int32", Minimum: ptr.To[float64](30), Maximum: ptr.To[float64](3600),
						Description: "Seconds a changed component has to become healthy before the change is rolled back (default 300)."},
					"soakSeconds": {Type: "integer", Format: "int32", Minimum: ptr.To[float64](0), Maximum: ptr.To[float64](600),
						Description: "Seconds the changed components of a stage must stay healthy before the next stage changes (default 10)."},
				}},
		},
	}
	column := func(name, path, typ string) apiextensionsv1.CustomResourceColumnDefinition {
		return apiextensionsv1.CustomResourceColumnDefinition{Name: name, Type: typ, JSONPath: path}
	}
	return &apiextensionsv1.CustomResourceDefinition{
		TypeMeta: metav1.TypeMeta{APIVersion: apiextensionsv1.SchemeGroupVersion.String(), Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   Resource + "." + Group,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "selfkube", "app.kubernetes.io/name": "selfkube-controller"},
		},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: Group,
			Scope: apiextensionsv1.ClusterScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural: Resource, Singular: "controlplane", Kind: Kind, ListKind: Kind + "List",
			},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: Version, Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
					column("Version", ".spec.kubernetesVersion", "string"),
					column("Available", `.status.conditions[?(@.type=="Available")].status`, "string"),
					column("Progressing", `.status.conditions[?(@.type=="Progressing")].status`, "string"),
					column("RolledBack", `.status.conditions[?(@.type=="RolledBack")].status`, "string"),
					column("Age", ".metadata.creationTimestamp", "date"),
				},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Description: "The self-hosted control plane of the cluster; there is one, named " + Name +
						". Change its spec to change the control plane; selfkube-controller rolls the change out " +
						"in version-skew order (etcd, the apiserver, then its clients) and rolls it back if a component fails its health gate.",
					Required: []string{"spec"},
					XValidations: apiextensionsv1.ValidationRules{{
						Rule:    "self.metadata.name == '" + Name + "'",
						Message: "a cluster has one ControlPlane, named " + Name,
					}},
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"apiVersion": {Type: "string"},
						"kind":       {Type: "string"},
						"metadata":   {Type: "object"},
						"spec":       spec,
						// Written by the operator only (Status in types.go).
						"status": {Type: "object", XPreserveUnknownFields: ptr.To(true)},
					},
				}},
			}},
		},
	}
}
