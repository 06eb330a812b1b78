// Package version reports the version of selfkube itself and of the Kubernetes it
// deploys by default.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is selfkube's version; release builds set it with
// -ldflags "-X github.com/selfkube/selfkube/internal/version.Version=v0.1.0".
var Version = "dev"

// Info is what `selfkube version` prints.
type Info struct {
	Version           string `json:"version"`
	GitCommit         string `json:"gitCommit,omitempty"`
	GoVersion         string `json:"goVersion"`
	Platform          string `json:"platform"`
	KubernetesVersion string `json:"kubernetesVersion"`
}

// Get returns the build's version information. kubernetesVersion is the default
// Kubernetes version of the configuration API.
func Get(kubernetesVersion string) Info {
	i := Info{
		Version:           Version,
		GoVersion:         runtime.Version(),
		Platform:          runtime.GOOS + "/" + runtime.GOARCH,
		KubernetesVersion: kubernetesVersion,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				i.GitCommit = s.Value
			}
		}
	}
	return i
}
