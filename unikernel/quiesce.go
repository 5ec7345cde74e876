package unikernel

// asleep blocks until ch is closed (true) or the UC stops (false), counting the calling
// thread as asleep meanwhile. Blocking handlers use it (or the same count around their own
// select) only where nothing has been done yet that re-running the call would repeat: a
// snapshot captures a thread asleep here with the registers of the call's entry and the
// restored thread runs the call again, as Linux restarts an interrupted call.
func (k *Kernel) asleep(ch <-chan struct{}) bool {
	k.sleeping.Add(1)
	defer k.sleeping.Add(-1)
	select {
	case <-ch:
		return true
	case <-k.stopped:
		return false
	}
}
