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
	cmd.AddCommand(check)
	return cmd
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
