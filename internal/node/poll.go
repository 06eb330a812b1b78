package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// terminalError is an error of a Poll check that ends the poll at once.
type terminalError struct{ err error }

func (t *terminalError) Error() string { return t.err.Error() }
func (t *terminalError) Unwrap() error { return t.err }

// Terminal marks err as an error that retrying cannot cure: a Poll check that returns
// it ends the poll at once with that error. Terminal(nil) is nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err: err}
}

// Poll calls check at once and then every interval until it reports true (Poll returns
// nil), returns an error marked Terminal (Poll returns that error, prefixed with what),
// timeout passes, or ctx ends. Any other error of check is retried and remembered; the
// error for a timeout or an ended ctx names what was awaited and the last such error,
// which a check may also use to say why it is not done yet (return false, reason).
//
// what reads as the thing awaited: "waiting for node n1 to be Ready (see …)".
func Poll(ctx context.Context, interval, timeout time.Duration, what string, check func(context.Context) (bool, error)) error {
	var last, terminal error
	err := wait.PollUntilContextTimeout(ctx, interval, timeout, true, func(pctx context.Context) (bool, error) {
		ok, err := check(pctx)
		var t *terminalError
		switch {
		case errors.As(err, &t):
			terminal = t.err
			return false, err
		case err != nil:
			// An error caused by the poll's own end (a request cut by the deadline) says
			// less than the one before it.
			if last == nil || pctx.Err() == nil {
				last = err
			}
			return false, nil
		}
		return ok, nil
	})
	switch {
	case err == nil:
		return nil
	case terminal != nil:
		return fmt.Errorf("%s: %w", what, terminal)
	case ctx.Err() != nil: // the caller's context ended, not the timeout
		if last != nil {
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), last)
		}
		return fmt.Errorf("%s: %w", what, ctx.Err())
	case last != nil:
		return fmt.Errorf("%s: gave up after %s (last error: %w)", what, timeout, last)
	default:
		return fmt.Errorf("%s: gave up after %s", what, timeout)
	}
}
