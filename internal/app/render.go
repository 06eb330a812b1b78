package app

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/render"
)

func newRenderCommand(e *env) *cobra.Command {
	var (
		file, assetDir string
		dryRun         bool
	)
	cmd := &cobra.Command{
		Use:   "render --config FILE --asset-dir DIR",
		Short: "Write a cluster's certificates, kubeconfigs and manifests to a directory",
		Long: `Render everything a self-hosted cluster is made of into an asset directory:

  tls/                  the cluster CA, front-proxy CA, etcd CA, serving and client
                        certificates, the service-account key pair (keys 0600)
  auth/                 kubeconfigs: admin (group kubeadm:cluster-admins, revocable),
                        super-admin (system:masters, break-glass), controller-manager,
                        scheduler, and the first node's kubelet (0600)
  bootstrap-manifests/  static pods: etcd (stays) and the temporary control plane
  manifests/            the self-hosted control plane: DaemonSets, Deployments,
                        Secrets, ConfigMaps, RBAC, CoreDNS, kube-proxy

Nothing on the host outside DIR is touched. Run again on the same directory: the CAs
and every certificate that still fits the configuration are kept ("using existing"),
a certificate that no longer fits is reported with what differs and left alone
(remove it to have it made again), and the manifests are rendered again from the
current configuration. --dry-run shows what would be written and writes nothing.`,
		Example: `  selfkube config print-defaults > cluster.yaml
  selfkube render --config cluster.yaml --asset-dir ./assets --dry-run
  selfkube render --config cluster.yaml --asset-dir ./assets`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadFile(file, e.host())
			if err != nil {
				return err
			}
			res, err := render.Render(assetDir, cfg, render.Options{DryRun: dryRun, Status: e.status})
			if err != nil {
				return err
			}
			verb := "rendered"
			if dryRun {
				verb = "would render (dry run, nothing written)"
			}
			fmt.Fprintf(e.streams.Out, "%s %s:\n  %s\n", verb, assetDir, strings.Join(res.Summary(), "\n  "))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "configuration file (selfkube.io/v1alpha1); empty: all defaults for this host")
	cmd.Flags().StringVar(&assetDir, "asset-dir", "", "directory to write the assets to (created if missing)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be written, write nothing")
	_ = cmd.MarkFlagRequired("asset-dir")
	return cmd
}
