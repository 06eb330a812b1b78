package steer

import (
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// st builds a State from inode → entry.
func st(entries map[uint64]Entry) State { return State{Listeners: entries} }

func TestDecide(t *testing.T) {
	pass, fail := true, false
	for _, tc := range []struct {
		name   string
		prev   State
		seen   []uint64
		probes map[uint64]bool
		want   State
		ch     Changes
	}{{
		name: "nothing",
		want: st(map[uint64]Entry{}),
	}, {
		name: "new listeners take the lowest slots in the order of their inodes, not ready",
		seen: []uint64{30, 10, 20},
		want: st(map[uint64]Entry{10: {Slot: 0}, 20: {Slot: 1}, 30: {Slot: 2}}),
		ch:   Changes{Slotted: []Assignment{{10, 0}, {20, 1}, {30, 2}}},
	}, {
		name: "a listener listed twice takes one slot",
		seen: []uint64{10, 10},
		want: st(map[uint64]Entry{10: {Slot: 0}}),
		ch:   Changes{Slotted: []Assignment{{10, 0}}},
	}, {
		name: "a new listener fills the lowest gap",
		prev: st(map[uint64]Entry{10: {Slot: 0}, 30: {Slot: 2}, 40: {Slot: 3}}),
		seen: []uint64{10, 30, 40, 50, 60},
		want: st(map[uint64]Entry{10: {Slot: 0}, 30: {Slot: 2}, 40: {Slot: 3}, 50: {Slot: 1}, 60: {Slot: 4}}),
		ch:   Changes{Slotted: []Assignment{{50, 1}, {60, 4}}},
	}, {
		name: "a listener that is gone frees its slot, at once for a new one",
		prev: st(map[uint64]Entry{10: {Slot: 0, Passes: 5, Ready: true}, 20: {Slot: 1, Passes: 5, Ready: true}}),
		seen: []uint64{20, 30},
		want: st(map[uint64]Entry{20: {Slot: 1, Passes: 5, Ready: true}, 30: {Slot: 0}}),
		ch:   Changes{Slotted: []Assignment{{30, 0}}, Freed: []Assignment{{10, 0}}, Ready: []int{1}, ReadyChanged: true},
	}, {
		name:   "one passing probe: not yet ready",
		prev:   st(map[uint64]Entry{10: {Slot: 0}}),
		seen:   []uint64{10},
		probes: map[uint64]bool{10: pass},
		want:   st(map[uint64]Entry{10: {Slot: 0, Passes: 1}}),
	}, {
		name:   "the second passing probe in a row: ready",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Passes: 1}}),
		seen:   []uint64{10},
		probes: map[uint64]bool{10: pass},
		want:   st(map[uint64]Entry{10: {Slot: 0, Passes: 2, Ready: true}}),
		ch:     Changes{BecameReady: []Assignment{{10, 0}}, Ready: []int{0}, ReadyChanged: true},
	}, {
		name:   "a failure between passes starts the count again",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Passes: 1}}),
		seen:   []uint64{10},
		probes: map[uint64]bool{10: fail},
		want:   st(map[uint64]Entry{10: {Slot: 0, Failures: 1}}),
	}, {
		name:   "a pass after failures starts counting passes",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Failures: 3}}),
		seen:   []uint64{10},
		probes: map[uint64]bool{10: pass},
		want:   st(map[uint64]Entry{10: {Slot: 0, Passes: 1}}),
	}, {
		name:   "passes go on counting; ready stays",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Passes: 7, Ready: true}}),
		seen:   []uint64{10},
		probes: map[uint64]bool{10: pass},
		want:   st(map[uint64]Entry{10: {Slot: 0, Passes: 8, Ready: true}}),
		ch:     Changes{Ready: []int{0}},
	}, {
		name:   "one failed probe: no longer ready (a shutting-down apiserver answers 503 at once)",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Passes: 7, Ready: true}, 20: {Slot: 1, Passes: 3, Ready: true}}),
		seen:   []uint64{10, 20},
		probes: map[uint64]bool{10: fail, 20: pass},
		want:   st(map[uint64]Entry{10: {Slot: 0, Failures: 1, Draining: true}, 20: {Slot: 1, Passes: 4, Ready: true}}),
		ch:     Changes{BecameUnready: []Assignment{{10, 0}}, Ready: []int{1}, ReadyChanged: true},
	}, {
		name:   "the only ready listener fails: it drains, and keeps new connections while no other is ready",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Passes: 7, Ready: true}, 20: {Slot: 1, Passes: 1}}),
		seen:   []uint64{10, 20},
		probes: map[uint64]bool{10: fail, 20: fail},
		want:   st(map[uint64]Entry{10: {Slot: 0, Failures: 1, Draining: true}, 20: {Slot: 1, Failures: 1}}),
		ch:     Changes{BecameUnready: []Assignment{{10, 0}}, Ready: []int{0}},
	}, {
		name:   "a draining listener keeps draining through failures and a single pass",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Failures: 4, Draining: true}, 20: {Slot: 1, Failures: 1, Draining: true}}),
		seen:   []uint64{10, 20},
		probes: map[uint64]bool{10: fail, 20: pass},
		want:   st(map[uint64]Entry{10: {Slot: 0, Failures: 5, Draining: true}, 20: {Slot: 1, Passes: 1, Draining: true}}),
		ch:     Changes{Ready: []int{0, 1}},
	}, {
		name:   "a listener becomes ready: the draining ones get no new connection",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Failures: 4, Draining: true}, 20: {Slot: 1, Passes: 1}}),
		seen:   []uint64{10, 20},
		probes: map[uint64]bool{10: fail, 20: pass},
		want:   st(map[uint64]Entry{10: {Slot: 0, Failures: 5, Draining: true}, 20: {Slot: 1, Passes: 2, Ready: true}}),
		ch:     Changes{BecameReady: []Assignment{{20, 1}}, Ready: []int{1}, ReadyChanged: true},
	}, {
		name:   "a draining listener that is ready again stops draining",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Passes: 1, Draining: true}}),
		seen:   []uint64{10},
		probes: map[uint64]bool{10: pass},
		want:   st(map[uint64]Entry{10: {Slot: 0, Passes: 2, Ready: true}}),
		ch:     Changes{BecameReady: []Assignment{{10, 0}}, Ready: []int{0}},
	}, {
		name: "a draining listener that is gone leaves the list",
		prev: st(map[uint64]Entry{10: {Slot: 0, Failures: 4, Draining: true}, 20: {Slot: 1, Passes: 1}}),
		seen: []uint64{20},
		want: st(map[uint64]Entry{20: {Slot: 1, Passes: 1}}),
		ch:   Changes{Freed: []Assignment{{10, 0}}, ReadyChanged: true},
	}, {
		name:   "failures go on counting",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Failures: 2}}),
		seen:   []uint64{10},
		probes: map[uint64]bool{10: fail},
		want:   st(map[uint64]Entry{10: {Slot: 0, Failures: 3}}),
	}, {
		name: "no probe result: unchanged",
		prev: st(map[uint64]Entry{10: {Slot: 0, Passes: 1}, 20: {Slot: 1, Failures: 1}, 30: {Slot: 2, Passes: 2, Ready: true}}),
		seen: []uint64{10, 20, 30},
		want: st(map[uint64]Entry{10: {Slot: 0, Passes: 1}, 20: {Slot: 1, Failures: 1}, 30: {Slot: 2, Passes: 2, Ready: true}}),
		ch:   Changes{Ready: []int{2}},
	}, {
		name:   "a new listener's probe and a gone or unknown listener's probe are ignored",
		prev:   st(map[uint64]Entry{10: {Slot: 0, Passes: 1}}),
		seen:   []uint64{20},
		probes: map[uint64]bool{10: pass, 20: pass, 99: pass},
		want:   st(map[uint64]Entry{20: {Slot: 0}}),
		ch:     Changes{Slotted: []Assignment{{20, 0}}, Freed: []Assignment{{10, 0}}},
	}, {
		name:   "the ready list is sorted by slot, whatever the inodes",
		prev:   st(map[uint64]Entry{10: {Slot: 5, Passes: 1}, 20: {Slot: 2, Passes: 1}, 30: {Slot: 9, Passes: 1}, 40: {Slot: 0, Passes: 1}}),
		seen:   []uint64{10, 20, 30, 40},
		probes: map[uint64]bool{10: pass, 20: pass, 30: pass, 40: fail},
		want:   st(map[uint64]Entry{10: {Slot: 5, Passes: 2, Ready: true}, 20: {Slot: 2, Passes: 2, Ready: true}, 30: {Slot: 9, Passes: 2, Ready: true}, 40: {Slot: 0, Failures: 1}}),
		ch:     Changes{BecameReady: []Assignment{{10, 5}, {20, 2}, {30, 9}}, Ready: []int{2, 5, 9}, ReadyChanged: true},
	}, {
		name: "a ready listener that is gone leaves the ready list",
		prev: st(map[uint64]Entry{10: {Slot: 0, Passes: 2, Ready: true}, 20: {Slot: 1, Passes: 2, Ready: true}}),
		seen: []uint64{20},
		want: st(map[uint64]Entry{20: {Slot: 1, Passes: 2, Ready: true}}),
		ch:   Changes{Freed: []Assignment{{10, 0}}, Ready: []int{1}, ReadyChanged: true},
	}, {
		name: "every listener gone: no ready list (the kernel's choice)",
		prev: st(map[uint64]Entry{10: {Slot: 3, Passes: 2, Ready: true}}),
		want: st(map[uint64]Entry{}),
		ch:   Changes{Freed: []Assignment{{10, 3}}, ReadyChanged: true},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			before := maps.Clone(tc.prev.Listeners)
			got, ch := Decide(tc.prev, tc.seen, tc.probes)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("state (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.ch, ch, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if !maps.Equal(before, tc.prev.Listeners) {
				t.Errorf("Decide changed prev: %v, was %v", tc.prev.Listeners, before)
			}
		})
	}
}

func TestDecideBeyondSlots(t *testing.T) {
	var seen []uint64
	for i := range Slots + 2 {
		seen = append(seen, uint64(100+i))
	}
	s, ch := Decide(State{}, seen, nil)
	if len(s.Listeners) != Slots || len(ch.Slotted) != Slots {
		t.Fatalf("%d listeners slotted, want %d", len(s.Listeners), Slots)
	}
	if want := []uint64{100 + Slots, 101 + Slots}; !slices.Equal(ch.Unslotted, want) {
		t.Errorf("unslotted %v, want %v (the highest inodes)", ch.Unslotted, want)
	}
	// Reported again while no slot is free; the first slot freed goes to the lowest of them.
	s, ch = Decide(s, seen, nil)
	if len(ch.Unslotted) != 2 || len(ch.Slotted) != 0 {
		t.Errorf("second step: %+v", ch)
	}
	_, ch = Decide(s, slices.Delete(slices.Clone(seen), 4, 5), nil)
	if want := []Assignment{{100 + Slots, 4}}; !slices.Equal(ch.Slotted, want) || !slices.Equal(ch.Unslotted, []uint64{101 + Slots}) {
		t.Errorf("after slot 4 was freed: slotted %v, unslotted %v; want %v and [%d]", ch.Slotted, ch.Unslotted, want, 101+Slots)
	}
}

// TestDecideProperties runs Decide over random sequences of listeners coming and going
// and probes passing and failing, against a model that keeps each slotted listener's
// probe history.
func TestDecideProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const pool = Slots + 8 // more listeners than slots
	for run := range 300 {
		var s State
		hist := map[uint64][]bool{} // the probes each listener of s had since it got its slot
		for step := range 60 {
			// Listeners come and go; some steps change nothing.
			var seen []uint64
			keep := r.Float64()
			for i := range uint64(pool) {
				if _, slotted := s.Listeners[i]; slotted && r.Float64() < 0.9+keep/10 || r.Float64() < 0.15 {
					seen = append(seen, i)
				}
			}
			probes := map[uint64]bool{}
			for i := range uint64(pool) {
				if r.Float64() < 0.8 { // probes of unknown or new listeners too: ignored
					probes[i] = r.Float64() < 0.7
				}
			}
			before := maps.Clone(s.Listeners)
			beforeReady := s.Ready()
			next, ch := Decide(s, seen, probes)
			if !maps.Equal(before, s.Listeners) {
				t.Fatalf("run %d step %d: Decide changed prev", run, step)
			}

			// The model: a listener of prev that is still seen counts its probe.
			for i := range hist {
				if !slices.Contains(seen, i) {
					delete(hist, i)
				}
			}
			for i := range s.Listeners {
				if p, ok := probes[i]; ok && slices.Contains(seen, i) {
					hist[i] = append(hist[i], p)
				}
			}
			for i := range next.Listeners {
				if _, ok := s.Listeners[i]; !ok {
					hist[i] = nil
				}
			}

			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("run %d step %d: "+format+"\nprev %v\nseen %v\nprobes %v\nnext %v\nchanges %+v", append([]any{run, step}, append(args, s.Listeners, seen, probes, next.Listeners, ch)...)...)
			}
			var taken [Slots]bool
			for i, e := range next.Listeners {
				if !slices.Contains(seen, i) {
					fail("listener %d is not listening", i)
				}
				if e.Slot < 0 || e.Slot >= Slots || taken[e.Slot] {
					fail("slot %d of listener %d is out of range or taken twice", e.Slot, i)
				}
				taken[e.Slot] = true
				h := hist[i]
				passedLast2 := len(h) >= ReadyAfter && h[len(h)-1] && h[len(h)-2]
				if e.Ready != passedLast2 {
					fail("listener %d ready=%v, its probes %v", i, e.Ready, h)
				}
				if want := !passedLast2 && everReady(h); e.Draining != want {
					fail("listener %d draining=%v, its probes %v", i, e.Draining, h)
				}
				if old, ok := s.Listeners[i]; ok && old.Slot != e.Slot {
					fail("listener %d moved from slot %d to %d", i, old.Slot, e.Slot)
				}
			}
			for _, a := range ch.Slotted {
				for lower := range a.Slot {
					if !taken[lower] {
						fail("new listener %d took slot %d while %d was free", a.Inode, a.Slot, lower)
					}
				}
			}
			for _, i := range seen {
				if _, ok := next.Listeners[i]; !ok && !slices.Contains(ch.Unslotted, i) {
					fail("listener %d is neither slotted nor reported", i)
				}
			}
			if len(ch.Unslotted) > 0 && len(next.Listeners) != Slots {
				fail("%v left without a slot while %d are taken", ch.Unslotted, len(next.Listeners))
			}
			// The ready list: sorted slots of listening listeners that passed their last 2 probes.
			if !slices.IsSorted(ch.Ready) || !slices.Equal(ch.Ready, next.Ready()) {
				fail("ready list %v, state's %v", ch.Ready, next.Ready())
			}
			// The model's list: the ready listeners, or while there is none, those that
			// were ready since they got their slot and are not now.
			var ready, draining []int
			for i, e := range next.Listeners {
				h := hist[i]
				switch {
				case len(h) >= 2 && h[len(h)-1] && h[len(h)-2]:
					ready = append(ready, e.Slot)
				case everReady(h):
					draining = append(draining, e.Slot)
				}
			}
			if len(ready) == 0 {
				ready = draining
			}
			slices.Sort(ready)
			if !slices.Equal(ch.Ready, ready) {
				fail("ready list %v, the model's %v", ch.Ready, ready)
			}
			if ch.ReadyChanged != !slices.Equal(beforeReady, ch.Ready) {
				fail("ReadyChanged %v, from %v to %v", ch.ReadyChanged, beforeReady, ch.Ready)
			}
			s = next
		}
	}
}

// everReady says whether probes h hold ReadyAfter (2) passes in a row.
func everReady(h []bool) bool {
	for k := 1; k < len(h); k++ {
		if h[k-1] && h[k] {
			return true
		}
	}
	return false
}
