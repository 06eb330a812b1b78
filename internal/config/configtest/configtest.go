// Package configtest builds the valid configuration that unit tests of other packages
// start from.
package configtest

import (
	"testing"

	"github.com/selfkube/selfkube/internal/config"
)

// Host is the machine the test configurations describe.
var Host = config.Host{Hostname: "node1", DefaultAddress: "192.0.2.10"}

// Config returns a defaulted, valid configuration for Host; mutate, when not nil, changes
// it before defaulting. The test fails if the result is not valid.
func Config(t testing.TB, mutate func(*config.Config)) *config.Config {
	t.Helper()
	cfg := &config.Config{}
	if mutate != nil {
		mutate(cfg)
	}
	config.Default(cfg, Host)
	if errs := config.Validate(cfg); len(errs) > 0 {
		t.Fatalf("test configuration is not valid: %v", errs)
	}
	return cfg
}
