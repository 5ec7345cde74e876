// Package activation holds OpenWhisk's vocabulary (ActivationMessage, the acks,
// WhiskActivation, WhiskAction) and the activation lifecycle: fetch the action, place
// it, run it, record it, ack it.
//
// It defines the interfaces it consumes (Executor, Store) and knows nothing of how they
// are implemented: store backends, the unikernel executor and the process baseline
// import this package, never the reverse.
package activation
