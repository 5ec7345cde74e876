package snapshots

import (
	"fmt"

	"github.com/seuss-go/seuss/runtimes"
	"github.com/seuss-go/seuss/unikernel"
)

// Available reports why the unikernel executor cannot run on this machine, or nil when
// it can: /dev/kvm must work and every kind's runtime root must be built in rootsDir
// (`make rootfs`). Commands use it to pick their default executor.
func Available(rootsDir string) error {
	if _, err := unikernel.HostMode(); err != nil {
		return err
	}
	for _, k := range runtimes.Kinds() {
		if _, err := runtimes.LoadRoot(runtimes.RootDir(rootsDir, k)); err != nil {
			return fmt.Errorf("%w (make rootfs)", err)
		}
	}
	return nil
}
