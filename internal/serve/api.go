// Package serve is the node service a serverless platform puts in front of
// traffic (snapbpf serve): an HTTP/JSON API over a unix socket (and,
// with a bearer token, TCP) to register functions, whose snapshot and
// working set are made in the background, and to invoke them on warm
// instances or cold restores under the snapbpf policy, within a per-function
// instance limit and a host memory budget that is measured, not estimated.
// The registry lives in a JetStream key-value bucket (internal/bus: an
// embedded NATS server by default, its store under the home directory; or a
// cluster the nodes share), so a killed service loses nothing and the next
// one ends the VMMs it left. Nodes heartbeat through another bucket and
// forward invocations they cannot run at once to the nodes that can
// (route.go), at most once.
package serve

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/snapbpf/snapbpf/api"
	"github.com/snapbpf/snapbpf/internal/functions"
	"github.com/snapbpf/snapbpf/internal/pyfn"
)

// The request and response types are package api's (api/types.go), shared
// with the client; what is here is the service's own checking of them.

// nameRE is what a function name may be: it names a directory, so no path
// characters.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// MaxMemMiB bounds a function's guest RAM.
const MaxMemMiB = 64 << 10

// validate checks r and fills its defaults (runtime go, memory sized for
// the function); minMiB is the least guest RAM the function needs.
func validate(r *api.CreateRequest, minMiB func(fn string, dataMiB int) int) error {
	if !nameRE.MatchString(r.Name) {
		return fmt.Errorf("name %q: want 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit", r.Name)
	}
	if r.Runtime == "" {
		r.Runtime = api.RuntimeGo
	}
	switch r.Runtime {
	case api.RuntimeGo:
		if _, err := functions.Lookup(r.Function); err != nil {
			return fmt.Errorf("function: %w", err)
		}
	case api.RuntimePython:
		if rt := pyfn.RuntimeOf(r.Function); rt != pyfn.Runtime {
			// The torch functions need the optional python-torch image,
			// which serve does not build.
			return fmt.Errorf("function %q: no python function of that name (have: %s)", r.Function, strings.Join(pyfn.NamesOf(pyfn.Runtime), ", "))
		}
		if r.DataMiB != 0 {
			return fmt.Errorf("data_mib %d: python functions take their input with each invocation; leave data_mib out", r.DataMiB)
		}
		minMiB = func(fn string, _ int) int { return pyfn.GuestMiB(fn) }
	default:
		return fmt.Errorf("runtime %q: want %q (the functions built into the agent) or %q", r.Runtime, api.RuntimeGo, api.RuntimePython)
	}
	if r.DataMiB < 0 || r.DataMiB > MaxMemMiB {
		return fmt.Errorf("data_mib %d: want 0 (the function's default) to %d", r.DataMiB, MaxMemMiB)
	}
	least := minMiB(r.Function, r.DataMiB)
	switch {
	case r.MemMiB == 0:
		r.MemMiB = least
	case r.MemMiB < least || r.MemMiB > MaxMemMiB:
		return fmt.Errorf("memory_mib %d: function %s with data_mib %d needs %d to %d (0 sizes it)", r.MemMiB, r.Function, r.DataMiB, least, MaxMemMiB)
	}
	return nil
}
