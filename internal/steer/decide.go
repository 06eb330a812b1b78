package steer

import (
	"maps"
	"slices"
)

// ReadyAfter is how many passing probes in a row make a listener ready.
const ReadyAfter = 2

// UnreadyAfter is how many failed probes in a row make a ready listener not ready: one,
// because an apiserver that starts to shut down answers 503 at once, while it still
// accepts connections during its shutdown delay.
const UnreadyAfter = 1

// Entry is what Decide knows of one listener.
type Entry struct {
	// Slot is the listener's slot in the Program, 0…Slots-1.
	Slot int
	// Passes and Failures count the probes in a row that passed or failed (one is 0).
	Passes, Failures int
	// Ready says new connections may go to the listener.
	Ready bool
	// Draining says the listener was ready and its last probes failed while it still
	// listens: its server may still serve (an apiserver answers /readyz with an error
	// through its shutdown delay, and serves every other request), so new connections
	// go to it while no listener is ready. It ends when the listener is ready again or
	// gone.
	Draining bool
}

// State is every slotted listener, by socket inode. The zero State has none. Decide
// never changes a State it is given.
type State struct {
	Listeners map[uint64]Entry
}

// Ready returns the slots new connections go to, sorted: those of the ready listeners,
// or, while none is ready, those of the draining ones.
func (s State) Ready() []int {
	var ready, draining []int
	for _, e := range s.Listeners {
		switch {
		case e.Ready:
			ready = append(ready, e.Slot)
		case e.Draining:
			draining = append(draining, e.Slot)
		}
	}
	if len(ready) == 0 {
		ready = draining
	}
	slices.Sort(ready)
	return ready
}

// Assignment is a listener and its slot.
type Assignment struct {
	Inode uint64
	Slot  int
}

// Changes is what one Decide changed.
type Changes struct {
	// Slotted are the new listeners and the slots they got. Every list of Changes is in
	// the order of inodes.
	Slotted []Assignment
	// Freed are the listeners that are gone and the slots they left.
	Freed []Assignment
	// Unslotted are new listeners beyond Slots: no slot, never ready; the kernel's
	// choice reaches them only while no listener is ready.
	Unslotted []uint64
	// BecameReady and BecameUnready are the listeners whose Ready changed.
	BecameReady, BecameUnready []Assignment
	// Ready is the next state's ready slots, sorted; ReadyChanged says they differ
	// from the previous state's.
	Ready        []int
	ReadyChanged bool
}

// Decide is one step of the agent: given the previous state, the inodes of the
// listeners there are now (seen) and the probes of this step (probes[inode]: passed?),
// it returns the next state and what changed. It does no I/O.
//
// The rules, for each listener:
//
//	not in prev, in seen     → new: the lowest free slot, 0 probes, not ready;
//	                           no free slot (Slots taken): Unslotted, left out
//	in prev, not in seen     → gone: its slot is free (for a new listener of this step too)
//	in prev and seen, probed → a pass:    Passes+1, Failures=0; ready (and no longer
//	                                      draining) once Passes ≥ ReadyAfter
//	                           a failure: Failures+1, Passes=0; not ready (UnreadyAfter = 1);
//	                                      draining if it was ready or draining
//	in prev and seen, no probe result → unchanged
//
// A new listener's probe result, if any, is ignored: it has no slot to be probed
// through until this step gives it one. Thus:
//
//	probe:      –      pass    pass    pass    fail    pass    pass
//	state:    new(s) → 1/0  →  2/0  →  3/0  →  0/1  →  1/0  →  2/0      (passes/failures)
//	ready:     no      no      YES     YES     no      no      YES
//
// The ready slots are those of the ready listeners, sorted by slot; while there is none,
// those of the draining listeners (an old apiserver in its shutdown delay still serves,
// a starting one does not). New listeners take
// slots in the order of their inodes, so the result does not depend on the order of seen.
func Decide(prev State, seen []uint64, probes map[uint64]bool) (State, Changes) {
	next := State{Listeners: make(map[uint64]Entry, len(seen))}
	var ch Changes

	now := make(map[uint64]bool, len(seen))
	for _, inode := range seen {
		now[inode] = true
	}
	for _, inode := range slices.Sorted(maps.Keys(prev.Listeners)) {
		e := prev.Listeners[inode]
		if !now[inode] {
			ch.Freed = append(ch.Freed, Assignment{Inode: inode, Slot: e.Slot})
			continue
		}
		if passed, probed := probes[inode]; probed {
			wasReady := e.Ready
			if passed {
				e.Passes++
				e.Failures = 0
				if e.Passes >= ReadyAfter {
					e.Ready, e.Draining = true, false
				}
			} else {
				e.Failures++
				e.Passes = 0
				if e.Failures >= UnreadyAfter {
					e.Draining = e.Draining || e.Ready
					e.Ready = false
				}
			}
			switch {
			case e.Ready && !wasReady:
				ch.BecameReady = append(ch.BecameReady, Assignment{Inode: inode, Slot: e.Slot})
			case !e.Ready && wasReady:
				ch.BecameUnready = append(ch.BecameUnready, Assignment{Inode: inode, Slot: e.Slot})
			}
		}
		next.Listeners[inode] = e
	}

	var taken [Slots]bool
	for _, e := range next.Listeners {
		taken[e.Slot] = true
	}
	for _, inode := range slices.Sorted(maps.Keys(now)) {
		if _, known := next.Listeners[inode]; known {
			continue
		}
		slot := slices.Index(taken[:], false)
		if slot < 0 {
			ch.Unslotted = append(ch.Unslotted, inode)
			continue
		}
		taken[slot] = true
		next.Listeners[inode] = Entry{Slot: slot}
		ch.Slotted = append(ch.Slotted, Assignment{Inode: inode, Slot: slot})
	}

	ch.Ready = next.Ready()
	ch.ReadyChanged = !slices.Equal(ch.Ready, prev.Ready())
	return next, ch
}
