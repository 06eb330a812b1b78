package kubeconfig

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/selfkube/selfkube/internal/config"
	"github.com/selfkube/selfkube/internal/config/configtest"
	"github.com/selfkube/selfkube/internal/pki"
)

// BenchmarkEnsureAll generates the whole PKI and every kubeconfig into an empty
// directory, as a first `selfkube render` does.
func BenchmarkEnsureAll(b *testing.B) {
	for _, alg := range []string{config.KeyAlgorithmECDSAP256, config.KeyAlgorithmRSA2048} {
		b.Run(alg, func(b *testing.B) {
			cfg := configtest.Config(b, func(c *config.Config) { c.Cluster.Certificates.KeyAlgorithm = alg })
			root := b.TempDir()
			for b.Loop() {
				dir, err := os.MkdirTemp(root, "assets-")
				if err != nil {
					b.Fatal(err)
				}
				pkiDir := filepath.Join(dir, pki.Dir)
				if _, err := pki.Ensure(pkiDir, cfg, pki.Options{}); err != nil {
					b.Fatal(err)
				}
				if _, err := Ensure(filepath.Join(dir, Dir), pkiDir, cfg, pki.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
