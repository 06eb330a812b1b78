package app

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/host"
	"github.com/selfkube/selfkube/internal/reset"
)

func newResetCommand(e *env) *cobra.Command {
	var (
		file                      string
		removeEtcd, force, dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Remove what selfkube put on this node",
		Long: `Remove what selfkube put on this node so it can be used again: the static-pod
manifests selfkube wrote (and no others, as its records in /var/lib/selfkube say),
/etc/kubernetes/pki, the temporary credentials, the kubeconfigs in /etc/kubernetes, the
kubelet's configuration and certificates, and /var/lib/selfkube. A control-plane node
first takes its member out of etcd, so the other nodes keep their quorum: where two
voting members or more stay, it hands the member's leadership on, stops it (removes its
static pod and waits up to 45 s until it listens nowhere) and then removes it through
the others, so that no client is answered by a removed member. etcd's data
(the cluster's state) is kept unless --remove-etcd-data is given.

The kubelet and the container runtime are not stopped: stop the kubelet first
(systemctl stop kubelet) and remove leftover containers with your runtime's tools.`,
		Example: `  # see what would go
  selfkube reset --dry-run
  # remove it without asking
  selfkube reset --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := reset.Options{Layout: host.Default, RemoveEtcdData: removeEtcd, DryRun: dryRun, Out: e.streams.Err}
			if file != "" {
				cfg, err := config.LoadFile(file, e.host())
				if err != nil {
					return err
				}
				if cfg.Cluster.Etcd.Local != nil {
					opts.EtcdDataDir = cfg.Cluster.Etcd.Local.DataDir
				}
			}
			if !force {
				opts.Confirm = func([]string) error {
					fmt.Fprint(e.streams.Err, "proceed? [y/N] ")
					answer, _ := bufio.NewReader(e.streams.In).ReadString('\n')
					if strings.TrimSpace(strings.ToLower(answer)) != "y" {
						return errors.New("aborted: nothing was removed (pass --force to skip the question)")
					}
					return nil
				}
			}
			paths, err := reset.Run(cmd.Context(), opts)
			if err == nil && len(paths) > 0 && !dryRun {
				fmt.Fprintln(e.streams.Err, "done")
			}
			return err
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "configuration file, to find etcd's data directory")
	cmd.Flags().BoolVar(&removeEtcd, "remove-etcd-data", false, "also delete etcd's data directory: the cluster's state is lost")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would be removed and remove nothing")
	return cmd
}
