package status

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestSteps(t *testing.T) {
	var buf bytes.Buffer
	p := New(&buf)
	clock := time.Unix(0, 0)
	p.now = func() time.Time { clock = clock.Add(1500 * time.Millisecond); return clock }
	p.Start("writing certificates").End()
	err := errors.New("boom")
	p.Start("waiting for the API").Done(&err)
	p.Infof("using existing %s", "tls/ca.crt")
	want := " ✓ writing certificates (1.5s)\n ✗ waiting for the API (1.5s)\n    using existing tls/ca.crt\n"
	if buf.String() != want {
		t.Errorf("got\n%q\nwant\n%q", buf.String(), want)
	}
	var nilPrinter *Printer
	nilPrinter.Start("x").End() // a nil printer must not panic: commands run quiet in tests
}
