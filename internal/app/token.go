package app

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/selfkube/selfkube/internal/bootstrap"
	"github.com/selfkube/selfkube/internal/host"
)

func newTokenCommand(e *env) *cobra.Command {
	var kubeconfigPath string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage bootstrap tokens, with which nodes join the cluster",
		Long: `Manage bootstrap tokens: Secrets bootstrap-token-<id> in kube-system, in the standard
format, so stock tools (kubeadm token list, kubeadm join) work with them too. A token
lets its bearer register a node; it expires (24h by default).`,
	}
	cmd.PersistentFlags().StringVar(&kubeconfigPath, "kubeconfig", host.Default.AdminKubeconfig(), "kubeconfig of a cluster administrator")
	client := func() (kubernetes.Interface, string, error) {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
		if err != nil {
			return nil, "", fmt.Errorf("loading %s: %w (pass --kubeconfig)", kubeconfigPath, err)
		}
		c, err := kubernetes.NewForConfig(cfg)
		return c, cfg.Host, err
	}

	var (
		ttl         time.Duration
		description string
		printJoin   bool
		caFile      string
		cp          bool
		etcdPKI     string
	)
	create := &cobra.Command{
		Use:   "create [ID.SECRET]",
		Short: "Create a bootstrap token (random unless given) and print it",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, server, err := client()
			if err != nil {
				return err
			}
			var tok bootstrap.Token
			if len(args) == 1 {
				tok, err = bootstrap.ParseToken(args[0])
			} else {
				tok, err = bootstrap.GenerateToken()
			}
			if err != nil {
				return err
			}
			var files map[string][]byte
			if cp {
				// Read everything before anything is created.
				if files, err = bootstrap.GatherHandOff(cmd.Context(), c, etcdPKI); err != nil {
					return err
				}
			}
			spec := bootstrap.TokenSpec{Token: tok, TTL: ttl, Description: description}
			if cp {
				// The token owns the CA hand-off: a short life, and a group of its own
				// that alone may read it.
				spec.Groups = []string{bootstrap.DefaultGroup, bootstrap.ControlPlaneGroup}
				if !cmd.Flags().Changed("ttl") {
					spec.TTL = bootstrap.ControlPlaneTTL
				}
			}
			if err := bootstrap.Create(cmd.Context(), c, spec, time.Now()); err != nil {
				return err
			}
			certKey := ""
			if cp {
				if certKey, err = bootstrap.GenerateCertificateKey(); err != nil {
					return err
				}
				if err := bootstrap.UploadCerts(cmd.Context(), c, tok, certKey, files); err != nil {
					return err
				}
			}
			if !printJoin {
				fmt.Fprintln(e.streams.Out, tok.String())
				if cp {
					fmt.Fprintln(e.streams.Out, "certificate key: "+certKey)
				}
				return nil
			}
			ca, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("reading the cluster CA for the join command: %w (pass --ca-file)", err)
			}
			jc, err := bootstrap.JoinCommand(server, tok, ca)
			if err != nil {
				return err
			}
			if cp {
				jc += " --control-plane --certificate-key " + certKey
			}
			fmt.Fprintln(e.streams.Out, jc)
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", bootstrap.DefaultTTL, "how long the token is valid (with --control-plane: "+bootstrap.ControlPlaneTTL.String()+" unless given)")
	create.Flags().StringVar(&description, "description", "", "free text shown by token list")
	create.Flags().BoolVar(&printJoin, "print-join-command", false, "print the whole join command, not only the token")
	create.Flags().BoolVar(&cp, "control-plane", false, "a token for `selfkube join --control-plane`: it alone may read the CA keys handed off with it (encrypted; deleted by the join, or with the token)")
	create.Flags().StringVar(&etcdPKI, "etcd-pki-dir", filepath.Join(host.Default.PKIDir(), "etcd"), "with --control-plane: this control-plane node's etcd CA")
	create.Flags().StringVar(&caFile, "ca-file", filepath.Join(host.Default.PKIDir(), "ca.crt"), "the cluster CA, for the join command's pin")

	list := &cobra.Command{
		Use:   "list",
		Short: "List bootstrap tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, _, err := client()
			if err != nil {
				return err
			}
			infos, err := bootstrap.List(cmd.Context(), c, time.Now())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTTL\tEXPIRES\tUSAGES\tGROUPS\tDESCRIPTION")
			for _, t := range infos {
				ttl, expires := "<forever>", "<never>"
				if t.Expires != nil {
					expires = t.Expires.Format(time.RFC3339)
					ttl = t.TTL.Round(time.Second).String()
					if t.Expired {
						ttl = "<expired>"
					}
				}
				desc := t.Description
				if t.Problem != "" {
					desc = "(" + t.Problem + ") " + desc
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%v\t%s\n", t.ID, ttl, expires, t.Usages, t.Groups, desc)
			}
			return w.Flush()
		},
	}
	del := &cobra.Command{
		Use:   "delete ID|ID.SECRET ...",
		Short: "Delete bootstrap tokens: nodes can no longer join with them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, _, err := client()
			if err != nil {
				return err
			}
			for _, a := range args {
				if err := bootstrap.Delete(cmd.Context(), c, a); err != nil {
					return err
				}
				id, _ := bootstrap.ParseTokenOrID(a)
				fmt.Fprintf(e.streams.Err, "deleted bootstrap token %s\n", id)
			}
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}
