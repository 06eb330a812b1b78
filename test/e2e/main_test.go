//go:build e2e

package e2e

import (
	"os"
	"testing"

	"github.com/selfkube/selfkube/test/e2e/framework"
)

func TestMain(m *testing.M) {
	// The harness re-executes this test binary as its in-node agent.
	framework.RunAgentIfRequested()
	os.Exit(m.Run())
}
