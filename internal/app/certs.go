package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/internal/certs"
	"github.com/selfkube/selfkube/internal/host"
)

func newCertsCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Work with the cluster's certificates",
	}
	var (
		output, kubeconfigPath string
		renewBefore            time.Duration
	)
	check := &cobra.Command{
		Use:   "check-expiration",
		Short: "List every certificate this node and the cluster's Secrets hold, with its expiry",
		Long: `List every certificate the cluster depends on that this node can see, with its subject,
issuer, expiry, the time left and where it lives: the files below /etc/kubernetes (the
PKI, etcd's certificates, the kubeconfigs init and join wrote, the checkpoints' copies of
the control plane's Secrets), the kubelet's certificates (/var/lib/kubelet/pki), the asset
directory (/var/lib/selfkube/assets), and, when the API answers, every certificate in a
kube-system Secret (the control plane's). The CAs are listed apart.

It exits non-zero when a certificate (or a CA) has less than --renew-before left, or
has expired. Run it on each control-plane node: each holds its own etcd certificates.`,
		Example: `  selfkube certs check-expiration
  selfkube certs check-expiration -o json | jq '.certificates[] | select(.where | startswith("secret"))'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l := host.Default
			c := certs.NewCollector(time.Now(), renewBefore)
			c.Dir(l.KubernetesDir(), "")
			c.Dir(l.KubeletDir()+"/pki", "")
			c.Dir(l.AssetDir(), "")
			if err := clusterSecrets(cmd.Context(), c, kubeconfigPath); err != nil {
				fmt.Fprintf(e.streams.Err, "warning: the cluster's Secrets are not listed: %v\n", err)
			}
			r := c.Report()
			switch output {
			case "json":
				enc := json.NewEncoder(e.streams.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			case "":
				printCerts(e, r)
			default:
				return fmt.Errorf("unknown output format %q: use -o json or leave it out", output)
			}
			if due := r.Due(); len(due) > 0 {
				names := make([]string, 0, len(due))
				for _, d := range due {
					names = append(names, d.Name+" ("+d.Where+")")
				}
				return fmt.Errorf("%d certificates expire within %s or have expired: %s", len(due), renewBefore, strings.Join(names, ", "))
			}
			return nil
		},
	}
	check.Flags().StringVarP(&output, "output", "o", "", "output format: json (default: a table)")
	check.Flags().StringVar(&kubeconfigPath, "kubeconfig", host.Default.AdminKubeconfig(), "kubeconfig of a cluster administrator (the Secrets are skipped if the API does not answer)")
	check.Flags().DurationVar(&renewBefore, "renew-before", 30*24*time.Hour, "the renewal window: less time left than this is an error")
	cmd.AddCommand(check, newCertsRenewCommand(e))
	return cmd
}

func newCertsRenewCommand(e *env) *cobra.Command {
	var (
		o              certs.RenewOptions
		kubeconfigPath string
		output         string
	)
	cmd := &cobra.Command{
		Use:   "renew all|NAME...",
		Short: "Renew the cluster's certificates from its CAs, and roll the components that use them",
		Long: `Renew certificates: each is issued again by the CA that signed it, with the same subject,
the same names and addresses (plus --san for the API server's), the same usages, a new
key and the validity of the cluster configuration (certificates.validity).

Run on a control-plane node, with the API answering. It renews:
  - in the control-plane Secrets (kube-system/kube-apiserver, kube-controller-manager,
    kube-scheduler): apiserver, apiserver-kubelet-client, apiserver-etcd-client,
    front-proxy-client, controller-manager.conf, scheduler.conf; then rolls the
    apiserver DaemonSet and the Deployments whose Secret changed (a pod-template
    annotation, ` + certs.AnnotationCertificatesRenewed + `) and waits for each roll-out. The
    checkpointer copies the renewed Secrets into the checkpoints by itself;
  - on this node: etcd's certificates (etcd/server, etcd/peer, etcd/healthcheck-client;
    etcd reads them at every new connection, no restart), the kubeconfigs init and join
    wrote with an embedded certificate (admin.conf, super-admin.conf), and the copies in
    the asset directory (/var/lib/selfkube/assets), which get the Secrets' renewed
    certificates, not new ones of their own.

A certificate is renewed only where the key of its CA is: the cluster CA's is in the
controller manager's Secret, etcd's on every control-plane node, the front-proxy CA's
only in the asset directory of the node init ran on. The others are listed as skipped:
run the command there too. Each control-plane node holds its own etcd certificates: run
it on each. The kubelets rotate their certificates themselves (rotateCertificates,
serverTLSBootstrap).

Not yet: renewing on a node whose API no longer answers because its certificates expired
(the lock-out case), and the CAs themselves (a CA is rotated, not renewed).`,
		Example: `  # what would be renewed
  selfkube certs renew all --dry-run
  # everything this node can renew
  selfkube certs renew all
  # the API server's serving certificate, with one more name
  selfkube certs renew apiserver --san api.example.com`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("name the certificates to renew, or all (%s)", strings.Join(certs.RenewableNames, ", "))
			}
			if output != "" && output != "json" {
				return fmt.Errorf("unknown output format %q: use -o json or leave it out", output)
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
			if err != nil {
				return fmt.Errorf("loading the administrator's kubeconfig %s (--kubeconfig): %w", kubeconfigPath, err)
			}
			cfg.Timeout = 10 * time.Second
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return err
			}
			o.Layout, o.Client, o.Names, o.Status = host.Default, cs, args, e.status
			done, err := certs.Renew(cmd.Context(), o)
			if output == "json" {
				enc := json.NewEncoder(e.streams.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(done); err != nil {
					return err
				}
			} else {
				printRenewals(e, done, o.DryRun)
			}
			if err != nil {
				return err
			}
			if o.DryRun {
				fmt.Fprintln(e.streams.Out, "nothing was changed (--dry-run)")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.DryRun, "dry-run", false, "list what would be renewed, change nothing")
	f.StringSliceVar(&o.ExtraSANs, "san", nil, "a DNS name or IP address to add to the API server's serving certificate (repeatable)")
	f.DurationVar(&o.RollTimeout, "timeout", 5*time.Minute, "how long to wait for each component's roll-out")
	f.StringVar(&kubeconfigPath, "kubeconfig", host.Default.AdminKubeconfig(), "kubeconfig of a cluster administrator")
	f.StringVarP(&output, "output", "o", "", "output format: json (default: a table)")
	return cmd
}

func printRenewals(e *env, rs []certs.Renewal, dryRun bool) {
	w := tabwriter.NewWriter(e.streams.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CERTIFICATE\tWHERE\tCA\tSERIAL\tRESULT")
	for _, r := range rs {
		result := "renewed: serial " + r.NewSerial + ", expires " + r.NewNotAfter.UTC().Format("2006-01-02 15:04 MST")
		switch {
		case r.Skipped != "":
			result = "skipped: " + r.Skipped
		case dryRun:
			result = "would be renewed"
		case r.CopyOf != "":
			result = "the renewed copy of " + r.CopyOf + " (serial " + r.NewSerial + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Where, r.CA, r.Serial, result)
	}
	w.Flush()
}

// clusterSecrets adds the certificates of the kube-system Secrets.
func clusterSecrets(ctx context.Context, c *certs.Collector, kubeconfigPath string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	list, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	c.Secrets(list.Items)
	return nil
}

func printCerts(e *env, r *certs.Report) {
	w := tabwriter.NewWriter(e.streams.Out, 0, 4, 2, ' ', 0)
	row := func(c certs.Cert) {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.NotAfter.UTC().Format("2006-01-02 15:04 MST"), residual(time.Duration(c.Residual)), shortDN(c.Issuer), c.Where)
	}
	fmt.Fprintln(w, "CERTIFICATE\tEXPIRES\tRESIDUAL TIME\tISSUER\tWHERE")
	for _, c := range r.Certificates {
		row(c)
	}
	fmt.Fprintln(w, "\t\t\t\t")
	fmt.Fprintln(w, "CERTIFICATE AUTHORITY\tEXPIRES\tRESIDUAL TIME\tISSUER\tWHERE")
	for _, c := range r.CAs {
		row(c)
	}
	w.Flush()
	for _, u := range r.Unreadable {
		fmt.Fprintf(e.streams.Err, "warning: %s\n", u)
	}
}

// residual says how long is left, as kubeadm does: days, or hours under two days.
func residual(d time.Duration) string {
	switch {
	case d < 0:
		return "expired"
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// shortDN is the CN of a distinguished name, or all of it.
func shortDN(dn string) string {
	for _, part := range strings.Split(dn, ",") {
		if v, ok := strings.CutPrefix(part, "CN="); ok {
			return v
		}
	}
	return dn
}
