// Package kubeconfig owns every kubeconfig selfkube makes.
//
// Ensure makes the files of the control plane and the first node: admin.conf,
// super-admin.conf, controller-manager.conf, scheduler.conf and kubelet.conf. Each embeds
// the cluster CA and a client certificate signed by it (Build), and points at the
// control-plane endpoint. Ensure follows pki.Ensure's rules: reuse what fits, generate
// what is missing, refuse (naming the file) what differs, check everything first.
//
// The other shapes are pure functions: ClusterOnly (cluster-info's discovery document),
// ForToken (a kubelet's bootstrap kubeconfig) and ForServiceAccount (a pod's, kube-proxy's).
package kubeconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/pki"
)

// Dir is the asset-directory folder that holds the kubeconfigs.
const Dir = "auth"

// AdminGroup is the group of admin.conf's certificate. It is kubeadm's name, and like
// kubeadm it is bound to cluster-admin by a ClusterRoleBinding (rendered by the
// manifests), so the binding can be removed to revoke admin.conf; super-admin.conf's
// system:masters cannot be revoked and is kept for break-glass use.
const AdminGroup = "kubeadm:cluster-admins"

// File names of the kubeconfigs.
const (
	Admin             = "admin.conf"
	SuperAdmin        = "super-admin.conf"
	ControllerManager = "controller-manager.conf"
	Scheduler         = "scheduler.conf"
	Kubelet           = "kubelet.conf"
)

// ClusterName is the name of the cluster entry in every kubeconfig.
const ClusterName = "kubernetes"

// Spec declares one kubeconfig file.
type Spec struct {
	// File is the file name in the kubeconfig directory.
	File string
	// Cert is the client certificate; its CommonName is also the kubeconfig user name.
	Cert pki.Spec
}

// Specs lists the kubeconfigs a control-plane node needs.
func Specs(cfg *config.Config) []Spec {
	client := func(file, cn string, groups ...string) Spec {
		return Spec{File: file, Cert: pki.Spec{Name: file, Kind: pki.KindClient, CA: pki.CA, CommonName: cn, Organization: groups}}
	}
	return []Spec{
		client(Admin, "kubernetes-admin", AdminGroup),
		client(SuperAdmin, "kubernetes-super-admin", "system:masters"),
		client(ControllerManager, "system:kube-controller-manager"),
		client(Scheduler, "system:kube-scheduler"),
		client(Kubelet, "system:node:"+cfg.Node.Name, "system:nodes"),
	}
}

// Server is the API URL every kubeconfig points at.
func Server(cfg *config.Config) string {
	return "https://" + cfg.Cluster.ControlPlaneEndpoint
}

// Ensure converges dir (an asset directory's auth/) onto Specs(cfg), signing client
// certificates with the cluster CA read from pkiDir (so it runs after pki.Ensure).
//
// An existing kubeconfig is reused when its current context points at Server(cfg) with
// the cluster CA, and its embedded client certificate is valid now, signed by the CA and
// has the expected identity; anything else is an error naming the file, and nothing is
// written. New files are written atomically with mode 0600. In a dry run the CA may be
// missing (pki.Ensure's dry run did not write it): every kubeconfig is then planned as
// generated, and an existing one is an error, as it would be for real.
func Ensure(dir, pkiDir string, cfg *config.Config, opts pki.Options) ([]pki.Result, error) {
	ca, err := pki.LoadCA(pkiDir, pki.CA)
	if err != nil && !(opts.DryRun && errors.Is(err, fs.ErrNotExist)) {
		return nil, fmt.Errorf("loading the cluster CA for the kubeconfigs: %w", err)
	}
	c := cfg.Cluster.Certificates
	issuer := pki.Issuer{KeyAlgorithm: c.KeyAlgorithm, Validity: c.Validity.Duration, Now: opts.Time()}
	server := Server(cfg)
	caFile := filepath.Join(pkiDir, pki.CA+".crt")

	specs := Specs(cfg)
	exists := make([]bool, len(specs))
	var problems []error
	for i, spec := range specs {
		path := filepath.Join(dir, spec.File)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("reading %s: %w", path, err))
			continue
		}
		exists[i] = true
		if ca == nil {
			problems = append(problems, fmt.Errorf("%s: its CA %s does not exist, and a new CA cannot have signed it: "+
				"restore the CA, or remove %s to regenerate it", path, caFile, path))
			continue
		}
		if diffs := check(data, spec, server, ca, issuer); len(diffs) > 0 {
			next := fmt.Sprintf("remove %s to regenerate it", path)
			if strings.HasPrefix(diffs[0], "server is") {
				next += ", or set controlPlaneEndpoint back"
			}
			problems = append(problems, fmt.Errorf("%s: %s; %s", path, strings.Join(diffs, ", "), next))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("checking the kubeconfigs in %s (nothing was written):\n%w", dir, errors.Join(problems...))
	}

	var results []pki.Result
	type file struct {
		path string
		data []byte
	}
	var writes []file
	for i, spec := range specs {
		path := filepath.Join(dir, spec.File)
		if exists[i] {
			results = append(results, pki.Result{Path: path, Action: pki.Existing})
			continue
		}
		results = append(results, pki.Result{Path: path, Action: pki.Generated})
		if ca == nil {
			continue // dry run without a CA: nothing to sign with, nothing to write
		}
		data, err := build(spec, server, ca, issuer)
		if err != nil {
			return nil, fmt.Errorf("making %s: %w", path, err)
		}
		writes = append(writes, file{path, data})
	}
	if opts.DryRun {
		return results, nil
	}
	// The kubeconfigs hold keys: the directory ends 0700 however it was made.
	if err := host.EnsurePrivateDir(dir); err != nil {
		return nil, err
	}
	for _, w := range writes {
		if _, err := host.WriteFile(w.path, w.data, pki.KeyMode); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// Build issues a client certificate for spec, signed by ca, and serializes a kubeconfig
// for server with it.
func Build(spec Spec, server string, ca *pki.KeyPair, issuer pki.Issuer) ([]byte, error) {
	return build(spec, server, ca, issuer)
}

// build issues a client certificate for spec and serializes its kubeconfig.
func build(spec Spec, server string, ca *pki.KeyPair, issuer pki.Issuer) ([]byte, error) {
	kp, err := issuer.Issue(spec.Cert, ca)
	if err != nil {
		return nil, err
	}
	key, err := pki.EncodeKey(kp.Key)
	if err != nil {
		return nil, fmt.Errorf("encoding the client key: %w", err)
	}
	user := spec.Cert.CommonName
	context := user + "@" + ClusterName
	kc := clientcmdapi.NewConfig()
	kc.Clusters[ClusterName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: pki.EncodeCertificate(ca.Cert)}
	kc.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: pki.EncodeCertificate(kp.Cert), ClientKeyData: key}
	kc.Contexts[context] = &clientcmdapi.Context{Cluster: ClusterName, AuthInfo: user}
	kc.CurrentContext = context
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, fmt.Errorf("serializing the kubeconfig: %w", err)
	}
	return data, nil
}

// check lists how an existing kubeconfig differs from what build would make.
func check(data []byte, spec Spec, server string, ca *pki.KeyPair, issuer pki.Issuer) []string {
	kc, err := clientcmd.Load(data)
	if err != nil {
		return []string{fmt.Sprintf("not a kubeconfig (%v)", err)}
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil {
		return []string{fmt.Sprintf("current context %q is not defined", kc.CurrentContext)}
	}
	cluster, user := kc.Clusters[ctx.Cluster], kc.AuthInfos[ctx.AuthInfo]
	if cluster == nil || user == nil {
		return []string{fmt.Sprintf("context %q refers to a missing cluster or user", kc.CurrentContext)}
	}
	var diffs []string
	if cluster.Server != server {
		diffs = append(diffs, fmt.Sprintf("server is %s, expected %s", cluster.Server, server))
	}
	if !containsCert(cluster.CertificateAuthorityData, ca) {
		diffs = append(diffs, "certificate-authority-data does not hold the cluster CA")
	}
	if len(user.ClientCertificateData) == 0 || len(user.ClientKeyData) == 0 {
		return append(diffs, "client certificate and key are not embedded")
	}
	certs, err := cert.ParseCertsPEM(user.ClientCertificateData)
	if err != nil {
		return append(diffs, fmt.Sprintf("client-certificate-data does not parse (%v)", err))
	}
	key, err := pki.ParseKey(user.ClientKeyData)
	if err != nil {
		return append(diffs, fmt.Sprintf("client-key-data does not parse (%v)", err))
	}
	for _, d := range issuer.Check(spec.Cert, &pki.KeyPair{Cert: certs[0], Key: key}, ca) {
		diffs = append(diffs, "client certificate: "+d)
	}
	return diffs
}

func containsCert(bundle []byte, ca *pki.KeyPair) bool {
	certs, err := cert.ParseCertsPEM(bundle)
	if err != nil {
		return false
	}
	for _, c := range certs {
		if bytes.Equal(c.Raw, ca.Cert.Raw) {
			return true
		}
	}
	return false
}
