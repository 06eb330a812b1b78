// Package app is the selfkube command line: the cobra command tree, testable in-process
// through Run. Commands parse flags and hand over to the packages that do the work.
package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/status"
	"github.com/selfkube/selfkube/internal/version"
)

// Streams are the standard streams of one invocation.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// env is what every command receives: the streams, the logger, the status printer and
// how to learn about the host.
type env struct {
	streams   Streams
	verbosity int
	log       *slog.Logger
	status    *status.Printer
	host      func() config.Host
}

// Run executes selfkube with args (without the program name).
func Run(ctx context.Context, streams Streams, args []string) error {
	e := &env{streams: streams, host: config.DetectHost}
	root := newRootCommand(e)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	return root.ExecuteContext(ctx)
}

func newRootCommand(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "selfkube",
		Short: "Build and run self-hosted Kubernetes",
		Long: `selfkube builds and runs self-hosted Kubernetes: the control plane (kube-apiserver,
kube-scheduler, kube-controller-manager, kube-proxy, CoreDNS, the pod network) runs as
DaemonSets and Deployments managed by Kubernetes itself, with certificates and keys in
Secrets. etcd stays a static pod, managed by selfkube. A node needs only a kubelet, a
container runtime and a kubeconfig; upgrades are kubectl apply.

Start with:
  selfkube config print-defaults > cluster.yaml     # every setting, documented
  selfkube render --config cluster.yaml --asset-dir assets`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelInfo
			if e.verbosity > 0 {
				level = slog.LevelDebug
			}
			e.log = slog.New(slog.NewTextHandler(e.streams.Err, &slog.HandlerOptions{Level: level}))
			// client-go logs through klog: route it into the same logger.
			klog.SetSlogLogger(e.log)
			e.status = status.New(e.streams.Err)
		},
	}
	root.PersistentFlags().CountVarP(&e.verbosity, "verbose", "v", "more detail on stderr (repeat for more)")
	root.AddCommand(newVersionCommand(e), newConfigCommand(e), newRenderCommand(e), newInitCommand(e), newResetCommand(e), newNetworkCommand(e), newTokenCommand(e), newJoinCommand(e), newCheckpointerCommand(e), newAPIProxyCommand(e), newControllerCommand(e), newSteerCommand(e), newUpgradeCommand(e), newEtcdCommand(e), newRecoverCommand(e), newCertsCommand(e))
	return root
}

func newVersionCommand(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of selfkube and the Kubernetes version it deploys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get(config.DefaultKubernetesVersion)
			switch output {
			case "":
				fmt.Fprintf(e.streams.Out, "selfkube %s (kubernetes %s, %s, %s)\n",
					info.Version, info.KubernetesVersion, info.GoVersion, info.Platform)
			case "json":
				enc := json.NewEncoder(e.streams.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			default:
				return fmt.Errorf("unknown output format %q: use -o json or leave it out", output)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func newConfigCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Work with selfkube configuration files (selfkube.io/v1alpha1)",
	}
	var file string
	validate := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a configuration file and print it with every default filled in",
		Long: `Decode a configuration file strictly (unknown or misspelled fields are errors), fill
in defaults from this host, validate it, and print the complete result. Changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadFile(file, e.host())
			if err != nil {
				return err
			}
			out, err := config.PrintDefaults(cfg)
			if err != nil {
				return err
			}
			_, err = e.streams.Out.Write(out)
			return err
		},
	}
	validate.Flags().StringVar(&file, "config", "", "configuration file to check")
	_ = validate.MarkFlagRequired("config")
	print := &cobra.Command{
		Use:   "print-defaults",
		Short: "Print a complete, documented configuration with every default",
		Long: `Print a ClusterConfiguration and a NodeConfiguration with every field set to its
default and a comment explaining it. Node defaults (name, address) come from this host.
Save it, edit what you need, and pass it to render or init with --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := &config.Config{}
			config.Default(cfg, e.host())
			out, err := config.PrintDefaults(cfg)
			if err != nil {
				return err
			}
			_, err = e.streams.Out.Write(out)
			return err
		},
	}
	cmd.AddCommand(print, validate)
	return cmd
}
