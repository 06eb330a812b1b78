package network

import (
	"errors"
	"fmt"
	"sync"
)

// fakeRoutes models the kernel's main table as the agent sees it: one route per
// destination (replace overwrites it), owned routes and foreign ones.
type fakeRoutes struct {
	mu      sync.Mutex
	owned   map[string]Route // by Route.String(): stale duplicates can coexist, as in the kernel with metrics
	foreign map[string]Route // by destination
	fail    error            // returned by every call when set
}

func newFakeRoutes(owned ...Route) *fakeRoutes {
	f := &fakeRoutes{owned: map[string]Route{}, foreign: map[string]Route{}}
	for _, r := range owned {
		f.owned[r.String()] = r
	}
	return f
}

func (f *fakeRoutes) Owned() ([]Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	var out []Route
	for _, r := range f.owned {
		out = append(out, r)
	}
	sortRoutes(out)
	return out, nil
}

func (f *fakeRoutes) Replace(r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if _, ok := f.foreign[r.Dst.String()]; ok {
		return fmt.Errorf("adding route %s: %w", r, ErrForeignRoute)
	}
	for k, o := range f.owned {
		if o.Dst == r.Dst {
			delete(f.owned, k)
			break // replace overwrites one route, like the kernel
		}
	}
	f.owned[r.String()] = r
	return nil
}

func (f *fakeRoutes) Delete(r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	delete(f.owned, r.String())
	return nil
}

func (f *fakeRoutes) snapshot() []Route {
	rs, _ := f.Owned()
	return rs
}

func (f *fakeRoutes) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

type fakeMasquerade struct {
	mu    sync.Mutex
	rules *MasqueradeRules
	calls int
}

func (f *fakeMasquerade) Ensure(r MasqueradeRules) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.rules = &r
	return nil
}

func (f *fakeMasquerade) current() (MasqueradeRules, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rules == nil {
		return MasqueradeRules{}, errors.New("no rules yet")
	}
	return *f.rules, nil
}
